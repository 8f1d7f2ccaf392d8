"""circusd end to end: `circusd server.ini` serving HTTP through a circus
socket, signals, the pidfile, --daemon, --log-output, the default config and
SIGHUP reloads. Processes are inspected through /proc and psutil only."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from support import (
    BIN,
    ROOT,
    children_of,
    free_port,
    http_get,
    pid_alive,
    port_is_free,
    tools,
    wait_for,
)

CIRCUSD = os.path.join(BIN, "circusd")

WEB = """
[watcher:web]
cmd = chaussette --fd $(circus.sockets.web) --backend {backend} tests.apps.hello.application
use_sockets = True
copy_env = True
numprocesses = 3

[watcher:plain]
cmd = sleep 120

[socket:web]
host = 127.0.0.1
port = {port}
"""


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().decode().split("\0")
    except OSError:
        return []


def workers(pid, marker):
    """pids of pid's children whose (exec'd) command line contains marker."""
    return sorted(c.pid for c in children_of(pid) if marker in " ".join(cmdline(c.pid)))


def wait_workers(pid, marker, count, timeout=10.0):
    return wait_for(lambda: (lambda p: p if len(p) == count else None)(workers(pid, marker)),
                    timeout=timeout, message="%d %r processes" % (count, marker))


def fd_of(pid):
    """The --fd N a chaussette worker was given."""
    argv = cmdline(pid)
    return int(argv[argv.index("--fd") + 1])


def open_fds(pid):
    return sorted(int(fd) for fd in os.listdir("/proc/%d/fd" % pid))


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def answering_pid(body):
    return int(re.match(rb"pid=(\d+)", body).group(1))


def get_pid(port):
    status, body = http_get(port)
    assert status == 200, body
    return answering_pid(body)


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as handle:
        return handle.read().rpartition(")")[2].split()[0]


def distinct_answers(port, pids):
    """One answer from each worker: a worker that answered is stopped
    (SIGSTOP) so the next connection must be accepted by another one."""
    answered = []
    try:
        for _ in pids:
            pid = get_pid(port)
            assert pid in pids and pid not in answered
            answered.append(pid)
            os.kill(pid, signal.SIGSTOP)
            # stopped for real before the next connection: a worker still
            # running (closing, logging) could accept it and then stop
            wait_for(lambda: proc_state(pid) == "T", message="pid %d to stop" % pid)
    finally:
        for pid in answered:
            os.kill(pid, signal.SIGCONT)
    return answered


def web(circusd, backend="meinheld", extra_args=()):
    port = free_port()
    daemon = circusd(WEB.format(backend=backend, port=port), extra_args=extra_args)
    daemon.port = port
    return daemon


# --- serving ------------------------------------------------------------------
@pytest.mark.needs("chaussette")
@pytest.mark.parametrize("backend", [
    pytest.param("meinheld", marks=pytest.mark.needs("meinheld")), "wsgiref"])
def test_three_workers_share_one_socket(circusd, backend):
    daemon = web(circusd, backend)
    pids = wait_workers(daemon.proc.pid, "chaussette", 3)
    # tests.apps.hello answers with the pid of whoever served
    status, body = http_get(daemon.port, "/hello")
    assert status == 200 and body == b"pid=%d path=/hello\n" % answering_pid(body)
    assert answering_pid(body) in pids
    assert sorted(distinct_answers(daemon.port, pids)) == pids

    # every worker holds the very socket circusd bound, by the fd it was told
    fd = fd_of(pids[0])
    inode = os.stat("/proc/%d/fd/%d" % (daemon.proc.pid, fd)).st_ino
    assert os.readlink("/proc/%d/fd/%d" % (daemon.proc.pid, fd)) == "socket:[%d]" % inode
    for pid in pids:
        assert fd_of(pid) == fd
        assert os.stat("/proc/%d/fd/%d" % (pid, fd)).st_ino == inode

    # a watcher without use_sockets has stdio and nothing else
    (plain,) = wait_workers(daemon.proc.pid, "sleep", 1)
    assert open_fds(plain) == [0, 1, 2]


@pytest.mark.needs("chaussette", "meinheld")
def test_a_killed_worker_is_replaced_within_a_second(circusd):
    daemon = web(circusd)
    before = wait_workers(daemon.proc.pid, "chaussette", 3)
    victim = before[1]
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: (lambda p: p if len(p) == 3 and victim not in p else None)(
        workers(daemon.proc.pid, "chaussette")), timeout=1.0, interval=0.005,
        message="a replacement worker")
    assert time.monotonic() - killed < 1.0
    assert set(before) - {victim} < set(after)
    # and it serves
    wait_for(lambda: len(cmdline(*set(after) - set(before))) > 1, message="exec")
    assert get_pid(daemon.port) in after


# --- stopping -------------------------------------------------------------------
@pytest.mark.needs("chaussette", "meinheld")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT],
                         ids=lambda s: signal.Signals(s).name)
def test_stop_signals_stop_everything_gracefully(circusd, tmp_path, signum):
    pidfile = tmp_path / "circusd.pid"
    daemon = web(circusd, extra_args=["--pidfile", str(pidfile)])
    assert int(pidfile.read_text()) == daemon.proc.pid
    children = [c.pid for c in daemon.children()]
    assert len(children) == 4
    daemon.proc.send_signal(signum)
    assert daemon.proc.wait(30) == 0
    assert not [pid for pid in children if pid_alive(pid)]
    assert port_is_free(daemon.port)
    assert not pidfile.exists()
    log = daemon.read_log().decode()
    assert "Got signal %s" % signal.Signals(signum).name in log
    assert "Traceback" not in log


@pytest.mark.needs("chaussette")
def test_daemon_with_pidfile_and_log_output(tmp_path):
    port = free_port()
    config = tmp_path / "circus.ini"
    plain = ("[watcher:plain]\ncmd = sh -c 'echo hello from $PWD; exec sleep 120'\n"
             "stdout_stream.class = FileStream\nstdout_stream.filename = plain.log\n")
    config.write_text("[circus]\nendpoint = tcp://127.0.0.1:%d\npubsub_endpoint = "
                      "tcp://127.0.0.1:%d\n" % (free_port(), free_port())
                      + WEB.format(backend="wsgiref", port=port).replace(
                          "[watcher:plain]\ncmd = sleep 120\n", plain))
    assert "plain.log" in config.read_text()

    # relative paths: they mean the directory circusd was started from
    result = subprocess.run([CIRCUSD, "circus.ini", "--daemon", "--pidfile", "circusd.pid",
                             "--log-output", "circusd.log"], cwd=str(tmp_path),
                            env=dict(os.environ, PYTHONPATH=ROOT), timeout=30,
                            capture_output=True)
    assert result.returncode == 0, result
    pidfile, log = tmp_path / "circusd.pid", tmp_path / "circusd.log"
    pid = wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() and
                   int(pidfile.read_text()), message="the pidfile")
    try:
        assert pid_alive(pid)
        # detached: in a session of its own but not its leader (so it can
        # never get a controlling terminal), and not our child
        assert os.getsid(pid) not in (os.getsid(0), pid)
        assert psutil.Process(pid).ppid() != os.getpid()
        wait_for(lambda: b"Arbiter now waiting" in log.read_bytes(), timeout=20,
                 message="the daemon's log")
        assert get_pid(port) in workers(pid, "chaussette")
        wait_for(lambda: (tmp_path / "plain.log").exists() and
                 (tmp_path / "plain.log").read_text() == "hello from %s\n" % tmp_path,
                 message="the stream file beside the config")
        # a reload resolves relative paths as the start did
        config.write_text(config.read_text() + "[watcher:late]\n"
                          "cmd = sh -c 'echo late; exec sleep 120'\n"
                          "stdout_stream.filename = late.log\n")
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: (tmp_path / "late.log").exists() and
                 (tmp_path / "late.log").read_text() == "late\n", message="late.log")
        children = [c.pid for c in children_of(pid)]
        assert len(children) == 5
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), timeout=30, message="the daemon to exit")
    assert not [c for c in children if pid_alive(c)]
    assert not pidfile.exists()
    assert port_is_free(port)
    assert b"Arbiter exiting" in log.read_bytes()


def test_daemon_that_cannot_start_makes_the_launcher_fail(tmp_path):
    marker = tmp_path / "started"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "circus.ini"
        config.write_text(
            "[circus]\nendpoint = tcp://127.0.0.1:%d\npubsub_endpoint = tcp://127.0.0.1:%d\n"
            "[watcher:w]\ncmd = touch %s\nuse_sockets = true\n"
            "[socket:web]\nhost = 127.0.0.1\nport = %d\n"
            % (free_port(), free_port(), marker, port))
        result = subprocess.run([CIRCUSD, str(config), "--daemon", "--pidfile", "c.pid"],
                                cwd=str(tmp_path), capture_output=True, text=True, timeout=30,
                                env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 3
    assert "could not start" in result.stderr and "address already in use" in result.stderr
    assert not marker.exists() and not (tmp_path / "c.pid").exists()


def test_a_second_circusd_with_the_same_pidfile_is_refused(circusd, tmp_path):
    pidfile = tmp_path / "circusd.pid"
    daemon = circusd("[watcher:plain]\ncmd = sleep 120\n",
                     extra_args=["--pidfile", str(pidfile)])
    result = subprocess.run([CIRCUSD, str(daemon.config_path), "--pidfile", str(pidfile)],
                            capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 1
    assert "already running with pid %d" % daemon.proc.pid in result.stderr
    assert int(pidfile.read_text()) == daemon.proc.pid  # left alone
    # a stale pidfile (its process is gone) is no obstacle
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    pidfile.write_text("%d\n" % daemon.proc.pid)
    again = circusd("[watcher:plain]\ncmd = sleep 120\n",
                    extra_args=["--pidfile", str(pidfile)])
    # (same log file as the first: its start line proves nothing)
    wait_for(lambda: pidfile.read_text().strip() == str(again.proc.pid) or
             again.proc.poll() is not None, message="the new pidfile")
    assert again.proc.poll() is None


def test_an_endpoint_in_use_is_one_line_and_starts_nothing(tmp_path):
    import zmq
    context = zmq.Context.instance()
    taken = context.socket(zmq.ROUTER)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        config = tmp_path / "circus.ini"
        config.write_text("[circus]\nendpoint = tcp://127.0.0.1:%d\n"
                          "pubsub_endpoint = tcp://127.0.0.1:%d\n"
                          "[watcher:w]\ncmd = touch %s\n" % (port, free_port(),
                                                           tmp_path / "started"))
        result = subprocess.run([CIRCUSD, str(config)], capture_output=True, text=True,
                                timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    finally:
        taken.close(0)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr and "Address already in use" in result.stderr
    assert "tcp://127.0.0.1:%d" % port in result.stderr
    assert not (tmp_path / "started").exists()


def test_an_unwritable_log_output(tmp_path):
    config = tmp_path / "circus.ini"
    config.write_text("[watcher:w]\ncmd = touch %s\n" % (tmp_path / "started"))
    result = subprocess.run([CIRCUSD, str(config), "--log-output",
                             str(tmp_path / "no" / "such" / "dir.log")],
                            capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2 and "cannot open the log output" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "started").exists()


def test_log_output_file(circusd, tmp_path):
    logfile = tmp_path / "custom.log"
    daemon = circusd("[watcher:plain]\ncmd = sleep 120\n",
                     extra_args=["--log-output", str(logfile)], start=False)
    daemon.start(wait=False)
    wait_for(lambda: logfile.exists() and b"Arbiter now waiting" in logfile.read_bytes(),
             timeout=20, message="the log file")
    assert b"watcher plain started" in logfile.read_bytes()
    assert b"Arbiter now waiting" not in daemon.read_log()  # not on stdout
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert b"Arbiter exiting" in logfile.read_bytes()


def test_log_level_warning_keeps_info_lines_out(circusd):
    daemon = circusd("[watcher:plain]\ncmd = sleep 120\n"
                     "[watcher:ghost]\ncmd = /nonexistent/ghost\nmax_retry = 0\n",
                     extra_args=["--log-level", "warning"], start=False)
    daemon.start(wait=False)

    def answers():
        try:
            return daemon.call("status", name="plain", timeout=1)["status"] == "active"
        except Exception:
            return daemon.proc.poll() is not None
    wait_for(answers, timeout=20, message="circusd to answer")
    assert daemon.proc.poll() is None
    wait_for(lambda: b"ghost" in daemon.read_log(), message="the ghost's error")
    ok = daemon.call("reload", name="plain", waiting=True)
    assert ok["status"] == "ok"
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    log = daemon.read_log()
    assert b"cannot start '/nonexistent/ghost'" in log  # errors still show
    for info in (b"Arbiter now waiting", b"watcher plain started", b"watcher plain reloaded",
                 b"Starting master", b"Arbiter exiting", b"spawned pid"):
        assert info not in log, info
    assert all(b"[INFO]" not in line and b"[DEBUG]" not in line for line in log.splitlines())


@pytest.mark.needs("chaussette", "meinheld")
def test_no_config_runs_the_embedded_default(tmp_path):
    for port in (8080, 5555, 5556):
        if not port_is_free(port):
            pytest.skip("the default config needs 127.0.0.1:%d, which is in use here" % port)
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([CIRCUSD], cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        wait_for(lambda: proc.poll() is not None or
                 len(workers(proc.pid, "circus-worker")) == 3, timeout=20,
                 message="3 circus-worker workers")
        if proc.poll() is not None:
            output = (tmp_path / "log").read_text()
            if "already in use" in output:  # taken since we looked
                pytest.skip("the default config needs 127.0.0.1:8080, 5555 and 5556: "
                            "one was taken meanwhile")
            raise AssertionError(output)
        pids = wait_workers(proc.pid, "circus-worker", 3)
        status, body = wait_for(lambda: _try_get(8080), timeout=20, message="port 8080")
        assert status == 200 and body.startswith(b"Hello from circus worker ")
        assert int(body.split()[-1]) in pids
        # where it serves, once its workers accept
        wait_for(lambda: b"[INFO] serving http://127.0.0.1:8080 (socket web)\n"
                 in (tmp_path / "log").read_bytes(), message="the serving line")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0
    assert not [pid for pid in pids if pid_alive(pid)]
    # released by us (another test may take 8080 right after: check who holds it)
    holders = {c.pid for c in psutil.net_connections("tcp")
               if c.laddr and c.laddr.port == 8080 and c.status == psutil.CONN_LISTEN}
    assert not holders & ({proc.pid} | set(pids))


def test_the_built_in_config_says_where_it_serves_or_that_it_does_not():
    import asyncio

    from circus.arbiter import Arbiter
    from circus.circusd import announce_built_in
    from circus.sockets import CircusSocket
    from circus.watcher import Watcher
    from support import LogRecords, aio

    async def main(port, cmd):
        arbiter = Arbiter([Watcher("web", cmd, use_sockets=True, max_retry=0, ready="notify",
                                   ready_timeout=5)],
                          sockets=[CircusSocket("web", host="127.0.0.1", port=port)],
                          endpoint=None, pubsub_endpoint=None)
        announce_built_in(arbiter)
        task = asyncio.ensure_future(arbiter.run())
        try:
            await aio.until(lambda: arbiter.status == "active" or task.done(), timeout=20)
        finally:
            arbiter.request_quit()
            await asyncio.wait_for(task, 30)

    ready = "%s -c 'from circus.sdnotify import notify; notify(\"READY=1\"); " \
            "import time; time.sleep(60)'" % sys.executable
    for cmd, line in ((ready, "[INFO] serving http://127.0.0.1:%d (socket web)"),
                      ("sh -c 'exit 1'", "[ERROR] not serving http://127.0.0.1:%d (socket web): "
                                         "its workers could not start (see above)")):
        port = free_port()
        with LogRecords() as logged:
            asyncio.run(main(port, cmd))
        said = ["[%s] %s" % (r.levelname, r.getMessage()) for r in logged.records
                if "serving" in r.getMessage()]
        assert said == [line % port]


def _try_get(port):
    try:
        return http_get(port, timeout=2)
    except OSError:
        return None


# --- SIGHUP ---------------------------------------------------------------------
HUP_BEFORE = """
[watcher:keep]
cmd = sleep 120
numprocesses = 2

