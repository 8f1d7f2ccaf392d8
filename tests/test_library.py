"""The library of section 5.9: get_arbiter, and Arbiter, Watcher, Process and
CircusSocket used from a program without any config file."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import circus
from circus import get_arbiter
from circus.process import DEAD_OR_ZOMBIE, RUNNING, Process
from support import ROOT, free_port, http_get, pid_alive, wait_for

PY = sys.executable


def endpoints():
    return {"controller": "tcp://127.0.0.1:%d" % free_port(),
            "pubsub_endpoint": "tcp://127.0.0.1:%d" % free_port()}


def my_children(marker):
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and marker in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            pass
    return sorted(found)


def program_children(pid, marker):
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE and marker in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            pass
    return sorted(found)


class Program:
    """A Python program using the library, run as its own process."""

    def __init__(self, tmp_path, source, **fmt):
        self.path = tmp_path / "program.py"
        self.path.write_text(textwrap.dedent(source).format(**fmt))
        self.out = tmp_path / "program.out"
        self.handle = open(self.out, "wb")
        self.proc = subprocess.Popen([PY, str(self.path)], stdout=self.handle,
                                     stderr=subprocess.STDOUT, cwd=str(tmp_path),
                                     env=dict(os.environ, PYTHONPATH=ROOT))

    def output(self):
        return self.out.read_text()

    def wait(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            # gracefully first: the program then stops and reaps its children
            self.proc.send_signal(signal.SIGTERM)
            self.wait(10)
        if self.proc.poll() is None:
            for pid in program_children(self.proc.pid, ""):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()
        self.handle.close()


@pytest.fixture
def program(tmp_path):
    started = []

    def factory(source, **fmt):
        started.append(Program(tmp_path, source, **fmt))
        return started[-1]
    yield factory
    for prog in started:
        prog.kill()


# --- 5.9.1 get_arbiter ----------------------------------------------------------
SEED_SNIPPET = """
from circus import get_arbiter

arbiter = get_arbiter("sleep 120.5", numprocesses=3,
                      controller="{controller}", pubsub_endpoint="{pubsub_endpoint}")
try:
    arbiter.start()
finally:
    arbiter.stop()
print("done", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT],
                         ids=lambda s: signal.Signals(s).name)
def test_the_documented_snippet_runs_as_written(program, signum):
    prog = program(SEED_SNIPPET, **endpoints())
    pids = wait_for(lambda: (lambda p: p if len(p) == 3 else None)(
        program_children(prog.proc.pid, "sleep 120.5")), message="3 processes")
    prog.proc.send_signal(signum)  # as a user's Ctrl-C or a service manager would
    assert prog.wait() == 0, prog.output()
    assert prog.output().endswith("done\n"), prog.output()
    assert not [pid for pid in pids if pid_alive(pid)]


STOP_FROM_A_THREAD = """
import threading, time
from circus import get_arbiter

arbiter = get_arbiter("sleep 120.6", numprocesses=2,
                      controller="{controller}", pubsub_endpoint="{pubsub_endpoint}")
stopped = []

def stopper():
    while arbiter.status != "active":
        time.sleep(0.01)
    # past the watchers' own timers: nothing else would wake the loop
    time.sleep(1.5)
    stopped.append(time.monotonic())
    arbiter.stop()

threading.Thread(target=stopper, daemon=True).start()
try:
    arbiter.start()
finally:
    arbiter.stop()
print("stopped after %.2f s" % (time.monotonic() - stopped[0]), flush=True)
"""


@pytest.mark.slow
def test_stop_from_another_thread_returns_at_once(program):
    prog = program(STOP_FROM_A_THREAD, **endpoints())
    wait_for(lambda: len(program_children(prog.proc.pid, "sleep 120.6")) == 2,
             message="2 processes")
    code = prog.wait(timeout=4)
    assert code == 0, prog.output()
    seconds = float(re.search(r"stopped after ([\d.]+) s", prog.output()).group(1))
    assert seconds < 2.0


def test_get_arbiter_in_the_background():
    arbiter = get_arbiter("sleep 120.7", numprocesses=3, background=True, **endpoints())
    try:
        assert arbiter.running
        watcher = arbiter.get_watcher("sleep")  # named after the command
        assert arbiter.numwatchers() == 1 and watcher.numprocesses == 3
        # the loop runs in another thread: a child may exist a moment before
        # its watcher has recorded it
        pids = wait_for(lambda: (lambda p: p if len(p) == 3 and sorted(watcher.pids) == p
                                 else None)(my_children("sleep 120.7")),
                        message=lambda: "3 processes, the watcher's: %s, seen: %s" % (
                            sorted(watcher.pids), my_children("sleep 120.7")))
        assert arbiter.numprocesses() == 3
        # they are respawned from the background thread too
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: len(my_children("sleep 120.7")) == 3 and
                 pids[0] not in my_children("sleep 120.7"), timeout=2,
                 message="the replacement")
        pids = my_children("sleep 120.7")
    finally:
        arbiter.stop()
    assert not arbiter.running and arbiter.status == "stopped"
    assert not [pid for pid in pids if pid_alive(pid)]
    arbiter.stop()  # twice is harmless


