"""circusd-stats, its stream, its consumer and circus-top, with a real circusd.

Every daemon test runs circusd with stats_endpoint on a free loopback port,
real children (busy loops, memory eaters, sleeps) and reads the stream with
circus.stats.client. circus-top runs in a tmux server of its own.
"""
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from circus.stats.client import StatsClient, StatsSnapshot, parse_message
from support import PYTHON, ROOT, free_port, pid_alive, tools, wait_for

BUSY = '%s -c "while True: pass"' % PYTHON
# grows by 4 MB every 0.2 s up to 200 MB, touching every page, then idles
EATER = (PYTHON + ' -c "exec(\'import time\\nchunks = []\\nwhile True:\\n'
         '    if len(chunks) < 50: chunks.append(b\\\'x\\\' * (4 << 20))\\n'
         '    time.sleep(0.2)\')"')


class StatsLog:
    """Reads the stats stream and waits, with a deadline, for a message."""

    def __init__(self, endpoint):
        self.client = StatsClient(endpoint, timeout=0.05)
        self.items = []  # (watcher, subtopic, stat)
        self._seen = 0

    def close(self):
        self.client.close()

    def _pump(self, timeout):
        message = self.client.recv(timeout)
        while message is not None:
            self.items.append(message)
            message = self.client.recv(0)

    def wait(self, predicate, timeout=20.0, message="stats message"):
        """The first message (watcher, subtopic, stat) not yet returned for
        which predicate is true."""
        def first_new():
            while self._seen < len(self.items):
                item = self.items[self._seen]
                self._seen += 1
                if predicate(*item):
                    return item
            return None

        def recent():
            got = sorted({"%s.%s" % (w, s) for w, s, _ in self.items[-200:]})
            return "%s; recent topics: %s" % (message, got)
        return wait_for(first_new, timeout,
                        pause=lambda remaining: self._pump(min(remaining, 0.2)), message=recent)

    def topic(self, watcher, subtopic=None, timeout=20.0, check=lambda stat: True):
        return self.wait(lambda w, s, stat: w == watcher and s == subtopic and check(stat),
                         timeout, message="stat.%s%s" % (watcher, "" if subtopic is None
                                                         else ".%s" % subtopic))[2]


@pytest.fixture
def stats_daemon(circusd):
    """circusd(config) with stats_endpoint set; returns (daemon, stats log)."""
    logs = []

    def start(config):
        endpoint = "tcp://127.0.0.1:%d" % free_port()
        daemon = circusd("[circus]\nstats_endpoint = %s\n" % endpoint
                         + textwrap.dedent(config))
        daemon.stats_endpoint = endpoint
        log = StatsLog(endpoint)
        logs.append(log)
        return daemon, log

    yield start
    for log in logs:
        log.close()


def _pids(daemon, name):
    reply = daemon.call("list", name=name)
    assert reply["status"] == "ok", reply
    return reply["pids"]


@pytest.mark.slow
def test_stream_carries_watchers_processes_and_circus(stats_daemon):
    daemon, log = stats_daemon("""
        [watcher:busy]
        cmd = %s

        [watcher:sleepers]
        cmd = sleep 600
        numprocesses = 2
    """ % BUSY)
    # circusd-stats is a watcher like any other
    assert "circusd-stats" in daemon.call("list")["watchers"]
    assert daemon.call("status", name="circusd-stats")["status"] == "active"
    [stats_pid] = _pids(daemon, "circusd-stats")
    info = daemon.call("stats", name="circusd-stats")["info"]
    assert "circus.stats" in info[str(stats_pid)]["cmdline"]

    [busy] = _pids(daemon, "busy")
    sleepers = _pids(daemon, "sleepers")

    # a busy loop shows as busy (the first sample of a pid has no interval yet)
    stat = log.topic("busy", busy, check=lambda s: isinstance(s["cpu"], float) and s["cpu"] > 50)
    assert stat["pid"] == busy and stat["watcher"] == "busy" and stat["subtopic"] == busy
    assert "while True" in stat["cmdline"]
    for key in ("mem", "rss", "vms", "mem_info1", "mem_info2", "ctime", "age", "create_time",
                "nice", "username", "time"):
        assert key in stat, key
    assert stat["rss"] > 1 << 20 and stat["vms"] >= stat["rss"]
    assert 0 < stat["age"] < 120 and 0 < stat["mem"] < 100

    total = log.topic("sleepers", check=lambda s: sorted(s["pid"]) == sorted(sleepers))
    assert total["count"] == 2 and total["cpu"] < 20
    assert total["rss"] > 0 and total["age"] > 0
    for pid in sleepers:
        stat = log.topic("sleepers", pid)
        assert stat["cmdline"] == "sleep 600" and stat["cpu"] < 20

    # stat.circus: circusd itself and circusd-stats, each named
    total = log.topic("circus", check=lambda s: set(s["pid"]) == {daemon.proc.pid, stats_pid})
    names = {}
    for pid in total["pid"]:
        names[pid] = log.topic("circus", pid)["name"]
    assert names == {daemon.proc.pid: "circusd", stats_pid: "circusd-stats"}
    # circusd-stats is also published under its own watcher
    log.topic("circusd-stats", check=lambda s: s["pid"] == [stats_pid])