[watcher:gone]
cmd = sleep 121

[watcher:change]
cmd = sleep 122

[watcher:resize]
cmd = sleep 123

[watcher:web]
cmd = chaussette --fd $(circus.sockets.moved) --backend wsgiref tests.apps.hello.application
use_sockets = True
copy_env = True

[socket:fixed]
host = 127.0.0.1
port = {fixed}

[socket:moved]
host = 127.0.0.1
port = {old}
"""

HUP_AFTER = """
[watcher:keep]
cmd = sleep 120
numprocesses = 2

[watcher:change]
cmd = sleep 132

[watcher:resize]
cmd = sleep 123
numprocesses = 2

[watcher:new]
cmd = sleep 124

[watcher:web]
cmd = chaussette --fd $(circus.sockets.moved) --backend wsgiref tests.apps.hello.application
use_sockets = True
copy_env = True

[socket:fixed]
host = 127.0.0.1
port = {fixed}

[socket:moved]
host = 127.0.0.1
port = {new}
"""


def listening_fds(pid):
    """port -> (fd, inode) of pid's listening TCP sockets."""
    found = {}
    for conn in psutil.Process(pid).net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.fd != -1:
            found[conn.laddr.port] = (conn.fd, os.stat("/proc/%d/fd/%d" % (pid, conn.fd)).st_ino)
    return found