def test_the_documented_pattern_with_background_runs_and_stops():
    """get_arbiter(..., background=True), then the documented start() and
    stop(): start() of the arbiter get_arbiter started returns at once;
    any other start of a running arbiter is an error that changes nothing."""
    from circus.arbiter import ArbiterError
    from circus.client import CircusClient
    ep = endpoints()
    arbiter = get_arbiter("sleep 120.5", numprocesses=2, background=True, **ep)
    try:
        started = time.monotonic()
        assert arbiter.start() is None
        assert time.monotonic() - started < 1.0 and arbiter.running
        pids = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(
            my_children("sleep 120.5")), message="2 processes")
        for again in (arbiter.start, arbiter.start_background):
            with pytest.raises(ArbiterError, match="already running .*get_arbiter"):
                again()
        import asyncio
        with pytest.raises(ArbiterError, match="already running"):
            asyncio.run(arbiter.run())
        # nothing was corrupted: the same processes, commands answered, a
        # killed process replaced by the arbiter's own loop
        assert sorted(arbiter.get_watcher("sleep").pids) == pids
        client = CircusClient(endpoint=ep["controller"], timeout=5)
        try:
            assert sorted(client.call({"command": "list", "properties": {"name": "sleep"}})[
                "pids"]) == pids
        finally:
            client.stop()
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: len(my_children("sleep 120.5")) == 2 and
                 pids[0] not in my_children("sleep 120.5"), message="the replacement")
    finally:
        arbiter.stop()
    assert not arbiter.running and not my_children("sleep 120.5")
    # stopped, it may run again
    arbiter.start_background()
    try:
        assert arbiter.running
        wait_for(lambda: len(my_children("sleep 120.5")) == 2, message="2 processes again")
    finally:
        arbiter.stop()
    assert not my_children("sleep 120.5")


def test_get_arbiter_with_watcher_mappings_env_and_streams(tmp_path):
    arbiter = get_arbiter(
        [{"name": "talker", "cmd": PY, "numprocesses": 2,
          "args": ["-u", "-c", "import os, sys, time; print(os.environ['GREETING'], "
                   "sys.argv[1]); time.sleep(120)", "$(circus.wid)"],
          "stdout_stream": {"class": "QueueStream"},
          "warmup_delay": 0, "max_retry": 5},
         {"name": "other", "cmd": "sleep 120.8", "env": {"OWN": "1"}}],
        env={"GREETING": "hello"}, background=True, **endpoints())
    try:
        talker = arbiter.get_watcher("talker")
        output = {}

        def read_one(remaining):
            item = talker.stdout_stream.get(timeout=10)
            output[item["pid"]] = output.get(item["pid"], b"") + item["data"]
        wait_for(lambda: len(output) >= 2 and all(data.endswith(b"\n")
                                                  for data in output.values()),
                 timeout=10, pause=read_one, message=lambda: "a line from each; got %r" % output)
        assert sorted(output.values()) == [b"hello 1\n", b"hello 2\n"]
        assert set(output) == set(talker.pids)
        other = arbiter.get_watcher("other")
        assert other.env == {"GREETING": "hello", "OWN": "1"}
    finally:
        arbiter.stop()


def test_get_arbiter_rejects_bad_options_by_name():
    with pytest.raises(ValueError) as info:
        get_arbiter([{"name": "w", "cmd": "sleep 1", "numprocesses": "abc"}], **endpoints())
    assert "numprocesses" in str(info.value) and "'abc'" in str(info.value)
    assert "'w'" in str(info.value)
    with pytest.raises(ValueError) as info:
        get_arbiter([{"name": "w", "cmd": "sleep 1", "numprocesess": 2}], **endpoints())
    assert "numprocesess" in str(info.value) and "unknown option" in str(info.value)
    with pytest.raises(ValueError) as info:
        get_arbiter([{"name": "w", "cmd": "serve $(circus.sockets.web)", "use_sockets": True}],
                    **endpoints())
    assert "unknown socket 'web'" in str(info.value)


