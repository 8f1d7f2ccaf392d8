"""circusd killed with SIGKILL: its children die with it (the kernel's
parent-death signal, circus.pdeathsig), so nothing keeps serving the socket
with stale code and the next circusd binds the port at once; a watcher with
die_with_circusd = false outlives it."""
import os
import signal
import subprocess
import textwrap
import time

import psutil
import pytest

from support import PYTHON, ROOT, Circusd, free_port, http_get, pid_alive, wait_for

# a tiny worker: it answers every connection on the inherited socket with its pid
WORKER = textwrap.dedent("""
    import os, socket, sys
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    while True:
        conn, _ = sock.accept()
        conn.recv(65536)
        body = b"pid=%d" % os.getpid()
        conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
        conn.close()
""")

CONFIG = """
[circus]
stats_endpoint = tcp://127.0.0.1:{stats}

[socket:web]
host = 127.0.0.1
port = {port}

[watcher:web]
cmd = {py} {worker} $(circus.sockets.web)
use_sockets = true
numprocesses = 3

[watcher:as-nobody]
cmd = sleep 310
{as_nobody}

[watcher:shell]
# the shell dies with circusd; what it starts does only if the shell execs it
# (dash does not exec the last command of sh -c by itself)
cmd = exec sleep 311
shell = true

[watcher:named]
cmd = renamed 312
executable = {sleep}

[watcher:limited]
cmd = sleep 313
rlimit_nofile = 256

[plugin:rec]
use = tests.plugins_support.recorder.Recorder
filename = {records}
"""


def descendants(pid):
    try:
        return [p for p in psutil.Process(pid).children(recursive=True)
                if p.status() != psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


def serving_pid(port):
    try:
        status, body = http_get(port, timeout=1)
    except OSError:
        return None
    return int(body.split(b"=")[1]) if status == 200 else None


@pytest.mark.slow
def test_kill_9_of_circusd_kills_every_child_and_frees_the_port(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    port = free_port()
    # the signal is set after the change of user (only root may change it)
    config = CONFIG.format(stats=free_port(), port=port, py=PYTHON, worker=worker,
                           as_nobody="uid = nobody" if os.geteuid() == 0 else "",
                           sleep=subprocess.check_output(["which", "sleep"], text=True).strip(),
                           records=tmp_path / "records.jsonl")
    first = Circusd(tmp_path, config)
    second = None
    try:
        first.start()
        wait_for(lambda: serving_pid(port), timeout=20, message="the workers to serve")
        # 3 workers, 4 sleepers, circusd-stats and the plugin
        kids = wait_for(lambda: (lambda k: k if len(k) == 9 else None)(
            descendants(first.proc.pid)), timeout=20, message="every child")
        names = sorted(" ".join(p.cmdline()) for p in kids)
        assert "renamed 312" in names and "sleep 310" in names  # as ps shows them
        if os.geteuid() == 0:
            assert [p.username() for p in kids if p.cmdline() == ["sleep", "310"]] == ["nobody"]
        assert any("circus.stats" in n for n in names) and any("circus.plugins" in n
                                                               for n in names)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: not any(pid_alive(p.pid) for p in kids), timeout=5,
                 message="circusd's children to die with it")
        print("children gone %.3f s after circusd" % (time.monotonic() - killed_at))
        # nobody serves the port with stale code; a new circusd binds it at once
        assert serving_pid(port) is None
        second = Circusd(tmp_path, config)
        second.log_path = tmp_path / "second.log"
        started = time.monotonic()
        second.start(wait=False)
        new = wait_for(lambda: serving_pid(port), timeout=20, message="the new workers")
        served = time.monotonic() - started
        print("a new circusd served the port %.3f s after its start" % served)
        assert b"address already in use" not in second.read_log()
        assert psutil.Process(new).ppid() == second.proc.pid
        assert served < 1.0, served
        wait_for(lambda: b"Arbiter now waiting" in second.read_log(), timeout=20)
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.slow
def test_a_watcher_may_outlive_circusd(tmp_path):
    daemon = Circusd(tmp_path, """
        [watcher:stays]
        cmd = sleep 320
        die_with_circusd = false

        [watcher:goes]
        cmd = sleep 321
        """)
    stays = []
    try:
        daemon.start()
        stays = wait_for(lambda: daemon.call("list", name="stays")["pids"], message="stays")
        goes = wait_for(lambda: daemon.call("list", name="goes")["pids"], message="goes")
        assert daemon.call("get", name="stays", keys=["die_with_circusd"])["options"] == \
            {"die_with_circusd": False}
        os.kill(daemon.proc.pid, signal.SIGKILL)
        daemon.proc.wait(10)
        wait_for(lambda: not pid_alive(goes[0]), timeout=5, message="goes to die")
        time.sleep(0.5)  # what must not happen: give the kernel every chance
        assert pid_alive(stays[0])
        assert psutil.Process(stays[0]).cmdline() == ["sleep", "320"]
    finally:
        for pid in stays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        daemon.stop()


SPAWN = """
import logging, sys, time
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
import circus.pdeathsig
if sys.argv[1] == "without-setpriv":
    circus.pdeathsig._setpriv[:] = [None]
from circus.process import Process
processes = [Process(1, "sleep 330", die_with_parent=sys.argv[1] != "opted-out")
             for _ in range(2)]
print(" ".join(str(p.pid) for p in processes), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("how", ["setpriv", "without-setpriv", "opted-out"])
def test_the_children_of_a_program_die_with_it(how):
    """Process(die_with_parent=True): setpriv when installed, else a
    preexec_fn (and one warning saying why it is slower)."""
    program = subprocess.Popen([PYTHON, "-c", SPAWN, how], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=ROOT))
    pids = []
    try:
        pids = [int(p) for p in program.stdout.readline().split()]
        assert len(pids) == 2
        for pid in pids:
            assert psutil.Process(pid).ppid() == program.pid
            wait_for(lambda: psutil.Process(pid).cmdline() == ["sleep", "330"],
                     message="the command's own command line")
        program.kill()
        program.wait(10)
        if how == "opted-out":
            time.sleep(0.5)  # what must not happen: give the kernel every chance
            assert all(pid_alive(pid) for pid in pids)
        else:
            wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=5,
                     message="the children to die with their parent")
        warnings = program.stderr.read()
        if how == "without-setpriv":
            assert warnings.count("setpriv (util-linux) is not installed") == 1, warnings
            assert "slower" in warnings
        else:
            assert "WARNING" not in warnings, warnings
    finally:
        program.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
