"""Existing Circus users, unchanged: the original Circus 0.19's own circusctl
and CircusClient, from their own virtualenv, drive a real circusd through
every command, and what a user reads is right.

The virtualenv is the benchmark suite's (benchmarks/suite/envs.py,
benchmarks/.work/circus019): built once (./dev.sh test builds it before the
tests), then reused.
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from support import ROOT, free_port, pid_alive, wait_exec, wait_for

pytestmark = pytest.mark.slow

# its child is not circusd's to stop (stop_children is off, as in 0.19): the
# kernel kills it when the parent goes (PR_SET_PDEATHSIG = 1, SIGKILL), so
# the test leaves no orphan behind
PARENT = ("%s -c \"import ctypes, subprocess, time; subprocess.Popen(['sleep', '305'], "
          "preexec_fn=lambda: ctypes.CDLL(None).prctl(1, 9)); time.sleep(300)\""
          % sys.executable)

CONFIG = """
[socket:web]
host = 127.0.0.1
port = {port}

[socket:unixy]
path = {unix}

[watcher:sleeper]
cmd = sleep 300
numprocesses = 2
graceful_timeout = 5

[watcher:idle]
cmd = sleep 301
autostart = false

[watcher:parent]
cmd = {parent}
"""


@pytest.fixture(scope="module")
def circus019():
    """The bin directory of a virtualenv with Circus 0.19.0 from PyPI."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from suite.envs import circus019_env
        try:
            bindir = circus019_env()
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip("cannot install Circus 0.19 from PyPI here: %s" % exc)
    finally:
        sys.path.pop(0)
    return bindir


