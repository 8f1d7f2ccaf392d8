"""The plugin system with real circusd and real plugin processes: the
CircusPlugin base, circus-plugin, [plugin:NAME] sections and the built-in
plugins (flapping, statsd, watchdog, resource_watcher, http_observer,
command_reloader)."""
import ast
import asyncio
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import psutil
import pytest

from support import BIN, PYTHON, ROOT, free_port, pid_alive, wait_for
from support.aio import until
from support.events import EventLog

SUPPORT = os.path.join(ROOT, "tests", "plugins_support")
RECORDER = "tests.plugins_support.recorder.Recorder"

# the documentation's example plugin, as written there (section 5.10.2)
LOGGER = '''\
from circus.plugins import CircusPlugin

class Logger(CircusPlugin):

    name = 'logger'

    def __init__(self, filename, **kwargs):
        super(Logger, self).__init__(**kwargs)
        self.filename = filename
        self.file = None

    def handle_init(self):
        self.file = open(self.filename, 'a+')

    def handle_stop(self):
        self.file.close()

    def handle_recv(self, data):
        topic, msg = data
        self.file.write('%s::%s' % (topic, msg))
'''

# the documentation's example configuration (section 5.3)
EXAMPLE = """\
[circus]
check_delay = 5
endpoint = tcp://127.0.0.1:5555
pubsub_endpoint = tcp://127.0.0.1:5556
include = /path/to/configs/*.enabled.ini

[watcher:myprogram]
cmd = python
args = -u myprogram.py $(WID) $(ENV.VAR)
warmup_delay = 0
numprocesses = 5

# will push in test.log the stream every 300 ms
stdout_stream.class = FileStream
stdout_stream.filename = test.log
stdout_stream.refresh_time = 0.3

[plugin:statsd]
use = circus.plugins._statsd.StatsdEmitter
host = localhost
port = 8125
sample_rate = 1.0
application_name = example

[socket:web]
host = localhost
port = 8080
"""


def pids(daemon, name):
    reply = daemon.call("list", name=name)
    assert reply["status"] == "ok", reply
    return reply["pids"]


def new_pid(daemon, name, old):
    """Wait until `name` runs one process that is not `old`; return its pid."""
    return wait_for(lambda: (lambda p: p[0] if len(p) == 1 and p[0] != old else None)(
        pids(daemon, name)), message="a new process in %s" % name)


def records(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.endswith("\n")]


def recorded(path, kind, **fields):
    return [r for r in records(path) if r["kind"] == kind
            and all(r.get(k) == v for k, v in fields.items())]


def udp_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_udp_port():
    with udp_socket() as sock:
        return sock.getsockname()[1]


def datagrams_until(sock, predicate, timeout=10.0):
    """Read statsd lines until predicate(lines seen) holds; returns them."""
    lines = []

    def receive(remaining):
        sock.settimeout(remaining)
        try:
            lines.extend(sock.recv(65536).decode().splitlines())
        except TimeoutError:
            pass
    wait_for(lambda: predicate(lines), timeout, pause=receive,
             message=lambda: "statsd lines; so far: %s" % sorted(set(lines)))
    return lines


def event_after(events, topic, after=0.0, timeout=10.0, **options):
    """The first `topic` event published after the time `after` whose
    options (of an `updated` event) include `options`; returns its message."""
    return events.wait(lambda t, m: t == topic and m["time"] > after and all(
        (m.get("options") or {}).get(k) == v for k, v in options.items()),
        timeout, message="%s after %s %s" % (topic, after, options))[1]


def state(value, prefix="flapping"):
    return {prefix + ".state": value}


# --- the base class, sections and watchers ----------------------------------------
def test_documented_logger_plugin_records_events(circusd, tmp_path):
    package = tmp_path / "myproject"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugins.py").write_text(LOGGER)
    events = tmp_path / "events.log"
    daemon = circusd("""
        [watcher:dummy]
        cmd = sleep 300

        [plugin:logger]
        use = myproject.plugins.Logger
        filename = %s
        """ % events)
    first = pids(daemon, "dummy")[0]
    assert daemon.call("kill", name="dummy", pid=first, waiting=True)["status"] == "ok"
    second = new_pid(daemon, "dummy", first)
    daemon.stop()
    assert daemon.proc.returncode == 0

    text = events.read_text()
    found = [(topic, ast.literal_eval(body))
             for topic, body in re.findall(r"([\w.:]+)::(\{[^}]*\})", text)]
    seen = [(topic, msg.get("process_pid")) for topic, msg in found]
    # the plugin starts before the watcher: it sees its very first spawn
    for event in [("watcher.dummy.spawn", first), ("watcher.dummy.kill", first),
                  ("watcher.dummy.reap", first), ("watcher.dummy.spawn", second),
                  ("watcher.dummy.stop", None)]:
        assert event in seen, text
    # ... and stops after it: the plugin sees the watcher stop, then its own kill
    topics = [topic for topic, _ in found]
    assert topics.index("watcher.dummy.stop") < topics.index("watcher.plugin:logger.kill")


