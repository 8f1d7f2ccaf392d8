"""circusd killed with SIGKILL: its children die with it (circus.guardian
kills them), so nothing keeps serving the socket with stale code and the
next circusd binds the port at once; a watcher with die_with_circusd =
false outlives it."""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from support import (
    PYTHON,
    ROOT,
    Circusd,
    LogRecords,
    free_port,
    http_get,
    is_spawner,
    pid_alive,
    wait_for,
)

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
# not one program: the shell forks sleep, which dies too (its process group);
# stop_children: the second circusd's clean stop must not orphan it either
cmd = sleep 311 && true
shell = true
stop_children = true

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
        # 3 workers, 4 sleepers (and the shell's), circusd-stats, the
        # plugin and the spawner; the guardian is not circusd's child
        kids = wait_for(lambda: (lambda k: k if len(k) == 11 else None)(
            descendants(first.proc.pid)), timeout=20, message="every child")
        names = sorted(" ".join(p.cmdline()) for p in kids)
        assert sum(map(is_spawner, kids)) == 1, names
        assert "renamed 312" in names and "sleep 310" in names  # as ps shows them
        assert "sleep 311" in names and "/bin/sh -c sleep 311 && true" in names, names
        guardian = wait_for(lambda: guardian_of(first.proc.pid), message="the guardian")
        kids.append(psutil.Process(guardian))
        if os.geteuid() == 0:
            assert [p.username() for p in kids if p.cmdline() == ["sleep", "310"]] == ["nobody"]
        assert any("circus.stats" in n for n in names) and any("circus.plugins" in n
                                                               for n in names)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        killed_at = time.monotonic()
        # the guardian too: it has nothing left to do
        wait_for(lambda: not any(pid_alive(p.pid) for p in kids), timeout=5,
                 message=lambda: "circusd's children to die with it; alive: %s" % [
                     " ".join(p.cmdline()) for p in kids if pid_alive(p.pid)])
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


def guardian_of(circusd_pid):
    """The pid of circusd's guardian (not its child: found by its argv)."""
    argv = [os.path.join(ROOT, "circus", "guardian.py"), str(circusd_pid)]
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.cmdline()[-2:] == argv and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            pass
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.mark.slow
def test_a_killed_guardian_is_replaced_at_once_and_guards_every_child(tmp_path):
    daemon = Circusd(tmp_path, """
        [watcher:sleepers]
        cmd = sleep 340
        numprocesses = 3
        """)
    try:
        daemon.start()
        sleepers = wait_for(lambda: (lambda p: p if len(p) == 3 else None)(
            daemon.call("list", name="sleepers")["pids"]), message="the sleepers")
        first = wait_for(lambda: guardian_of(daemon.proc.pid), message="the guardian")
        assert first not in [c.pid for c in daemon.children()]
        os.kill(first, signal.SIGKILL)
        # circusd watches its end of the pipe and starts another without
        # waiting for a spawn
        second = wait_for(lambda: (lambda g: g if g not in (None, first) else None)(
            guardian_of(daemon.proc.pid)), message="a new guardian")
        assert b"the guardian (pid %d) died" % first in daemon.read_log()
        assert sorted(c.pid for c in daemon.children()) == sorted(sleepers)
        os.kill(daemon.proc.pid, signal.SIGKILL)
        daemon.proc.wait(10)
        wait_for(lambda: not any(pid_alive(pid) for pid in sleepers + [second]), timeout=5,
                 message="the children registered again to die with circusd")
    finally:
        daemon.stop()


@pytest.fixture
def fresh_guardian(monkeypatch):
    """This process's guardian, new: what earlier tests registered is not
    counted."""
    import circus.guardian
    guard = circus.guardian.Guardian()
    monkeypatch.setattr(circus.guardian, "_guardian", guard)
    yield guard
    guard.close()


def test_the_guardian_exits_when_the_arbiter_stops_and_nothing_is_left_to_guard(
        fresh_guardian):
    from circus.watcher import Watcher
    from support.aio import running

    async def main():
        guarded = Watcher("guarded", "sleep 341", numprocesses=2)
        async with running([guarded]):
            pid = fresh_guardian.pid
            assert len(fresh_guardian) == 2 and psutil.Process(pid).ppid() != os.getpid()
            assert psutil.Process(pid).cmdline()[-2:] == [
                os.path.join(ROOT, "circus", "guardian.py"), str(os.getpid())]
        return pid
    pid = asyncio.run(main())
    assert fresh_guardian.pid is None
    wait_for(lambda: not pid_alive(pid), message="the guardian to exit")