# --- 5.9.2 the classes ----------------------------------------------------------
@pytest.mark.needs("chaussette")
def test_classes_from_a_program_without_config():
    from circus import Arbiter, CircusSocket, Watcher
    sock = CircusSocket("web", host="127.0.0.1", port=0)
    web = Watcher("web", "chaussette --fd $(circus.sockets.web) --backend wsgiref "
                  "tests.apps.hello.application", use_sockets=True, numprocesses=2,
                  copy_env=True, env={"PYTHONPATH": ROOT})
    plain = Watcher("plain", "sleep", args=["120.9"], priority=10)
    ep = endpoints()
    arbiter = Arbiter([web, plain], endpoint=ep["controller"],
                      pubsub_endpoint=ep["pubsub_endpoint"], sockets=[sock])
    events = []
    arbiter.subscribe(lambda topic, msg: events.append(topic))
    arbiter.start_background()
    try:
        assert sock.port != 0 and sock.bound
        assert arbiter.get_watcher("WEB") is web and arbiter.numwatchers() == 2
        status, body = wait_for(lambda: _try_get(sock.port), message="the web workers")
        assert status == 200
        assert int(re.match(rb"pid=(\d+)", body).group(1)) in web.pids
        assert len(web.pids) == 2 and len(plain.pids) == 1
        # priority 10 started first
        starts = [t for t in events if t.endswith(".start")]
        assert starts[:2] == ["watcher.plain.start", "watcher.web.start"]
    finally:
        arbiter.stop()
    assert not sock.bound
    with pytest.raises(OSError):
        http_get(sock.port, timeout=1)


def _try_get(port):
    try:
        return http_get(port, timeout=2)
    except OSError:
        return None


def test_lazy_names_of_the_package():
    from circus.arbiter import Arbiter
    from circus.sockets import CircusSocket
    from circus.watcher import Watcher
    assert circus.Arbiter is Arbiter and circus.Watcher is Watcher
    assert circus.Process is Process and circus.CircusSocket is CircusSocket
    import logging
    assert circus.logger is logging.getLogger("circus")
    with pytest.raises(AttributeError, match="NoSuchThing"):
        circus.NoSuchThing


def test_the_documented_process_example():
    # top needs a terminal; exec: the shell becomes the program, so stop()
    # leaves no orphan behind
    process = Process("Top", "exec sleep 121", shell=True)
    try:
        wait_for(lambda: "sleep" in " ".join(psutil.Process(process.pid).cmdline()),
                 message="exec")
        assert process.children() == []
        assert process.pid and pid_alive(process.pid)
        age = wait_for(lambda: process.age() or None, message="some age")
        assert 0 < age < 10
        info = process.info()
        for key in ("mem_info1", "mem_info2", "cpu", "mem", "ctime", "pid", "username",
                    "nice", "cmdline"):
            assert key in info
        assert info["pid"] == process.pid
        assert info["username"] == psutil.Process().username()
        assert process.status == RUNNING == 1
    finally:
        process.stop()
    assert process.status == DEAD_OR_ZOMBIE == 2
    assert process.info() == "No such process (stopped?)"
    assert not pid_alive(process.pid)


def test_process_children_and_signals(tmp_path):
    process = Process(1, "sleep 122 & sleep 123 & wait", shell=True)
    try:
        children = wait_for(lambda: (lambda c: c if len(c) == 2 else None)(process.children()),
                            message="two children")
        assert all(process.is_child(pid) for pid in children)
        assert not process.is_child(os.getpid())
        with pytest.raises(ValueError):
            process.send_signal_child(os.getpid(), signal.SIGTERM)
        process.send_signal_child(children[0], signal.SIGTERM)
        wait_for(lambda: process.children() == children[1:], message="one child less")
        process.send_signal_children(signal.SIGTERM)
        wait_for(lambda: process.children() == [], message="no children")
        # the shell's `wait` returns once its children are gone
        wait_for(lambda: process.status == DEAD_OR_ZOMBIE, message="the shell to exit")
        assert process.returncode == 128 + signal.SIGTERM or process.returncode == 0
    finally:
        process.send_signal_children(signal.SIGKILL)  # no orphan if this test fails
        process.stop()


def test_process_with_wid_env_and_spawn_false(tmp_path):
    out = tmp_path / "out"
    process = Process(3, PY, args=["-c", "import os, sys; open(sys.argv[1], 'w').write("
                                   "os.environ['X'] + ' ' + sys.argv[2])", str(out), "$WID"],
                      env={"X": "$(circus.wid)-x"}, working_dir=str(tmp_path), spawn=False)
    assert process.pid is None and process.status == 0  # UNEXISTING
    process.spawn()
    wait_for(lambda: process.poll() is not None, message="the process to exit")
    assert process.returncode == 0
    assert out.read_text() == "3-x 3"


def test_watcher_reads_booleans_with_the_one_vocabulary():
    from circus.watcher import Watcher
    watcher = Watcher("words", "sleep 1", shell="false", copy_env="yes", respawn=0)
    assert (watcher.shell, watcher.copy_env, watcher.respawn) == (False, True, False)
    with pytest.raises(ValueError, match="'maybe' is not a boolean"):
        Watcher("words", "sleep 1", use_sockets="maybe")