def test_plugin_runs_as_a_watcher_of_its_own(circusd, tmp_path):
    out = str(tmp_path / "rec.jsonl")
    daemon = circusd("""
        [watcher:dummy]
        cmd = sleep 300

        [plugin:rec]
        use = %s
        filename = %s
        fail_on = .dummy.reap
        call_on = watcher.dummy.start
        tick = 0.05
        extra = value
        """ % (RECORDER, out))
    assert daemon.call("list")["watchers"] == ["dummy", "plugin:rec"]
    assert daemon.call("status", name="plugin:rec")["status"] == "active"
    options = daemon.call("options", name="plugin:rec")["options"]
    assert options["singleton"] is True and options["numprocesses"] == 1
    assert options["priority"] > 0 and options["respawn"] is True
    plugin = pids(daemon, "plugin:rec")[0]
    info = daemon.call("stats", name="plugin:rec")["info"][str(plugin)]
    assert "circus.plugins" in info["cmdline"] and RECORDER in info["cmdline"]

    # handle_init ran on the running loop with the rest of the section as config
    init = recorded(out, "init")[0]
    assert init["loop_running"] is True and init["config"] == {"extra": "value"}
    # call() from handle_recv got circusd's reply; cast() went through
    reply = wait_for(lambda: recorded(out, "reply"), message="call reply")[0]["reply"]
    assert reply["status"] == "ok" and reply["numwatchers"] == 2
    wait_for(lambda: daemon.call("get", name="dummy", keys=["recorder.seen"])["status"] == "ok",
             message="the cast")
    # self.loop runs the plugin's own periodic work
    wait_for(lambda: len(recorded(out, "tick")) >= 3, message="ticks")

    # handle_recv raising does not stop the plugin
    dummy = pids(daemon, "dummy")[0]
    daemon.call("kill", name="dummy", pid=dummy, waiting=True)
    replacement = new_pid(daemon, "dummy", dummy)
    wait_for(lambda: [r for r in recorded(out, "event", topic="watcher.dummy.spawn", pid=plugin)
                      if r["msg"]["process_pid"] == replacement],
             message="an event after the failure")
    assert not recorded(out, "event", topic="watcher.dummy.reap")
    assert pids(daemon, "plugin:rec") == [plugin]
    wait_for(lambda: b"handle_recv failed on watcher.dummy.reap" in daemon.read_log(),
             message="the error in circusd's log")
    # the traceback's lines keep the level of the line that starts it
    assert re.search(rb"\[ERROR\] plugin:rec\[%d\]: RuntimeError: refusing watcher.dummy.reap"
                     % plugin, daemon.read_log())

    # a plugin that dies is respawned, and works
    os.kill(plugin, signal.SIGKILL)
    respawned = new_pid(daemon, "plugin:rec", plugin)
    wait_for(lambda: recorded(out, "init", pid=respawned), message="the new plugin's init")
    wait_for(lambda: (daemon.call("set", name="dummy", options={"test.poke": 1}) and
                      recorded(out, "event", topic="watcher.dummy.updated", pid=respawned)),
             message="an event in the respawned plugin")
    assert not recorded(out, "stop", pid=plugin)  # SIGKILLed: no handle_stop

    # stopped by circusd: handle_stop runs
    daemon.call("stop", name="plugin:rec", waiting=True)
    assert recorded(out, "stop", pid=respawned)


def test_plugin_stops_when_circusd_dies(circusd, tmp_path):
    out = str(tmp_path / "rec.jsonl")
    daemon = circusd("""
        [watcher:dummy]
        cmd = sleep 300

        [plugin:rec]
        use = %s
        filename = %s
        """ % (RECORDER, out))
    plugin, dummy = pids(daemon, "plugin:rec")[0], pids(daemon, "dummy")[0]
    daemon.proc.kill()
    daemon.proc.wait()
    try:
        wait_for(lambda: not pid_alive(plugin), message="the orphaned plugin to exit")
        assert recorded(out, "stop", pid=plugin)
    finally:
        os.kill(dummy, signal.SIGKILL)  # an orphan now: no circusd to stop it