@pytest.mark.slow
def test_original_clients_still_get_one_message_per_process(stats_daemon):
    # a subscriber to stat., as Circus 0.19's circus-top and StatsClient are:
    # one message per process, per watcher, for circus and for each socket,
    # and never a batch
    import zmq
    daemon, log = stats_daemon("""
        [socket:web]
        host = 127.0.0.1
        port = %d

        [watcher:sleepers]
        cmd = sleep 600
        numprocesses = 2
    """ % free_port())
    sleepers = _pids(daemon, "sleepers")
    [stats_pid] = _pids(daemon, "circusd-stats")
    [sock] = daemon.call("listsockets")["sockets"]
    wanted = {"stat.sleepers.%d" % pid for pid in sleepers}
    wanted |= {"stat.sleepers", "stat.circus", "stat.circus.%d" % daemon.proc.pid,
               "stat.circus.%d" % stats_pid, "stat.sockets", "stat.sockets.%d" % sock["fd"]}
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"stat.")
    sub.connect(daemon.stats_endpoint)
    seen = {}
    try:
        def everything():
            while sub.poll(100):
                topic, body = sub.recv_multipart()
                seen[topic.decode()] = json.loads(body)
            return wanted <= set(seen)
        wait_for(everything, timeout=20, message="every stat.* topic")
    finally:
        sub.close(0)
        context.term()
    assert all(topic.startswith("stat.") for topic in seen), sorted(seen)
    stat = seen["stat.sleepers.%d" % sleepers[0]]
    assert stat["pid"] == stat["subtopic"] == sleepers[0] and stat["watcher"] == "sleepers"
    assert stat["cmdline"] == "sleep 600" and stat["ctime"].startswith("0:")
    assert sorted(seen["stat.sleepers"]["pid"]) == sorted(sleepers)
    assert seen["stat.circus.%d" % stats_pid]["name"] == "circusd-stats"
    assert seen["stat.sockets.%d" % sock["fd"]]["name"] == "web"