def rewrite(daemon, text):
    header = "[circus]\nendpoint = %s\npubsub_endpoint = %s\n" % (daemon.endpoint, daemon.pubsub)
    daemon.config_path.write_text(header + text)


def hup(daemon, marker):
    count = daemon.read_log().decode().count(marker)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.read_log().decode().count(marker) > count, timeout=30,
             message="%r in the log after SIGHUP" % marker)


@pytest.mark.slow
@pytest.mark.needs("chaussette")
def test_sighup_applies_what_changed_and_only_that(circusd):
    fixed, old, new = free_port(), free_port(), free_port()
    daemon = circusd(HUP_BEFORE.format(fixed=fixed, old=old))
    pid = daemon.proc.pid
    keep = wait_workers(pid, "sleep 120", 2)
    gone = wait_workers(pid, "sleep 121", 1)
    change = wait_workers(pid, "sleep 122", 1)
    resize = wait_workers(pid, "sleep 123", 1)
    web_before = wait_workers(pid, "chaussette", 1)
    status, body = wait_for(lambda: _try_get(old), message="the web worker")
    assert answering_pid(body) in web_before
    sockets_before = listening_fds(pid)
    assert set(sockets_before) >= {fixed, old}

    rewrite(daemon, HUP_AFTER.format(fixed=fixed, new=new))
    hup(daemon, "configuration reloaded")

    assert workers(pid, "sleep 120") == keep  # untouched: the very same processes
    assert workers(pid, "sleep 121") == [] and not pid_alive(gone[0])
    assert workers(pid, "sleep 122") == [] and not pid_alive(change[0])
    wait_workers(pid, "sleep 132", 1)
    resized = wait_workers(pid, "sleep 123", 2)
    assert resize[0] in resized  # resized in place
    wait_workers(pid, "sleep 124", 1)

    sockets_after = listening_fds(pid)
    assert sockets_after[fixed] == sockets_before[fixed]  # same fd, same socket
    assert old not in sockets_after and new in sockets_after
    # the web workers were replaced to inherit the new socket, and nobody
    # holds the old port any more
    web_after = wait_workers(pid, "chaussette", 1)
    assert web_after != web_before
    assert fd_of(web_after[0]) == sockets_after[new][0]
    status, body = wait_for(lambda: _try_get(new), message="the web worker on the new port")
    assert status == 200 and answering_pid(body) in web_after
    wait_for(lambda: port_is_free(old), message="the old port to be released")
    assert refused(old)
    assert daemon.proc.poll() is None