def test_circus_plugin_command(circusd, tmp_path):
    out = str(tmp_path / "rec.jsonl")
    daemon = circusd("""
        [watcher:dummy]
        cmd = sleep 300
        """)
    proc = subprocess.Popen(
        [os.path.join(BIN, "circus-plugin"), "--endpoint", daemon.endpoint,
         "--pubsub", daemon.pubsub, "--check-delay", "2", "--config", "filename=" + out,
         "--config", "extra=1", RECORDER],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        # subscriptions are asynchronous: poke until an event comes through
        wait_for(lambda: (daemon.call("set", name="dummy", options={"test.poke": 1}) and
                          recorded(out, "event", topic="watcher.dummy.updated")),
                 message="an event in the plugin")
        assert recorded(out, "init")[0]["config"] == {"extra": "1"}
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    lines = output.decode().splitlines()
    assert lines[:4] == ["[INFO] Loading the plugin...",
                         "[INFO] Endpoint: '%s'" % daemon.endpoint,
                         "[INFO] Pub/sub: '%s'" % daemon.pubsub,
                         "[INFO] Starting"], lines
    assert recorded(out, "stop")


def test_circus_plugin_reports_a_bad_class(tmp_path):
    result = subprocess.run([os.path.join(BIN, "circus-plugin"), "nosuchmodule.Plugin"],
                            capture_output=True, timeout=30)
    assert result.returncode == 1
    assert b"cannot load the plugin nosuchmodule.Plugin" in result.stderr


def test_get_arbiter_plugins(tmp_path, monkeypatch):
    from circus import get_arbiter
    from circus.arbiter import Arbiter
    monkeypatch.syspath_prepend(ROOT)  # copy_path hands it to the plugin
    out = str(tmp_path / "rec.jsonl")

    async def main():
        arbiter = get_arbiter([{"name": "dummy", "cmd": "sleep 300"}],
                              controller="tcp://127.0.0.1:%d" % free_port(),
                              pubsub_endpoint="tcp://127.0.0.1:%d" % free_port(),
                              plugins=[{"use": RECORDER, "filename": out}])
        task = asyncio.ensure_future(arbiter.run())
        try:
            await until(lambda: arbiter.status == "active" or task.done(), timeout=20)
            assert not task.done(), task.result()
            assert arbiter.get_watcher("plugin:recorder").singleton
            await until(lambda: recorded(out, "event", topic="watcher.dummy.start"),
                        message="the plugin's events")
        finally:
            arbiter.request_quit()
            await asyncio.wait_for(task, 30)
        assert recorded(out, "stop")

        # a plugin needs both endpoints to reach circusd
        bare = Arbiter([], endpoint=None, pubsub_endpoint=None, plugins=[{"use": RECORDER}])
        with pytest.raises(ValueError, match="needs circusd's endpoint and pubsub_endpoint"):
            await bare.run()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_plugin_section_needs_use(circusd, tmp_path):
    daemon = circusd("""
        [plugin:broken]
        filename = x
        """, start=False)
    result = subprocess.run([PYTHON, "-m", "circus.circusd", str(daemon.config_path)],
                            capture_output=True, timeout=30, env=daemon.env)
    assert result.returncode == 2
    assert b"[plugin:broken] use: missing option 'use'" in result.stderr


# --- flapping -----------------------------------------------------------------------
CRASH = "%s -c \"import sys; sys.exit(1)\"" % PYTHON


def test_flapping_stops_retries_and_gives_up(circusd):
    daemon = circusd("""
        [watcher:crash]
        cmd = %s
        autostart = false
        max_retry = -1
        flapping.max_retry = 1

        [plugin:flapping]
        use = circus.plugins.flapping.Flapping
        attempts = 2
        window = 1
        retry_in = 1
        max_retry = 5
        """ % CRASH)
    with EventLog(daemon, ["watcher.crash."]).sync("crash") as events:
        daemon.call("start", name="crash")
        retrying = event_after(events, "watcher.crash.updated", **state("retrying"))
        assert retrying["options"]["flapping.round"] == 1
        stopped = event_after(events, "watcher.crash.stop", retrying["time"])
        started = event_after(events, "watcher.crash.start", stopped["time"])
        assert started["time"] - stopped["time"] >= 0.9  # retry_in
        gave_up = event_after(events, "watcher.crash.updated", started["time"],
                              **state("gave up"))
        stopped = event_after(events, "watcher.crash.stop", gave_up["time"])
        with pytest.raises(AssertionError):
            event_after(events, "watcher.crash.start", stopped["time"], timeout=2.0)
    assert daemon.call("status", name="crash")["status"] == "stopped"
    assert daemon.call("get", name="crash", keys=["flapping.state"])["options"] == {
        "flapping.state": "gave up"}


def test_flapping_respects_operators_and_the_watchers_own_back_off(circusd):
    daemon = circusd("""
        [watcher:sleepers]
        cmd = sleep 300
        numprocesses = 3

        [watcher:quitter]
        cmd = %s
        autostart = false
        max_retry = 2
        flapping.attempts = 100
        flapping.max_retry = 1

        [plugin:flapping]
        use = circus.plugins.flapping.Flapping
        attempts = 2
        window = 10
        retry_in = 0.3
        """ % CRASH)
    with EventLog(daemon, ["watcher.sleepers.", "watcher.quitter."]).sync("sleepers") as events:
        # three processes gone at once: an operator's stop, not flapping
        daemon.call("stop", name="sleepers", waiting=True)
        events.topic("watcher.sleepers.stop")
        # circusd gives up on quitter on its own (max_retry = 2): the plugin
        # takes it as flapping and starts it again, once (flapping.max_retry)
        daemon.call("start", name="quitter")
        own = event_after(events, "watcher.quitter.max_retry")
        retrying = event_after(events, "watcher.quitter.updated", own["time"],
                               **state("retrying"))
        started = event_after(events, "watcher.quitter.start", retrying["time"])
        own = event_after(events, "watcher.quitter.max_retry", started["time"])
        event_after(events, "watcher.quitter.updated", own["time"], **state("gave up"))
        # by now the sleepers would long have been started again (retry_in 0.3)
        with pytest.raises(AssertionError):
            events.topic("watcher.sleepers.start", timeout=1.0)
        assert not [t for t in events.topics() if t == "watcher.sleepers.updated"]
    assert daemon.call("status", name="sleepers")["status"] == "stopped"
    assert daemon.call("status", name="quitter")["status"] == "stopped"


# --- statsd -----------------------------------------------------------------------------
def test_statsd_documented_example_config(circusd, tmp_path):
    listener = udp_socket()
    try:
        config = EXAMPLE.replace("pubsub_endpoint = tcp://127.0.0.1:5556\n", "")
        config = config.replace("endpoint = tcp://127.0.0.1:5555\n", "")
        config = config.replace("port = 8125", "port = %d" % listener.getsockname()[1])
        config = config.replace("port = 8080", "port = %d" % free_port())
        # one write for the whole line: python -u writes each piece of a
        # print() on its own, and five processes' pieces may interleave
        (tmp_path / "myprogram.py").write_text(
            "import sys, time\nsys.stdout.write('started %r\\n' % (sys.argv[1:],))\n"
            "time.sleep(300)\n")
        daemon = circusd(config, env={"VAR": "value"})
        spawn = "circus.example.watcher.myprogram.spawn:1|c"
        start = "circus.example.watcher.myprogram.start:1|c"
        datagrams_until(listener, lambda seen: seen.count(spawn) >= 5 and start in seen,
                        timeout=20)
        assert len(pids(daemon, "myprogram")) == 5
    finally:
        listener.close()
    wait_for(lambda: (tmp_path / "test.log").exists() and
             b"started ['1', 'value']" in (tmp_path / "test.log").read_bytes(),
             timeout=20, message="the program's stdout in test.log")


def test_statsd_gauges_and_names(circusd):
    listener = udp_socket()
    try:
        circusd("""
            [watcher:dummy]
            cmd = sleep 300

            [plugin:statsd]
            use = circus.plugins.statsd.StatsdEmitter
            host = 127.0.0.1
            port = %d
            application_name = gauges
            loop_rate = 0.1
            """ % listener.getsockname()[1])

        def rss(seen):
            return [int(line.split(":")[1][:-2]) for line in seen
                    if line.startswith("circus.gauges.watcher.dummy.rss:")]
        # the plugin's first round may come before dummy's first process
        lines = datagrams_until(listener, lambda seen: any(rss(seen)) and
                                "circus.gauges.watcher.dummy.processes:1|g" in seen)
    finally:
        listener.close()
    assert max(rss(lines)) < 100 << 20  # resident bytes of a sleep process
    assert [line for line in lines if line.startswith("circus.gauges.watcher.dummy.cpu:")]
    assert [line for line in lines if line.startswith("circus.gauges.watcher.dummy.mem:")]
    assert "circus.gauges.watcher.dummy.processes:1|g" in lines
    # the plugin's own watcher name, plugin:statsd, is made statsd-safe
    assert "circus.gauges.watcher.plugin_statsd.processes:1|g" in lines


def test_statsd_sample_rate():
    from circus.plugins._statsd import StatsdClient
    listener = udp_socket()
    client = StatsdClient("127.0.0.1", listener.getsockname()[1], prefix="p", sample_rate=0.5)
    try:
        for _ in range(200):
            client.increment("watcher.web.spawn")
        client.gauge("g", 1.5)
        lines = datagrams_until(listener, lambda seen: "p.g:1.5|g" in seen)
    finally:
        client.close()
        listener.close()
    counters = [line for line in lines if line != "p.g:1.5|g"]
    assert set(counters) == {"p.watcher.web.spawn:1|c|@0.5"}
    assert 50 < len(counters) < 150


# --- watchdog -----------------------------------------------------------------------------
def test_watchdog_kills_a_silent_process(circusd):
    port = free_udp_port()
    beat = "%s %s %d 0.1" % (PYTHON, os.path.join(SUPPORT, "heartbeat.py"), port)
    daemon = circusd("""
        [watcher:beating]
        cmd = %s 0

        [watcher:silent]
        cmd = %s 3

        [watcher:mute]
        cmd = sleep 300

        [plugin:watchdog]
        use = circus.plugins.watchdog.WatchDog
        port = %d
        loop_rate = 0.3
        max_count = 3
        """ % (beat, beat, port))
    beating, silent, mute = (pids(daemon, n)[0] for n in ("beating", "silent", "mute"))
    replacement = new_pid(daemon, "silent", silent)
    assert not pid_alive(silent)
    assert ("killing pid %d: no heartbeat" % silent).encode() in daemon.read_log()
    # the replacement is watched as well: it goes silent, and is killed too
    new_pid(daemon, "silent", replacement)
    # a process that beats, or never did (no startup_timeout), is left alone
    assert pids(daemon, "beating") == [beating]
    assert pids(daemon, "mute") == [mute]


# --- resource_watcher ---------------------------------------------------------------------
def test_resource_watcher_restarts_and_signals(circusd, tmp_path):
    hog = "%s %s 64" % (PYTHON, os.path.join(SUPPORT, "hog.py"))
    marker = tmp_path / "usr1"
    daemon = circusd("""
        [watcher:hog]
        cmd = %s
        resource_watcher.max_mem = 32M

        [watcher:signalled]
        cmd = %s %s
        resource_watcher.max_mem = 32M
        resource_watcher.action = SIGUSR1

        [watcher:calm]
        cmd = %s
        resource_watcher.enabled = false

        [plugin:resources]
        use = circus.plugins.resource_watcher.ResourceWatcher
        watcher = calm
        loop_rate = 0.2
        max_count = 2
        """ % (hog, hog, marker, hog))
    hog_pid, signalled, calm = (pids(daemon, n)[0] for n in ("hog", "signalled", "calm"))
    new_pid(daemon, "hog", hog_pid)
    # it goes on holding its memory: signalled again every max_count checks
    wait_for(lambda: marker.exists() and set(marker.read_text().split()) == {str(signalled)},
             message="SIGUSR1 in the signalled process")
    assert pids(daemon, "signalled") == [signalled]
    assert pids(daemon, "calm") == [calm]
    assert psutil.Process(calm).memory_info().rss > 32 << 20  # it is a hog too


def test_resource_watcher_max_cpu_restarts_a_busy_loop(circusd):
    daemon = circusd("""
        [watcher:spinner]
        cmd = %s -c "while True: pass"
        graceful_timeout = 2

        [watcher:idle]
        cmd = sleep 300

        [plugin:resources]
        use = circus.plugins.resource_watcher.ResourceWatcher
        watcher = spinner
        max_cpu = 50
        loop_rate = 0.3
        max_count = 2
        """ % PYTHON)
    spinner, idle = pids(daemon, "spinner")[0], pids(daemon, "idle")[0]
    new_pid(daemon, "spinner", spinner)
    assert not pid_alive(spinner)
    log = daemon.read_log().decode()
    assert re.search(r"watcher spinner: pid %d uses [\d.]+%% CPU \(max 50" % spinner, log), log
    assert pids(daemon, "idle") == [idle]  # not watched, and calm anyway


# --- http_observer ------------------------------------------------------------------------
class _Health(http.server.BaseHTTPRequestHandler):
    code = 200
    requests = 0

    def do_GET(self):
        type(self).requests += 1
        self.send_response(type(self).code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_observer(circusd):
    handler = type("Handler", (_Health,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        daemon = circusd("""
            [watcher:web]
            cmd = sleep 300

            [plugin:http]
            use = circus.plugins.http_observer.HttpObserver
            check_url = http://127.0.0.1:%d/health
            loop_rate = 0.2
            timeout = 2
            restart_on_error = web
            """ % server.server_address[1])
        web = pids(daemon, "web")[0]
        wait_for(lambda: handler.requests >= 2, message="two checks")
        assert pids(daemon, "web") == [web]
        with EventLog(daemon, ["watcher.web.", "watcher.plugin:http."]).sync("web") as events:
            handler.code = 503
            _, msg = events.topic("watcher.plugin:http.updated")
            assert msg["options"]["http_observer.state"] == "failing"
            assert msg["options"]["http_observer.error"] == "HTTP status 503"
            events.topic("watcher.web.stop")
            events.topic("watcher.web.start")
            assert web not in pids(daemon, "web")
            handler.code = 200
            events.wait(lambda t, m: t == "watcher.plugin:http.updated" and
                        m["options"]["http_observer.state"] == "ok")
    finally:
        server.shutdown()
        server.server_close()


# --- command_reloader ---------------------------------------------------------------------
def test_command_reloader_restarts_on_a_new_executable(circusd, tmp_path):
    app = tmp_path / "app.py"
    app.write_text("#!%s\nimport time\ntime.sleep(300)\n" % PYTHON)
    app.chmod(0o755)
    daemon = circusd("""
        [watcher:app]
        cmd = %s

        [plugin:reloader]
        use = circus.plugins.command_reloader.CommandReloader
        loop_rate = 0.1
        """ % app)
    first = pids(daemon, "app")[0]
    wait_for(lambda: ("watching %s" % app).encode() in daemon.read_log(),
             message="the reloader's first look")
    app.write_text("#!%s\n# version 2\nimport time\ntime.sleep(300)\n" % PYTHON)
    new_pid(daemon, "app", first)
    assert daemon.call("status", name="app")["status"] == "active"


# --- costs nothing to circusd -------------------------------------------------------------
@pytest.mark.slow
def test_stuck_plugin_never_slows_circusd(circusd):
    from circus.client import CircusClient
    daemon = circusd("""
        [watcher:dummy]
        cmd = sleep 300

        [plugin:stuck]
        use = tests.plugins_support.recorder.Stuck
        """)
    # idle: an idle circusd with a plugin spends next to no CPU
    proc = psutil.Process(daemon.proc.pid)
    before = proc.cpu_times()
    time.sleep(1.0)  # measuring idleness takes a while, nothing to wait for
    after = proc.cpu_times()
    assert (after.user + after.system) - (before.user + before.system) < 0.05
    # busy: the plugin reads nothing, circusd publishes far beyond the
    # subscriber's high-water mark and still answers at once
    client = CircusClient(endpoint=daemon.endpoint, timeout=5)
    try:
        value = "x" * 10000
        slowest = 0.0
        for index in range(1500):
            started = time.monotonic()
            reply = client.call({"command": "set", "properties": {
                "name": "dummy", "options": {"test.blob": "%d%s" % (index, value)}}})
            slowest = max(slowest, time.monotonic() - started)
            assert reply["status"] == "ok"
    finally:
        client.stop()
    assert slowest < 1.0
    assert pids(daemon, "plugin:stuck")


def test_resource_watcher_limits():
    from types import SimpleNamespace

    from circus.plugins.resource_watcher import ResourceWatcher, action, memory
    assert memory("200M") == ("bytes", 200 << 20)
    assert memory("1.5g") == ("bytes", 1.5 * (1 << 30))
    assert memory("10%") == memory("10") == ("percent", 10.0)
    assert action("Restart") == "restart" and action("usr1") == signal.SIGUSR1
    with pytest.raises(ValueError):
        memory("lots")
    limits = SimpleNamespace(max_cpu=50.0, min_cpu=1.0, max_mem=("bytes", 100), min_mem=None,
                             loop_rate=1.0, max_count=3)
    beyond = ResourceWatcher.beyond
    assert "max 50" in beyond(None, {"cpu": 80.0, "rss": 10, "age": 0}, limits)
    assert "max 100B" in beyond(None, {"cpu": 10.0, "rss": 200, "age": 0}, limits)
    # an idle process is only taken for one once it has lived a few checks
    assert beyond(None, {"cpu": 0.0, "rss": 10, "age": 1.0}, limits) is None
    assert "min 1.0%" in beyond(None, {"cpu": 0.0, "rss": 10, "age": 5.0}, limits)
    assert beyond(None, {"cpu": 10.0, "rss": 10, "age": 5.0}, limits) is None


# a crash loop started by hand, which flapping stops and retries after retry_in
CRASH_WITH_FLAPPING = """
    [watcher:crash]
    cmd = %s
    autostart = false
    max_retry = -1

    [plugin:flapping]
    use = circus.plugins.flapping.Flapping
    attempts = 2
    window = 1
    retry_in = {retry_in}
    """ % CRASH


def test_flapping_disabled_while_waiting_keeps_the_watcher_down(circusd):
    daemon = circusd(CRASH_WITH_FLAPPING.format(retry_in=1))
    with EventLog(daemon, ["watcher.crash."]).sync("crash") as events:
        daemon.call("start", name="crash")
        event_after(events, "watcher.crash.updated", **state("retrying"))
        # the operator's way to keep it stopped (see the plugin's documentation)
        daemon.call("set", name="crash", options={"flapping.enabled": "false"})
        stopped = event_after(events, "watcher.crash.stop")
        with pytest.raises(AssertionError):
            event_after(events, "watcher.crash.start", stopped["time"], timeout=2.0)
    assert daemon.call("status", name="crash")["status"] == "stopped"


def test_operator_stop_while_flapping_waits_keeps_the_watcher_down(circusd):
    # the plugin stops the watcher and waits retry_in; the operator's stop
    # then finds it stopped already, and must still win
    daemon = circusd(CRASH_WITH_FLAPPING.format(retry_in=1.5))
    with EventLog(daemon, ["watcher.crash."]).sync("crash") as events:
        daemon.call("start", name="crash")
        event_after(events, "watcher.crash.updated", **state("retrying"))
        stopped = event_after(events, "watcher.crash.stop")
        assert stopped["reason"] == "flapping"  # the plugin's own stop says so
        assert daemon.call("status", name="crash")["status"] == "stopped"
        reply = daemon.call("stop", name="crash", waiting=True)
        assert reply["status"] == "ok", reply
        # no state changed: no stop event, but the request is known
        again = event_after(events, "watcher.crash.already_stopped", stopped["time"])
        assert "reason" not in again
        event_after(events, "watcher.crash.updated", stopped["time"], **state("stopped"))
        # well past retry_in: the plugin did not start it again
        with pytest.raises(AssertionError):
            event_after(events, "watcher.crash.start", stopped["time"], timeout=3.0)
        assert events.topics().count("watcher.crash.stop") == 1
        # an operator's start is obeyed, and the count starts over
        daemon.call("start", name="crash")
        started = event_after(events, "watcher.crash.start", stopped["time"])
        event_after(events, "watcher.crash.updated", started["time"] - 1, **state("ok"))
        event_after(events, "watcher.crash.updated", started["time"], **state("retrying"))
    daemon.call("stop", name="crash", waiting=True)


RESTARTER = '''\
import json

from circus.plugins import CircusPlugin


class Restarter(CircusPlugin):
    """Answers the stop of `target` with a restart and a start, as a
    careless plugin would during circusd's quit; records the replies."""

    def __init__(self, target, filename, **config):
        super().__init__(**config)
        self.target = target
        self.filename = filename

    def handle_recv(self, data):
        name, event, msg = self.split_data(data)
        if name == self.target and event == "stop":
            replies = [self.call("restart", name=name), self.call("start", name=name)]
            with open(self.filename, "a") as handle:
                handle.write(json.dumps(replies) + "\\n")
'''


def test_a_plugin_cannot_restart_anything_while_circusd_quits(circusd, tmp_path):
    package = tmp_path / "quitters"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "restarter.py").write_text(RESTARTER)
    replies = tmp_path / "replies.jsonl"
    daemon = circusd("""
        [watcher:victim]
        cmd = sleep 311.5

        [watcher:slow]
        cmd = %s -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
        priority = 5
        graceful_timeout = 4

        [plugin:restarter]
        use = quitters.restarter.Restarter
        target = victim
        filename = %s
        """ % (PYTHON, replies))
    victim = pids(daemon, "victim")[0]
    pids(daemon, "plugin:restarter")
    # victim (priority 0) stops first; slow holds the quit for graceful_timeout,
    # long enough for the plugin to react
    assert daemon.call("quit")["status"] == "ok"
    got = wait_for(lambda: records(str(replies)), message="the plugin's replies")[0]
    for reply in got:
        assert reply["status"] == "error" and reply["errno"] == 5, reply
        assert "circusd is stopping" in reply["reason"], reply
    assert daemon.proc.wait(30) == 0
    assert not pid_alive(victim)
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"])
                 if p.info["cmdline"] and "311.5" in " ".join(p.info["cmdline"])]
    assert leftovers == []
    assert daemon.read_log().count(b"watcher victim started") == 1


def _plugin_section(name, **options):
    lines = ["[plugin:%s]" % name, "use = %s" % RECORDER]
    lines += ["%s = %s" % item for item in options.items()]
    return "\n".join(lines) + "\n"


def test_reloadconfig_starts_stops_and_restarts_plugin_sections(circusd, tmp_path):
    out = {name: str(tmp_path / ("%s.jsonl" % name)) for name in "abcd"}
    header = "[watcher:dummy]\ncmd = sleep 300\n"
    daemon = circusd(header + _plugin_section("a", filename=out["a"])
                     + _plugin_section("b", filename=out["b"], extra="one")
                     + _plugin_section("c", filename=out["c"]))
    before = {name: pids(daemon, "plugin:" + name)[0] for name in "abc"}
    text = daemon.config_path.read_text()
    head = text[:text.index("[watcher:dummy]")]
    daemon.config_path.write_text(head + header + _plugin_section("a", filename=out["a"])
                                  + _plugin_section("b", filename=out["b"], extra="two")
                                  + _plugin_section("d", filename=out["d"]))
    reply = daemon.call("reloadconfig", waiting=True, timeout=30)
    assert reply["status"] == "ok", reply
    assert reply["changes"]["plugins"] == {"added": ["plugin:d"], "removed": ["plugin:c"],
                                           "restarted": ["plugin:b"]}
    assert reply["changes"]["added"] == reply["changes"]["removed"] == []
    # unchanged: the very same process
    assert pids(daemon, "plugin:a") == [before["a"]]
    # changed: a new process with the new options
    b = new_pid(daemon, "plugin:b", before["b"])
    assert not pid_alive(before["b"])
    wait_for(lambda: recorded(out["b"], "init", pid=b), message="the new b's init")
    assert recorded(out["b"], "init", pid=b)[0]["config"] == {"extra": "two"}
    assert recorded(out["b"], "stop", pid=before["b"])  # stopped gracefully
    # removed: gone, with its watcher
    assert "plugin:c" not in daemon.call("list")["watchers"]
    wait_for(lambda: not pid_alive(before["c"]), message="plugin c to exit")
    # added: running and receiving events
    d = pids(daemon, "plugin:d")[0]
    wait_for(lambda: recorded(out["d"], "init", pid=d), message="d's init")
    wait_for(lambda: (daemon.call("set", name="dummy", options={"test.poke": 1}) and
                      recorded(out["d"], "event", topic="watcher.dummy.updated")),
             message="an event in the added plugin")

    # the same through SIGHUP; a section that does not change is left alone
    daemon.config_path.write_text(head + header + _plugin_section("a", filename=out["a"])
                                  + _plugin_section("b", filename=out["b"], extra="two"))
    count = daemon.read_log().count(b"configuration reloaded")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.read_log().count(b"configuration reloaded") > count,
             message="the SIGHUP reload")
    assert daemon.call("list")["watchers"] == ["dummy", "plugin:a", "plugin:b"]
    assert pids(daemon, "plugin:a") == [before["a"]] and pids(daemon, "plugin:b") == [b]
    wait_for(lambda: not pid_alive(d), message="plugin d to exit")