@pytest.mark.slow
def test_proc_stat_reader_agrees_with_psutil():
    # the one-read sampler parses /proc/PID/stat by field position: check it
    # against psutil on a process with a nice value, some memory and CPU time
    import psutil

    from circus.stats.collector import _HAS_PROC_STAT, _read_proc_stat, _read_psutil
    if not _HAS_PROC_STAT:
        pytest.skip("no /proc/PID/stat here")
    # a space and parentheses in the command name, as proc(5) allows
    code = ("import os, sys; os.nice(5); b = bytearray(30 << 20); "
            "open('/proc/self/comm', 'w').write('we) ird (name'); "
            "sum(range(3000000)); print('ready', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([PYTHON, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        assert psutil.Process(proc.pid).name() == "we) ird (name"
        cpu, nice, rss, vms = _read_proc_stat(proc.pid)
        ref_cpu, ref_nice, ref_rss, ref_vms = _read_psutil(psutil.Process(proc.pid))
        # the same read through a descriptor kept open, as the collector does
        fd = os.open("/proc/%d/stat" % proc.pid, os.O_RDONLY)
        assert _read_proc_stat(proc.pid, fd)[1:] == (nice, rss, vms)
        # cpu seconds: same ticks, but psutil adds utime and stime as floats
        assert cpu == pytest.approx(ref_cpu, abs=1e-9)
        assert (nice, vms) == (ref_nice, ref_vms)
        assert nice == 5 and cpu > 0
        assert rss > 30 << 20 and abs(rss - ref_rss) < 0.05 * ref_rss
    finally:
        proc.kill()
        proc.wait()
    from circus.stats.collector import psutil as collector_psutil
    with pytest.raises(collector_psutil.NoSuchProcess):
        _read_proc_stat(proc.pid)
    try:
        with pytest.raises(collector_psutil.NoSuchProcess):
            _read_proc_stat(proc.pid, fd)
    finally:
        os.close(fd)


def test_memory_eater_shows_rising_rss(stats_daemon):
    daemon, log = stats_daemon("""
        [watcher:eater]
        cmd = %s
    """ % EATER)
    [pid] = _pids(daemon, "eater")
    first = log.topic("eater", pid)["rss"]
    samples = [first]

    def grown(stat):
        samples.append(stat["rss"])
        return stat["rss"] > first + (24 << 20)
    log.topic("eater", pid, check=grown)
    # it only grows: every sample at least the one before (give or take a page)
    assert all(b >= a - (1 << 16) for a, b in zip(samples, samples[1:])), samples
    total = log.topic("eater", check=lambda s: s["rss"] > first + (24 << 20))
    assert total["pid"] == [pid]


@pytest.mark.slow
def test_dead_process_leaves_the_stream_and_its_successor_joins(stats_daemon):
    daemon, log = stats_daemon("""
        [watcher:sleepers]
        cmd = sleep 600
        numprocesses = 2
    """)
    # past circusd-stats' early resyncs: from now on only events tell it
    # about processes (its next full listing is 30 s away)
    for _ in range(5):
        log.topic("circus")
    old = _pids(daemon, "sleepers")
    victim = old[0]
    log.topic("sleepers", victim)
    os.kill(victim, signal.SIGKILL)
    total = log.topic("sleepers", timeout=10,
                      check=lambda s: victim not in s["pid"] and len(s["pid"]) == 2)
    [successor] = set(total["pid"]) - set(old)
    assert successor in _pids(daemon, "sleepers")
    log.topic("sleepers", successor)
    # two more whole ticks: nothing more about the dead pid
    start = len(log.items)
    log.topic("sleepers")
    log.topic("sleepers")
    assert not [m for m in log.items[start:] if m[1] == victim]

    # a consumer's snapshot drops it as soon as an aggregate leaves it out
    snapshot = StatsSnapshot()
    for item in log.items:
        snapshot.update(*item)
    assert victim not in {s["pid"] for s in snapshot.processes("sleepers")}
    assert successor in {s["pid"] for s in snapshot.processes("sleepers")}


@pytest.mark.slow
def test_incr_kill_and_rm_reach_the_stream_by_events(circusd, tmp_path):
    """circusd-stats run by hand with no resync for an hour: once its early
    resyncs are over, only circusd's events can tell it about new and gone
    processes and watchers, and its debug log shows it listed nothing more."""
    daemon = circusd("""
        [watcher:sleepers]
        cmd = sleep 600
    """)
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    stats_log = tmp_path / "stats.log"
    proc = subprocess.Popen([PYTHON, "-m", "circus.stats", "--endpoint", daemon.endpoint,
                             "--pubsub", daemon.pubsub, "--statspoint", endpoint,
                             "--delay", "0.25", "--resync-interval", "3600",
                             "--log-level", "debug", "--log-output", str(stats_log)],
                            env=dict(os.environ, PYTHONPATH=ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = StatsLog(endpoint)

    def resyncs():
        return stats_log.read_text().count("resynced with circusd") if stats_log.exists() else 0
    try:
        # the first listing and the two early ones (EARLY_RESYNCS)
        from circus.stats.streamer import EARLY_RESYNCS
        wait_for(lambda: resyncs() == 1 + len(EARLY_RESYNCS), timeout=20,
                 message="circusd-stats' early resyncs")
        [first] = _pids(daemon, "sleepers")
        log.topic("sleepers", first)
        listed = resyncs()

        # incr: the new pids show up within a few ticks
        assert daemon.call("incr", name="sleepers", nb=2, waiting=True)["status"] == "ok"
        three = set(_pids(daemon, "sleepers"))
        assert len(three) == 3
        log.topic("sleepers", check=lambda s: set(s["pid"]) == three, timeout=5)
        for pid in three - {first}:
            log.topic("sleepers", pid, timeout=5)

        # a killed process leaves, its successor (known only by its spawn) joins
        os.kill(first, signal.SIGKILL)
        total = log.topic("sleepers", timeout=5,
                          check=lambda s: first not in s["pid"] and len(s["pid"]) == 3)
        [successor] = set(total["pid"]) - three
        assert successor in _pids(daemon, "sleepers")
        log.topic("sleepers", successor, timeout=5)

        # a watcher added then removed comes and goes with its events
        reply = daemon.call("add", name="extra", cmd="sleep 600", start=True)
        assert reply["status"] == "ok", reply
        [extra] = wait_for(lambda: _pids(daemon, "extra"), message="extra's process")
        log.topic("extra", extra, timeout=5)
        assert daemon.call("rm", name="extra", waiting=True)["status"] == "ok"
        log.topic("circus")
        start = len(log.items)
        # two whole ticks without it
        log.topic("circus")
        log.topic("circus")
        assert not [m for m in log.items[start:] if m[0] == "extra"]

        # all of it without asking circusd again
        assert resyncs() == listed
    finally:
        log.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stats_log.read_text()


@pytest.mark.slow
def test_socket_stats_from_the_kernel(stats_daemon):
    port = free_port()
    daemon, log = stats_daemon("""
        [socket:web]
        host = 127.0.0.1
        port = %d
        backlog = 64

        [watcher:sleeper]
        cmd = sleep 600
    """ % port)
    [sock] = daemon.call("listsockets")["sockets"]
    stat = log.topic("sockets", sock["fd"])
    assert stat["name"] == "web" and stat["address"] == "127.0.0.1:%d" % port
    assert stat["backlog"] == 64 and stat["queued"] == 0 and stat["drops"] == 0
    # nobody accepts: connections wait in the accept queue, which the
    # kernel reports without circusd-stats touching the socket
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        stat = log.topic("sockets", sock["fd"],
                         check=lambda s: s["queued"] == 3 and s["connections"] == 3)
        assert stat["new"] is not None and stat["new"] >= 0
        total = log.topic("sockets", check=lambda s: s["connections"] == 3)
        assert total["addresses"] == ["127.0.0.1:%d" % port] and total["queued"] == 3
    finally:
        # (closed by the client, they still wait in the queue, in CLOSE_WAIT,
        # until a worker accepts them and reads their end)
        for client in clients:
            client.close()


def test_circusd_stats_stops_at_once_while_circusd_is_unreachable(tmp_path):
    # its first listing waits up to its call timeout (5 s) for a circusd that
    # is not there; a SIGTERM must not wait for that
    log_path = tmp_path / "stats.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "circus.stats", "--endpoint", "tcp://127.0.0.1:%d" % free_port(),
             "--pubsub", "tcp://127.0.0.1:%d" % free_port(),
             "--statspoint", "tcp://127.0.0.1:%d" % free_port()],
            env=dict(os.environ, PYTHONPATH=ROOT), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"publishing stats" in log_path.read_bytes(), timeout=10,
                 message="circusd-stats to start")
        proc.send_signal(signal.SIGTERM)
        proc.wait(2.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()


@pytest.mark.slow
def test_circusd_stats_runs_by_hand(circusd, tmp_path):
    daemon = circusd("""
        [watcher:sleeper]
        cmd = sleep 600
    """)
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    proc = subprocess.Popen([PYTHON, "-m", "circus.stats", "--endpoint", daemon.endpoint,
                             "--pubsub", daemon.pubsub, "--statspoint", endpoint],
                            env=dict(os.environ, PYTHONPATH=ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = StatsLog(endpoint)
    try:
        [pid] = _pids(daemon, "sleeper")
        log.topic("sleeper", pid)
        total = log.topic("circus", check=lambda s: set(s["pid"]) == {daemon.proc.pid, proc.pid})
        assert total["count"] == 2
    finally:
        log.close()
        proc.send_signal(signal.SIGTERM)
        try:
            output = proc.communicate(timeout=15)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0].decode()
    assert proc.returncode == 0, output
    assert "stats streamer stopped" in output


@pytest.mark.slow
def test_circusd_stats_leaves_with_circusd(circusd):
    daemon = circusd("[circus]\nstats_endpoint = tcp://127.0.0.1:%d\n" % free_port())
    [stats_pid] = _pids(daemon, "circusd-stats")
    wait_for(lambda: b"following" in daemon.read_log(), message="circusd-stats to sync")
    daemon.proc.kill()
    daemon.proc.wait()
    try:
        wait_for(lambda: not pid_alive(stats_pid), timeout=10,
                 message="circusd-stats to exit after circusd")
    finally:
        if pid_alive(stats_pid):
            os.kill(stats_pid, signal.SIGKILL)


# --- circus-top -------------------------------------------------------------

class Tmux:
    """A tmux server of our own, so no user session is ever touched (its
    tests are marked needs("tmux"))."""

    def __init__(self, tmp_path):
        self.name = "circus-test-%d-%d" % (os.getpid(), free_port())
        self.conf = tmp_path / "tmux.conf"
        # keep the pane after the program exits, to read its exit status
        self.conf.write_text("set -g remain-on-exit on\nset -g status off\n")
        self.status_file = tmp_path / "exit-status"

    def run(self, *args, check=True):
        return subprocess.run([tools.path("tmux"), "-L", self.name, "-f", str(self.conf)]
                              + list(args),
                              capture_output=True, text=True,
                              check=check, timeout=10)

    def start(self, argv, width=120, height=40):
        # the shell records the exit status: tmux 3.3 does not always reap
        # a pane's program in time to tell it
        command = " ".join(shlex.quote(a) for a in argv)
        # (the shell survives a Ctrl-C meant for the program: a trap with a
        # command is reset to the default in the program it runs)
        script = "trap true INT; PYTHONPATH=%s TERM=xterm-256color %s; echo $? > %s" % (
            shlex.quote(ROOT), command, shlex.quote(str(self.status_file)))
        self.run("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                 "sh -c %s" % shlex.quote(script))

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "top").stdout

    def wait_screen(self, predicate, timeout=20.0, message="screen"):
        last = [""]

        def check():
            last[0] = self.screen()
            return predicate(last[0])
        try:
            wait_for(check, timeout=timeout, interval=0.1, message=message)
            return last[0]
        except AssertionError:
            raise AssertionError("%s; the screen:\n%s" % (message, last[0])) from None

    def exit_status(self):
        """None while the program runs, else its exit status."""
        try:
            text = self.status_file.read_text()
        except FileNotFoundError:
            return None
        return int(text) if text.strip() else None

    def wait_exit(self, timeout=10.0):
        try:
            wait_for(lambda: self.exit_status() is not None, timeout=timeout,
                     message="the program to exit")
        except AssertionError:
            raise AssertionError("still running; the screen:\n%s" % self.screen()) from None
        return self.exit_status()

    def kill(self):
        self.run("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path):
    server = Tmux(tmp_path)
    yield server
    server.kill()


def _top(endpoint):
    return [PYTHON, "-m", "circus.stats.top", "--endpoint", endpoint]


@pytest.mark.slow
@pytest.mark.needs("tmux")
def test_circus_top_shows_watchers_and_quits_on_q(stats_daemon, tmux):
    daemon, log = stats_daemon("""
        [watcher:busy]
        cmd = %s

        [watcher:sleepers]
        cmd = sleep 600
        numprocesses = 3

        [socket:web]
        host = 127.0.0.1
        port = %d
    """ % (BUSY, free_port()))
    [busy] = _pids(daemon, "busy")
    tmux.start(_top(daemon.stats_endpoint))
    screen = tmux.wait_screen(
        lambda s: all(t in s for t in ("busy (1 process)", "sleepers (3 processes)",
                                       "(circusd)", "(circusd-stats)", "web (fd", "(avg)")),
        message="circus-top to show the watchers")
    assert "Circus Top" in screen and "CPU (%)" in screen and "MEMORY (%)" in screen
    assert str(busy) in screen
    for pid in _pids(daemon, "sleepers"):
        assert str(pid) in screen
    # the busy loop is sorted first within its section and shows its CPU
    busy_line = [line for line in screen.splitlines() if line.strip().startswith(str(busy))]
    assert busy_line, screen
    # resizing: the narrow layout drops the RSS column
    tmux.run("resize-window", "-t", "top", "-x", "70", "-y", "20")
    tmux.wait_screen(lambda s: "RSS" not in s and "CPU (%)" in s, message="a narrower layout")
    tmux.run("send-keys", "-t", "top", "q")
    assert tmux.wait_exit() == 0


@pytest.mark.slow
@pytest.mark.needs("tmux")
def test_circus_top_says_when_the_endpoint_is_unreachable(tmux):
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    tmux.start(_top(endpoint))
    screen = tmux.wait_screen(lambda s: "Cannot reach circusd-stats" in s,
                              message="circus-top to report the dead endpoint")
    assert endpoint in screen.replace("\n", " ")
    tmux.run("send-keys", "-t", "top", "C-c")
    assert tmux.wait_exit() == 0


def test_circus_top_needs_a_terminal():
    proc = subprocess.run([PYTHON, "-m", "circus.stats.top", "--endpoint", "tcp://127.0.0.1:1"],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2 and "needs a terminal" in proc.stderr


# --- pieces on their own ----------------------------------------------------

def test_parse_message_ours_and_the_original_stream():
    assert parse_message([b"stat.web.v2.123", b'{"watcher": "web.v2", "cpu": 1}'])[:2] == \
        ("web.v2", 123)
    assert parse_message([b"stat.web.v2", b'{"watcher": "web.v2", "pid": []}'])[:2] == \
        ("web.v2", None)
    # the original circusd-stats' bodies carry no watcher
    assert parse_message([b"stat.web.123", b'{"cpu": 1}'])[:2] == ("web", 123)
    assert parse_message([b"stat.web", b'{"pid": [1]}'])[:2] == ("web", None)
    assert parse_message([b"stat.sockets.5", b'{"fd": 5}'])[:2] == ("sockets", 5)


def test_snapshot_expires_what_is_not_refreshed():
    snapshot = StatsSnapshot(expiry=3)
    snapshot.update("web", 1, {"pid": 1, "cpu": 1.0}, now=100)
    snapshot.update("web", 2, {"pid": 2, "cpu": 2.0}, now=100)
    snapshot.update("web", None, {"pid": [1, 2], "cpu": 1.5}, now=100)
    assert snapshot.watchers() == ["web"]
    assert {s["pid"] for s in snapshot.processes("web")} == {1, 2}
    snapshot.update("web", 2, {"pid": 2, "cpu": 2.0}, now=101)
    snapshot.update("web", None, {"pid": [2], "cpu": 2.0}, now=101)
    assert {s["pid"] for s in snapshot.processes("web")} == {2}
    snapshot.prune(now=105)
    assert snapshot.watchers() == [] and snapshot.processes("web") == []


def test_sockdiag_reports_a_listening_socket_queue(tmp_path):
    from circus.stats.sockdiag import SocketStats, socket_inode
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    unix_path = str(tmp_path / "s.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    unix.listen(7)
    port = listener.getsockname()[1]
    infos = [{"name": "tcp", "fd": listener.fileno(), "host": "127.0.0.1", "port": port,
              "family": "AF_INET", "type": "SOCK_STREAM",
              "inode": socket_inode(os.getpid(), listener.fileno())},
             {"name": "unix", "fd": unix.fileno(), "path": unix_path, "family": "AF_UNIX",
              "type": "SOCK_STREAM", "inode": socket_inode(os.getpid(), unix.fileno())}]
    stats = SocketStats(budget=10.0)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    unix_client = socket.socket(socket.AF_UNIX)
    unix_client.connect(unix_path)
    try:
        tcp, unix_stat = stats.collect(infos, now=0.0)
        assert (tcp["queued"], tcp["backlog"], tcp["connections"]) == (2, 5, 2)
        assert (unix_stat["queued"], unix_stat["backlog"]) == (1, 7)
        assert unix_stat["address"] == "unix:%s" % unix_path
        accepted, _ = listener.accept()
        more = socket.create_connection(("127.0.0.1", port))
        tcp, _ = stats.collect(infos, now=2.0)
        # two queued, one accepted and still open; one new in two seconds
        assert (tcp["queued"], tcp["connections"], tcp["new"]) == (2, 3, 0.5)
        accepted.close()
        more.close()
    finally:
        stats.close()
        for client in clients + [unix_client]:
            client.close()
        listener.close()
        unix.close()


def test_make_stats_watcher_runs_this_python_as_a_singleton():
    from circus.arbiter import Arbiter
    from circus.system_watchers import STATS_PRIORITY, make_stats_watcher
    arbiter = Arbiter([], endpoint="tcp://*:5555", pubsub_endpoint="tcp://0.0.0.0:5556",
                      stats_endpoint="tcp://127.0.0.1:5557")
    watcher = make_stats_watcher(arbiter)
    assert watcher.name == "circusd-stats" and watcher.singleton
    assert watcher.copy_env and watcher.copy_path and watcher.priority == STATS_PRIORITY
    assert sys.executable in watcher.cmd
    args = watcher.args
    assert args[:2] == ["-m", "circus.stats"]
    assert args[args.index("--endpoint") + 1] == "tcp://127.0.0.1:5555"
    assert args[args.index("--pubsub") + 1] == "tcp://127.0.0.1:5556"
    assert args[args.index("--statspoint") + 1] == "tcp://127.0.0.1:5557"
    with pytest.raises(ValueError):
        make_stats_watcher(Arbiter([], endpoint=None, pubsub_endpoint=None,
                                   stats_endpoint="tcp://127.0.0.1:5557"))