def test_a_guardian_that_cannot_run_is_retried_less_and_less_often(monkeypatch):
    """Not a storm of processes nor of log lines: after two that died young,
    a wait before the next start, doubled each time (here its "python"
    exits at once)."""
    from circus.guardian import Guardian
    monkeypatch.setattr(sys, "executable", "/bin/false")
    child = subprocess.Popen(["sleep", "342"])
    guard = Guardian()

    async def main():
        guard.register(child.pid)
        await asyncio.sleep(2.5)  # the window the starts are counted over
    try:
        with LogRecords() as logs:
            asyncio.run(main())
        deaths = [r.getMessage() for r in logs.records if "the guardian (pid" in r.getMessage()]
        # at 0 s, at once, after 1 s (the next after 2 s more)
        assert len(deaths) == 3, deaths
        assert deaths[-1].endswith("next try in 2 s"), deaths
        assert len(guard) == 1  # still wanted: retried
    finally:
        guard.close()
        child.kill()
        child.wait()


SPAWN = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
import circus.guardian
from circus.guardian import guardian
from circus.process import Process
if sys.argv[1] == "no-shell":
    circus.guardian.SHELL = "/nonexistent/sh"
processes = []
for line in sys.stdin:
    command, _, count = line.strip().partition(" ")
    if command == "spawn":
        processes.append(Process(1, "sleep 330", die_with_parent=sys.argv[1] != "opted-out"))
        print(processes[-1].pid)
    elif command == "register":  # the same registrations again, count times
        for i in range(int(count)):
            guardian().register(processes[i % len(processes)].pid)
        print(len(guardian()._pending))
    else:
        print(guardian().pid)
    sys.stdout.flush()
"""


class Program:
    """A Python program using circus.process.Process, driven line by line."""

    def __init__(self, how):
        self.proc = subprocess.Popen([PYTHON, "-c", SPAWN, how], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, PYTHONPATH=ROOT))
        self.pids = []

    def ask(self, what):
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        return None if answer == "None" else int(answer)

    def spawn(self):
        self.pids.append(self.ask("spawn"))
        return self.pids[-1]

    def close(self):
        self.proc.kill()
        self.proc.wait(10)
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("how", ["guarded", "guardian-killed", "no-shell", "opted-out"])
def test_the_children_of_a_program_die_with_it(how):
    """Process(die_with_parent=True) in any program: the guardian kills them
    when it dies; one killed is replaced at the next registration, which
    registers every child again; without /bin/sh the guardian is the
    program's child."""
    program = Program(how)
    try:
        first = [program.spawn() for _ in range(2)]
        guardian = program.ask("guardian")
        if how == "opted-out":
            assert guardian is None
        else:
            assert (psutil.Process(guardian).ppid() == program.proc.pid) == (how == "no-shell")
            assert psutil.Process(guardian).cmdline()[-2:] == [
                os.path.join(ROOT, "circus", "guardian.py"), str(program.proc.pid)]
        for pid in first:
            assert psutil.Process(pid).ppid() == program.proc.pid
            wait_for(lambda: psutil.Process(pid).cmdline() == ["sleep", "330"],
                     message="the command's own command line")
        if how == "guardian-killed":
            os.kill(guardian, signal.SIGKILL)
            wait_for(lambda: not pid_alive(guardian), message="the guardian to die")
            program.spawn()  # its write finds the pipe broken
            second = program.ask("guardian")
            assert second not in (None, guardian) and not pid_alive(guardian)
        program.proc.kill()
        program.proc.wait(10)
        if how == "opted-out":
            time.sleep(0.5)  # what must not happen: give them every chance
            assert all(pid_alive(pid) for pid in program.pids)
        else:
            wait_for(lambda: not any(pid_alive(pid) for pid in program.pids), timeout=5,
                     message="the children to die with their parent")
            last = second if how == "guardian-killed" else guardian
            wait_for(lambda: not pid_alive(last), message="the guardian to exit")
        warnings = program.proc.stderr.read()
        if how == "guardian-killed":
            assert warnings.count("the guardian (pid %d) died" % guardian) == 1, warnings
        else:
            assert "WARNING" not in warnings, warnings
    finally:
        program.close()


def test_registrations_a_stopped_guardian_cannot_take_wait_and_are_written_later():
    """A full pipe never blocks the program: what it did not take waits and
    goes with the next write, and the children still die with it."""
    program = Program("guarded")
    try:
        children = [program.spawn() for _ in range(2)]
        guardian = program.ask("guardian")
        os.kill(guardian, signal.SIGSTOP)
        try:
            # more than the pipe's 1 MiB: about 12 bytes a line
            assert program.ask("register 120000") > 0
        finally:
            os.kill(guardian, signal.SIGCONT)
        wait_for(lambda: program.ask("register 1") == 0, message="the pipe to drain")
        program.proc.kill()
        program.proc.wait(10)
        wait_for(lambda: not any(pid_alive(pid) for pid in children), timeout=5,
                 message="the children to die with their parent")
        wait_for(lambda: not pid_alive(guardian), message="the guardian to exit")
    finally:
        program.close()