def test_sighup_with_a_broken_config_keeps_everything_running(circusd):
    daemon = circusd("[watcher:keep]\ncmd = sleep 120\nnumprocesses = 2\n"
                     "[socket:s]\nhost = 127.0.0.1\nport = 0\n")
    pid = daemon.proc.pid
    keep = wait_workers(pid, "sleep 120", 2)
    sockets = listening_fds(pid)
    rewrite(daemon, "[watcher:keep]\ncmd = sleep 120\nnumprocesses = many\n")
    hup(daemon, "numprocesses")
    log = daemon.read_log().decode()
    assert "%s [watcher:keep] numprocesses" % daemon.config_path in log
    assert daemon.proc.poll() is None
    assert workers(pid, "sleep 120") == keep
    assert listening_fds(pid) == sockets

    # fixed again: the next SIGHUP applies it
    rewrite(daemon, "[watcher:keep]\ncmd = sleep 120\nnumprocesses = 3\n"
                    "[socket:s]\nhost = 127.0.0.1\nport = 0\n")
    hup(daemon, "configuration reloaded")
    assert set(keep) < set(wait_workers(pid, "sleep 120", 3))


def test_sighup_config_error_is_logged_as_one_line(circusd):
    daemon = circusd("[watcher:keep]\ncmd = sleep 120\n")
    wait_workers(daemon.proc.pid, "sleep 120", 1)
    rewrite(daemon, "[watcher:keep]\ncmd = sleep 120\nmax_retry = -5\n")
    hup(daemon, "max_retry")
    log = daemon.read_log().decode()
    (line,) = [line for line in log.splitlines() if "max_retry" in line]
    assert "[ERROR]" in line and "%s [watcher:keep] max_retry" % daemon.config_path in line
    assert "Traceback" not in log