def env019():
    """The environment of a 0.19 program: nothing of ours on its path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


class Ctl:
    """Circus 0.19's circusctl, pointed at a circusd."""

    def __init__(self, bindir, daemon, cwd):
        self.circusctl = os.path.join(bindir, "circusctl")
        self.endpoint = daemon.endpoint
        self.cwd = str(cwd)

    def __call__(self, *args, rc=0):
        result = subprocess.run([self.circusctl, "--endpoint", self.endpoint, "--timeout", "20"]
                                + list(args), capture_output=True, text=True, timeout=60,
                                cwd=self.cwd, env=env019())
        assert result.returncode == rc, (args, result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        return result.stdout.rstrip("\n") if rc == 0 else result.stderr.rstrip("\n")


def infoline(pid, cmdline):
    """What 0.19 prints for one process: pid, cmdline, user, nice, rss, vms,
    cpu, mem, ctime."""
    return r"%d  %s root -?\d+ [\d.]+[KMG]? [\d.]+[KMG]? [\d.]+ [\d.]+ \d+:[\d.]+" % (
        pid, re.escape(cmdline))


def started(circusd, tmp_path):
    daemon = circusd(CONFIG.format(port=free_port(), unix=tmp_path / "web.sock",
                                   parent=PARENT))
    wait_for(lambda: len(daemon.call("list", name="sleeper")["pids"]) == 2, message="sleepers")
    return daemon


def pids(daemon, name):
    return wait_exec(daemon.call("list", name=name)["pids"])


def test_circusctl_019_reads_every_reply(circusd, circus019, tmp_path):
    daemon = started(circusd, tmp_path)
    ctl = Ctl(circus019, daemon, tmp_path)
    sleepers = pids(daemon, "sleeper")
    parent = pids(daemon, "parent")[0]
    child = wait_for(lambda: [c.pid for c in __import__("psutil").Process(parent).children()],
                     message="the parent's child")[0]
    wait_exec([child])

    # --- reading -------------------------------------------------------------
    assert ctl("list") == "idle,parent,sleeper"
    assert ctl("list", "sleeper") == ",".join(str(p) for p in sleepers)
    assert ctl("status") == "idle: stopped\nparent: active\nsleeper: active"
    assert ctl("status", "sleeper") == "active"
    assert ctl("numwatchers") == "3"
    assert ctl("numprocesses") == "3"
    assert ctl("numprocesses", "sleeper") == "2"
    sockets = {s["name"]: s for s in daemon.call("listsockets")["sockets"]}
    assert ctl("listsockets").splitlines() == [
        "%d:socket 'web' at 127.0.0.1:%d" % (sockets["web"]["fd"], sockets["web"]["port"]),
        "%d:socket 'unixy' at %s" % (sockets["unixy"]["fd"], tmp_path / "web.sock")]
    lines = ctl("dstats").splitlines()
    assert lines[0] == "Main Process:" and lines[2] == "Children:"
    assert re.match(r"    %d  .*circus\.circusd" % daemon.proc.pid, lines[1]), lines
    for pid in sleepers:
        assert any(re.fullmatch("    " + infoline(pid, "sleep 300"), line)
                   for line in lines[3:]), (pid, lines)
    every = ctl("stats").splitlines()
    for name in ("sleeper:", "parent:", "idle:"):
        assert name in every
    for pid in sleepers:
        assert any(re.fullmatch("%d: %s" % (pid, infoline(pid, "sleep 300")), line)
                   for line in every), every
    # a process with a child: its line, then the child's, indented
    at = [i for i, line in enumerate(every) if line.startswith("%d: " % parent)][0]
    assert re.fullmatch("   " + infoline(child, "sleep 305"), every[at + 1]), every
    one = ctl("stats", "sleeper").splitlines()
    assert one[0] == "sleeper:" and len(one) == 3
    assert re.fullmatch("%d: %s" % (sleepers[0], infoline(sleepers[0], "sleep 300")),
                        ctl("stats", "sleeper", str(sleepers[0])))
    options = dict(line.split(": ", 1) for line in ctl("globaloptions").splitlines())
    assert options["endpoint"] == daemon.endpoint and options["check_delay"] == "1.0"
    assert ctl("globaloptions", "check_delay") == "check_delay: 1.0"
    options = dict(line.split(": ", 1) for line in ctl("options", "sleeper").splitlines())
    assert options["cmd"] == "sleep 300" and options["numprocesses"] == "2"
    assert options["graceful_timeout"] == "5.0"
    assert ctl("get", "sleeper", "numprocesses", "graceful_timeout") == \
        "numprocesses: 2\ngraceful_timeout: 5.0"
    reply = json.loads(ctl("--json", "status"))
    assert reply["status"] == "ok" and reply["statuses"]["sleeper"] == "active"

    # --- changing ------------------------------------------------------------
    assert ctl("incr", "sleeper") == "3"
    assert ctl("incr", "sleeper", "2", "--waiting") == "5"
    assert ctl("decr", "sleeper", "3", "--waiting") == "2"
    wait_for(lambda: len(daemon.call("list", name="sleeper")["pids"]) == 2)
    assert ctl("set", "sleeper", "graceful_timeout", "7") == "ok"
    assert ctl("get", "sleeper", "graceful_timeout") == "graceful_timeout: 7.0"
    assert ctl("set", "sleeper", "numprocesses", "3", "--waiting") == "ok"
    assert ctl("numprocesses", "sleeper") == "3"
    assert ctl("add", "newone", "sleep", "302") == "ok"
    assert ctl("status", "newone") == "stopped"
    assert ctl("add", "--start", "other", "sleep 303") == "ok"
    assert ctl("status", "other") == "active"
    assert ctl("start", "idle", "--waiting") == "ok"
    assert ctl("status", "idle") == "active"
    assert ctl("stop", "idle", "--waiting") == "ok"
    assert ctl("status", "idle") == "stopped"
    before = set(daemon.call("list", name="sleeper")["pids"])
    assert ctl("restart", "sleeper", "--waiting") == "ok"
    assert not set(daemon.call("list", name="sleeper")["pids"]) & before
    before = set(daemon.call("list", name="sleeper")["pids"])
    assert ctl("reload", "sleeper", "--waiting") == "ok"
    assert not set(daemon.call("list", name="sleeper")["pids"]) & before
    assert ctl("reload", "--waiting") == "ok"
    assert ctl("rm", "newone", "--waiting") == "ok"
    assert "newone" not in ctl("list").split(",")
    victim = daemon.call("list", name="other")["pids"][0]
    assert ctl("signal", "other", str(victim), "KILL") == "ok"
    wait_for(lambda: not pid_alive(victim), message="the signalled process to die")
    victim = wait_for(lambda: daemon.call("list", name="other")["pids"], message="other")[0]
    assert ctl("kill", "other", str(victim), "--waiting") == "ok"
    assert not pid_alive(victim)
    assert ctl("reloadconfig", "--waiting") == "ok"
    assert ctl("stop", "--waiting") == "ok"
    assert set(daemon.call("status")["statuses"].values()) == {"stopped"}
    assert ctl("start", "--waiting") == "ok"
    assert ctl("restart", "--waiting") == "ok"
    assert daemon.call("status", name="sleeper")["status"] == "active"

    # --- errors, as 0.19 prints them: on stderr, status 3 ----------------------
    assert ctl("incr", "nosuch", rc=3) == "error: program nosuch not found"
    assert ctl("get", "sleeper", "nosuch", rc=3) == "error: unknown option 'nosuch'"
    assert ctl("stats", "sleeper", "1", rc=3) == "error: process 1 not found in sleeper"
    assert "above the limit" in ctl("incr", "sleeper", "100000", rc=3)

    # --- events, and quitting ---------------------------------------------------
    # 0.19 subscribes to --endpoint; its arguments are topics
    listener = subprocess.Popen([ctl.circusctl, "--endpoint", daemon.pubsub, "listen"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=str(tmp_path), env=dict(env019(), PYTHONUNBUFFERED="1"))
    try:
        line = None
        deadline = time.monotonic() + 20
        while line is None and time.monotonic() < deadline:
            daemon.call("set", name="sleeper", options={"priority": 0})  # an event
            os.set_blocking(listener.stdout.fileno(), False)
            line = listener.stdout.readline() or None
            if line is None:
                time.sleep(0.1)  # no event received yet: PUB drops until subscribed
        # 0.19 prints the two frames as they came (bytes reprs on Python 3,
        # from its own circusd too)
        assert line and line.startswith("b'watcher.sleeper.updated': b'{"), line
        assert json.loads(line.split(": b'", 1)[1].rstrip("'\n"))["options"] == {"priority": 0}
    finally:
        listener.send_signal(signal.SIGINT)
        listener.wait(10)
    assert ctl("quit", "--waiting") == "ok"
    assert daemon.proc.wait(30) == 0


CLIENT = textwrap.dedent("""
    import json, sys
    from circus.client import CircusClient
    client = CircusClient(endpoint=sys.argv[1], timeout=20)
    for line in sys.stdin:
        command, props = json.loads(line)
        print(json.dumps(client.send_message(command, **props)), flush=True)
    client.stop()
""")


def test_circus019_client_gets_every_reply(circusd, circus019, tmp_path):
    daemon = started(circusd, tmp_path)
    sleepers = pids(daemon, "sleeper")
    calls = [
        ("list", {}, {"watchers": ["idle", "parent", "sleeper"]}),
        ("list", {"name": "sleeper"}, {"pids": sleepers}),
        ("status", {}, {"statuses": {"idle": "stopped", "parent": "active",
                                     "sleeper": "active"}}),
        ("status", {"name": "sleeper"}, {"status": "active"}),
        ("numwatchers", {}, {"numwatchers": 3}),
        ("numprocesses", {"name": "sleeper"}, {"numprocesses": 2}),
        ("globaloptions", {"option": "check_delay"}, {"options": {"check_delay": 1.0}}),
        ("get", {"name": "sleeper", "keys": ["numprocesses"]},
         {"options": {"numprocesses": 2}}),
        ("options", {"name": "sleeper"}, None),
        ("listsockets", {}, None),
        ("dstats", {}, None),
        ("stats", {}, None),
        ("stats", {"name": "sleeper", "extended": False}, {"name": "sleeper"}),
        ("incr", {"name": "sleeper", "nb": 2, "waiting": True}, {"numprocesses": 4}),
        ("decr", {"name": "sleeper", "nb": 2, "waiting": True}, {"numprocesses": 2}),
        ("set", {"name": "sleeper", "options": {"graceful_timeout": 6}, "waiting": True}, {}),
        ("add", {"name": "added", "cmd": "sleep 304", "start": True}, {}),
        ("rm", {"name": "added", "waiting": True}, {}),
        ("start", {"name": "idle", "waiting": True, "match": "glob"}, {}),
        ("stop", {"name": "idle", "waiting": True, "match": "simple"}, {}),
        ("restart", {"name": "sleeper", "waiting": True}, {}),
        ("reload", {"name": "sleeper", "graceful": True, "sequential": False,
                    "waiting": True}, {}),
        ("signal", {"name": "sleeper", "signum": "HUP", "children": False,
                    "recursive": False}, {}),
        ("kill", {"name": "parent", "waiting": True}, {}),
        ("reloadconfig", {"waiting": True}, {}),
        ("incr", {"name": "nosuch"}, {"status": "error", "errno": 3,
                                      "reason": "program nosuch not found"}),
        ("quit", {"waiting": True}, {}),
    ]
    proc = subprocess.run([os.path.join(circus019, "python"), "-c", CLIENT, daemon.endpoint],
                          input="".join(json.dumps([c, p]) + "\n" for c, p, _ in calls),
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=env019())
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(replies) == len(calls)
    for (command, props, expected), reply in zip(calls, replies):
        if "status" not in (expected or {}):  # status NAME answers the watcher's
            assert reply["status"] == "ok", (command, props, reply)
        assert "time" in reply
        for key, value in (expected or {}).items():
            assert reply[key] == value, (command, props, reply)
    by_command = {}
    for (command, _, _), reply in zip(calls, replies):
        by_command.setdefault(command, reply)  # the first of each
    assert by_command["options"]["options"]["cmd"] == "sleep 300"
    assert {s["name"] for s in by_command["listsockets"]["sockets"]} == {"web", "unixy"}
    assert all(isinstance(c, dict) for c in by_command["dstats"]["info"]["children"])
    assert set(by_command["stats"]["infos"]) == {"idle", "parent", "sleeper"}
    assert daemon.proc.wait(30) == 0