def test_sighup_with_a_watcher_that_cannot_be_built_changes_nothing(circusd):
    fixed, moved = free_port(), free_port()
    before = ("[watcher:gone]\ncmd = sleep 121\n"
              "[socket:s]\nhost = 127.0.0.1\nport = %d\n" % fixed)
    daemon = circusd(before)
    pid = daemon.proc.pid
    gone = wait_workers(pid, "sleep 121", 1)
    sockets = listening_fds(pid)
    # loads fine, but the stream's constructor fails when the watcher is built
    rewrite(daemon, "[watcher:new]\ncmd = sleep 124\n"
                    "stdout_stream.class = tests.apps.streams.Broken\n"
                    "[socket:s]\nhost = 127.0.0.1\nport = %d\n" % moved)
    hup(daemon, "this stream cannot be built")
    assert daemon.proc.poll() is None
    assert workers(pid, "sleep 121") == gone
    assert listening_fds(pid) == sockets


# --- statsd and stats_endpoint ------------------------------------------------

def _stats_args(daemon):
    reply = daemon.call("options", name="circusd-stats")
    assert reply["status"] == "ok", reply
    args = reply["options"]["args"]
    return args[args.index("--statspoint") + 1]


def _stats_arrive(endpoint, timeout=20.0):
    """True once a stat.circus message arrives on endpoint (AssertionError
    after timeout)."""
    from circus.stats.client import StatsClient
    client = StatsClient(endpoint, timeout=0.2)

    def circus_stat():
        message = client.recv(0.2)
        return message is not None and message[0] == "circus"
    try:
        return wait_for(circus_stat, timeout, interval=0,
                        message="a stat.circus message on %s" % endpoint)
    finally:
        client.close()


def test_statsd_true_runs_circusd_stats_on_the_default_endpoint(circusd):
    # "statsd: if set to True, Circus runs the circusd-stats daemon"; with no
    # stats_endpoint it publishes on the default one
    daemon = circusd("[circus]\nstatsd = true\n[watcher:keep]\ncmd = sleep 120\n")
    assert daemon.call("list")["watchers"] == ["circusd-stats", "keep"]
    assert _stats_args(daemon) == "tcp://127.0.0.1:5557"
    options = daemon.call("globaloptions")["options"]
    assert options["stats_endpoint"] == "tcp://127.0.0.1:5557"
    wait_for(lambda: daemon.call("list", name="circusd-stats")["pids"],
             message="circusd-stats to run")


def test_statsd_with_stats_endpoint_and_reloads(circusd):
    first = "tcp://127.0.0.1:%d" % free_port()
    daemon = circusd("[circus]\nstatsd = true\nstats_endpoint = %s\n"
                     "[watcher:keep]\ncmd = sleep 120\n" % first)
    assert _stats_args(daemon) == first
    assert _stats_arrive(first)
    keep = wait_workers(daemon.proc.pid, "sleep 120", 1)
    # statsd = false, no stats_endpoint: circusd-stats goes
    rewrite(daemon, "[watcher:keep]\ncmd = sleep 120\n")
    reply = daemon.call("reloadconfig", waiting=True, timeout=30)
    assert reply["status"] == "ok" and reply["changes"]["stats_endpoint"] is None, reply
    assert daemon.call("list")["watchers"] == ["keep"]
    # statsd = true again, on another endpoint: it comes back there
    second = "tcp://127.0.0.1:%d" % free_port()
    daemon.config_path.write_text(
        "[circus]\nendpoint = %s\npubsub_endpoint = %s\nstatsd = true\nstats_endpoint = %s\n"
        "[watcher:keep]\ncmd = sleep 120\n" % (daemon.endpoint, daemon.pubsub, second))
    reply = daemon.call("reloadconfig", waiting=True, timeout=30)
    assert reply["status"] == "ok" and reply["changes"]["stats_endpoint"] == second, reply
    assert _stats_args(daemon) == second
    assert _stats_arrive(second)
    assert workers(daemon.proc.pid, "sleep 120") == keep  # untouched throughout


BACKLOG_CONFIG = """
[watcher:holder]
cmd = sleep 300
use_sockets = True
numprocesses = 2

[watcher:plain]
cmd = sleep 301

[socket:web]
host = 127.0.0.1
port = {port}
backlog = {backlog}
"""


def listen_backlog(port):
    """The backlog of the socket listening on 127.0.0.1:port (ss's Send-Q)."""
    out = subprocess.run([tools.path("ss"), "-Hltn", "sport = :%d" % port], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[2]) if out else None


@pytest.mark.needs("ss")
def test_reloadconfig_of_a_socket_backlog_applies_it_in_place(circusd):
    port = free_port()
    daemon = circusd(BACKLOG_CONFIG.format(port=port, backlog=5))
    pid = daemon.proc.pid
    holders = wait_workers(pid, "sleep 300", 2)
    plain = wait_workers(pid, "sleep 301", 1)
    before = listening_fds(pid)[port]
    assert listen_backlog(port) == 5

    rewrite(daemon, BACKLOG_CONFIG.format(port=port, backlog=64))
    reply = daemon.call("reloadconfig", waiting=True)
    assert reply["status"] == "ok", reply
    assert reply["changes"]["sockets"] == ["web"]
    assert listen_backlog(port) == 64
    assert listening_fds(pid)[port] == before  # the same socket, same fd
    # nobody had to be restarted to inherit anything
    assert workers(pid, "sleep 300") == holders and workers(pid, "sleep 301") == plain
    assert daemon.call("listsockets")["sockets"][0]["backlog"] == 64
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # still listening

    # another change (the port) binds a new socket, as before
    other = free_port()
    rewrite(daemon, BACKLOG_CONFIG.format(port=other, backlog=64))
    assert daemon.call("reloadconfig", waiting=True)["status"] == "ok"
    assert other in listening_fds(pid) and port not in listening_fds(pid)
    wait_workers(pid, "sleep 300", 2)
    wait_for(lambda: not set(workers(pid, "sleep 300")) & set(holders),
             message="holders replaced to inherit the new socket")
