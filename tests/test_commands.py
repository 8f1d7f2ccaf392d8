"""Every command over a real ZeroMQ connection to a running circusd: the
reply fields, and the effect on real processes."""
import os
import signal
import stat
import threading
import time

import pytest
import zmq

from support import PYTHON, free_port, pid_alive, raw_call, wait_exec, wait_for
from support.events import EventLog

SLEEP = """
[watcher:sleeper]
cmd = sleep 300
numprocesses = %d
graceful_timeout = 5
"""

# a process that ignores SIGTERM: stopping it takes graceful_timeout
STUBBORN = ("%s -c \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open('ready-$(circus.wid)', 'w').close(); time.sleep(300)\"" % PYTHON)

# a process with a child of its own
PARENT = ("%s -c \"import subprocess, time; subprocess.Popen(['sleep', '300']); "
          "time.sleep(300)\"" % PYTHON)


def sleeper(circusd, n=1, extra=""):
    return circusd(SLEEP % n + extra)


def pids(daemon, name="sleeper"):
    return daemon.call("list", name=name)["pids"]


def ok(reply):
    assert reply["status"] != "error", reply
    assert isinstance(reply["time"], float)
    return reply


def error(reply, errno):
    assert reply["status"] == "error", reply
    assert reply["errno"] == errno, reply
    return reply


def wait_pids(daemon, count, name="sleeper", exclude=()):
    return wait_for(lambda: (lambda p: p if len(p) == count and not set(p) & set(exclude)
                             else None)(pids(daemon, name)),
                    message="%d processes in %s" % (count, name))


# --- reading ------------------------------------------------------------------

def test_list_status_numbers(circusd):
    daemon = circusd(SLEEP % 2 + "\n[watcher:idle]\ncmd = sleep 300\nautostart = false\n")
    reply = ok(daemon.call("list"))
    assert reply["watchers"] == ["idle", "sleeper"]
    listed = ok(daemon.call("list", name="sleeper"))["pids"]
    assert sorted(listed) == sorted(c.pid for c in daemon.children())
    assert ok(daemon.call("status"))["statuses"] == {"idle": "stopped", "sleeper": "active"}
    assert daemon.call("status", name="sleeper")["status"] == "active"
    assert daemon.call("status", name="IDLE")["status"] == "stopped"
    assert ok(daemon.call("numwatchers"))["numwatchers"] == 2
    assert ok(daemon.call("numprocesses"))["numprocesses"] == 2
    assert ok(daemon.call("numprocesses", name="idle"))["numprocesses"] == 1


def test_stats_for_all_one_watcher_one_process(circusd):
    daemon = sleeper(circusd, 2)
    listed = wait_exec(pids(daemon))
    every = ok(daemon.call("stats"))["infos"]
    assert set(every["sleeper"]) == {str(p) for p in listed}
    one = ok(daemon.call("stats", name="sleeper"))
    assert one["name"] == "sleeper"
    for pid, info in one["info"].items():
        assert info["pid"] == int(pid)
        assert {"cpu", "mem", "mem_info1", "mem_info2", "ctime", "nice", "username",
                "cmdline", "children", "age"} <= set(info)
        assert info["cmdline"] == "sleep 300"
    proc = ok(daemon.call("stats", name="sleeper", process=listed[0]))
    assert proc["process"] == listed[0]
    assert proc["info"]["pid"] == listed[0]
    error(daemon.call("stats", name="sleeper", process=1), 3)


def test_dstats_describes_circusd(circusd):
    daemon = sleeper(circusd)
    info = ok(daemon.call("dstats"))["info"]
    assert info["pid"] == daemon.proc.pid
    # each child described as stats describes a process (Circus 0.19's
    # circusctl prints them so)
    children = {child["pid"]: child for child in info["children"]}
    assert set(pids(daemon)) <= set(children)
    assert all(children[pid]["cmdline"].endswith("sleep 300") for pid in pids(daemon))
    assert "circus.circusd" in info["cmdline"]


def test_globaloptions(circusd):
    daemon = sleeper(circusd)
    options = ok(daemon.call("globaloptions"))["options"]
    assert options["endpoint"] == daemon.endpoint
    assert options["pubsub_endpoint"] == daemon.pubsub
    assert "check_delay" in options
    assert ok(daemon.call("globaloptions", keys=["endpoint"]))["options"] == \
        {"endpoint": daemon.endpoint}
    assert ok(daemon.call("globaloptions", option="pubsub_endpoint"))["options"] == \
        {"pubsub_endpoint": daemon.pubsub}
    error(daemon.call("globaloptions", keys=["nope"]), 3)


def test_listsockets(circusd):
    port = free_port()
    daemon = circusd(SLEEP % 1 + "\n[socket:web]\nhost = 127.0.0.1\nport = %d\n" % port)
    sockets = ok(daemon.call("listsockets"))["sockets"]
    assert len(sockets) == 1
    assert sockets[0]["name"] == "web"
    assert sockets[0]["host"] == "127.0.0.1"
    assert sockets[0]["port"] == port
    assert isinstance(sockets[0]["fd"], int)


def test_listen_names_the_pubsub_endpoint(circusd):
    daemon = sleeper(circusd)
    assert ok(daemon.call("listen"))["pubsub_endpoint"] == daemon.pubsub


def test_options_and_get(circusd):
    daemon = sleeper(circusd, 1, "rlimit_nofile = 512\nenv = A=1\n")
    options = ok(daemon.call("options", name="sleeper"))["options"]
    assert options["cmd"] == "sleep 300"
    assert options["numprocesses"] == 1
    assert options["graceful_timeout"] == 5.0
    assert options["rlimit_nofile"] == 512
    assert options["env"] == {"A": "1"}
    got = ok(daemon.call("get", name="sleeper", keys=["numprocesses", "graceful_timeout"]))
    assert got["options"] == {"numprocesses": 1, "graceful_timeout": 5.0}
    error(daemon.call("get", name="sleeper", keys=["nope"]), 3)


# --- changing the number of processes ------------------------------------------

def test_incr_decr(circusd):
    daemon = sleeper(circusd)
    reply = ok(daemon.call("incr", name="sleeper", nb=2, waiting=True))
    assert reply["numprocesses"] == 3
    assert len(daemon.children()) == 3
    reply = ok(daemon.call("incr", name="sleeper"))
    assert reply["numprocesses"] == 4
    wait_for(lambda: len(daemon.children()) == 4)
    before = pids(daemon)
    reply = ok(daemon.call("decr", name="sleeper", nb=3, waiting=True))
    assert reply["numprocesses"] == 1
    assert len(daemon.children()) == 1
    # the oldest go first
    assert pids(daemon) == [before[-1]]
    assert ok(daemon.call("decr", name="sleeper", nb=5, waiting=True))["numprocesses"] == 0
    assert daemon.children() == []


def test_decr_without_waiting_answers_before_the_processes_exit(circusd, tmp_path):
    daemon = circusd("[watcher:stubborn]\ncmd = %s\nnumprocesses = 2\n"
                     "graceful_timeout = 0.5\n" % STUBBORN)
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 2)
    started = time.monotonic()
    reply = ok(daemon.call("decr", name="stubborn"))
    assert reply["numprocesses"] == 1
    assert time.monotonic() - started < 0.5
    assert len(daemon.children()) == 2  # the one going still runs
    started = time.monotonic()
    reply = ok(daemon.call("decr", name="stubborn", waiting=True))
    assert reply["numprocesses"] == 0
    assert time.monotonic() - started >= 0.45  # waited for the SIGKILL
    wait_for(lambda: daemon.children() == [])


def test_commands_run_concurrently(circusd, tmp_path):
    daemon = circusd("[watcher:stubborn]\ncmd = %s\ngraceful_timeout = 1.5\n" % STUBBORN
                     + SLEEP % 1)
    wait_for(lambda: list(tmp_path.glob("ready-*")))
    done = {}

    def slow():
        done["decr"] = daemon.call("decr", name="stubborn", waiting=True)
        done["decr_at"] = time.monotonic()

    thread = threading.Thread(target=slow)
    started = time.monotonic()
    thread.start()
    wait_for(lambda: daemon.call("numprocesses", name="stubborn")["numprocesses"] == 0)
    # another client, another watcher: served at once, never "already running"
    assert ok(daemon.call("incr", name="sleeper", waiting=True))["numprocesses"] == 2
    assert ok(daemon.call("status"))["statuses"]["sleeper"] == "active"
    assert "decr" not in done
    assert time.monotonic() - started < 1.2
    thread.join(10)
    assert done["decr"]["numprocesses"] == 0
    assert done["decr_at"] - started >= 1.4


def test_ten_clients_at_once(circusd):
    config = "".join("[watcher:w%d]\ncmd = sleep 300\n\n" % i for i in range(5))
    daemon = circusd(config)
    from circus.client import CircusClient
    barrier = threading.Barrier(10)
    results = {}

    def client(i):
        c = CircusClient(endpoint=daemon.endpoint, timeout=10)
        try:
            barrier.wait()
            if i < 5:
                results[i] = c.call({"command": "incr", "properties":
                                     {"name": "w%d" % i, "nb": i + 1, "waiting": True}})
            elif i < 8:
                results[i] = c.call({"command": "list"})
            else:
                results[i] = c.call({"command": "stats", "properties": {"name": "w0"}})
        finally:
            c.stop()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 10
    for i in range(5):
        assert ok(results[i])["numprocesses"] == i + 2
        assert len(pids(daemon, "w%d" % i)) == i + 2
    for i in range(5, 8):
        assert ok(results[i])["watchers"] == ["w%d" % n for n in range(5)]
    for i in range(8, 10):
        assert ok(results[i])["name"] == "w0"


# --- adding, removing, changing watchers ---------------------------------------

def test_add_start_and_rm(circusd):
    daemon = sleeper(circusd)
    with EventLog(daemon).sync("sleeper") as events:
        ok(daemon.call("add", name="extra", cmd="sleep 301",
                       options={"numprocesses": 2, "graceful_timeout": "3"}, start=True))
        events.topic("watcher.extra.add", name="extra")
        assert daemon.call("status", name="extra")["status"] == "active"
        extra = pids(daemon, "extra")
        assert len(extra) == 2
        assert daemon.call("get", name="extra", keys=["graceful_timeout"])["options"] == \
            {"graceful_timeout": 3.0}
        ok(daemon.call("rm", name="extra", waiting=True))
        events.topic("watcher.extra.remove")
        assert ok(daemon.call("list"))["watchers"] == ["sleeper"]
        assert not any(pid_alive(p) for p in extra)
    ok(daemon.call("add", name="later", cmd="sleep", args=["302"]))
    assert daemon.call("status", name="later")["status"] == "stopped"
    ok(daemon.call("start", name="later", waiting=True))
    wait_exec(pids(daemon, "later"))
    assert [c.cmdline() for c in daemon.children() if c.pid in pids(daemon, "later")] == \
        [["sleep", "302"]]


def test_add_errors(circusd):
    daemon = sleeper(circusd)
    assert "already exists" in error(daemon.call("add", name="sleeper", cmd="sleep 1"),
                                     3)["reason"]
    reason = error(daemon.call("add", name="x", cmd="sleep 1",
                               options={"numprocesses": "many"}), 6)["reason"]
    assert "numprocesses" in reason
    error(daemon.call("add", name="x", cmd="sleep 1", options={"bogus": 1}), 6)
    error(daemon.call("add", name="x"), 3)
    error(daemon.call("add", name="x", cmd=["sleep"]), 3)
    assert ok(daemon.call("list"))["watchers"] == ["sleeper"]


def test_set_simple_options_and_numprocesses(circusd):
    daemon = sleeper(circusd)
    with EventLog(daemon).sync("sleeper") as events:
        ok(daemon.call("set", name="sleeper", options={"graceful_timeout": "7",
                                                       "max_retry": 2}))
        _, msg = events.topic("watcher.sleeper.updated")
        assert msg["options"] == {"graceful_timeout": 7.0, "max_retry": 2}
        before = pids(daemon)
        assert daemon.call("get", name="sleeper", keys=["graceful_timeout", "max_retry"])[
            "options"] == {"graceful_timeout": 7.0, "max_retry": 2}
        assert pids(daemon) == before  # nothing restarted
        ok(daemon.call("set", name="sleeper", key="numprocesses", value=3, waiting=True))
        assert len(daemon.children()) == 3
        assert before[0] in pids(daemon)


def test_set_spawn_option_reloads_gracefully(circusd):
    daemon = sleeper(circusd, 2)
    before = pids(daemon)
    with EventLog(daemon).sync("sleeper") as events:
        ok(daemon.call("set", name="sleeper", options={"cmd": "sleep 303"}, waiting=True))
        events.topic("watcher.sleeper.updated")
        events.topic("watcher.sleeper.reload")
    after = wait_exec(pids(daemon))
    assert len(after) == 2 and not set(after) & set(before)
    assert {" ".join(c.cmdline()) for c in daemon.children()} == {"sleep 303"}


def test_set_rejects_bad_values_and_changes_nothing(circusd):
    daemon = sleeper(circusd)
    reply = error(daemon.call("set", name="sleeper",
                              options={"graceful_timeout": 1, "max_age": "old"}), 6)
    assert "max_age" in reply["reason"]
    assert daemon.call("get", name="sleeper", keys=["graceful_timeout"])["options"] == \
        {"graceful_timeout": 5.0}
    error(daemon.call("set", name="sleeper", options={"nope": 1}), 6)
    error(daemon.call("set", name="sleeper", options={"name": "other"}), 6)
    error(daemon.call("set", name="sleeper", options={}), 3)
    error(daemon.call("set", name="sleeper", options=[1]), 3)
    error(daemon.call("set", name="nope", options={"max_age": 1}), 3)


# --- process control ------------------------------------------------------------

def test_signal_one_process_and_all(circusd):
    daemon = sleeper(circusd, 2)
    first, second = pids(daemon)
    with EventLog(daemon).sync("sleeper") as events:
        reply = ok(daemon.call("signal", name="sleeper", pid=first, signum="TERM"))
        assert reply["pids"] == [first]
        _, msg = events.topic("watcher.sleeper.reap", process_pid=first)
        assert msg["exit_code"] == -signal.SIGTERM
        assert pid_alive(second)
        # the watcher replaced the process killed behind its back
        wait_pids(daemon, 2, exclude=[first])
        ok(daemon.call("signal", name="sleeper", signal=signal.SIGKILL))
        for pid in pids(daemon):
            events.topic("watcher.sleeper.reap", process_pid=pid)
    error(daemon.call("signal", name="sleeper", signum="NOSUCH"), 3)
    error(daemon.call("signal", name="sleeper"), 3)
    error(daemon.call("signal", name="sleeper", pid=1, signum=15), 3)


def test_signal_children_and_recursive(circusd):
    daemon = circusd("[watcher:parent]\ncmd = %s\n" % PARENT)

    def child_of(pid):
        import psutil
        return wait_for(lambda: [c.pid for c in psutil.Process(pid).children()],
                        message="the child of %d" % pid)[0]

    parent = pids(daemon, "parent")[0]
    child = child_of(parent)
    ok(daemon.call("signal", name="parent", pid=parent, signum="TERM", children=True))
    wait_for(lambda: not pid_alive(child), message="the child to die")
    assert pid_alive(parent)
    ok(daemon.call("signal", name="parent", pid=parent, signum="TERM", recursive=True))
    wait_for(lambda: not pid_alive(parent), message="the parent to die")
    # one child by its pid
    parent = wait_pids(daemon, 1, "parent", exclude=[parent])[0]
    child = child_of(parent)
    ok(daemon.call("signal", name="parent", pid=parent, child_pid=child, signum=9))
    wait_for(lambda: not pid_alive(child))
    assert pid_alive(parent)
    error(daemon.call("signal", name="parent", pid=parent, child_pid=1, signum=9), 3)


def test_kill_one_process_then_all(circusd):
    daemon = sleeper(circusd, 2)
    first, second = pids(daemon)
    with EventLog(daemon).sync("sleeper") as events:
        reply = ok(daemon.call("kill", name="sleeper", pid=first, waiting=True))
        assert reply["pids"] == [first]
        events.topic("watcher.sleeper.kill", process_pid=first)
        assert not pid_alive(first) and pid_alive(second)
        # the watcher is active: the process is replaced
        now = wait_pids(daemon, 2, exclude=[first])
        ok(daemon.call("kill", name="sleeper", signum="KILL", waiting=True))
        _, msg = events.topic("watcher.sleeper.reap", process_pid=now[0])
        assert msg["exit_code"] == -signal.SIGKILL
        wait_pids(daemon, 2, exclude=now)
    error(daemon.call("kill", name="sleeper", pid=1), 3)


def test_stop_start_restart_with_match(circusd):
    daemon = circusd("".join("[watcher:%s]\ncmd = sleep 300\n\n" % n
                             for n in ("web-1", "web-2", "worker")))
    web = pids(daemon, "web-1") + pids(daemon, "web-2")
    reply = ok(daemon.call("stop", name="web-*", match="glob", waiting=True))
    assert sorted(reply["watchers"]) == ["web-1", "web-2"]
    assert ok(daemon.call("status"))["statuses"] == \
        {"web-1": "stopped", "web-2": "stopped", "worker": "active"}
    assert not any(pid_alive(p) for p in web)
    reply = ok(daemon.call("start", name=r"web-\d", match="regex", waiting=True))
    assert sorted(reply["watchers"]) == ["web-1", "web-2"]
    assert set(ok(daemon.call("status"))["statuses"].values()) == {"active"}
    worker = pids(daemon, "worker")
    ok(daemon.call("restart", name="worker", waiting=True))
    assert pids(daemon, "worker") != worker and len(pids(daemon, "worker")) == 1
    ok(daemon.call("stop", waiting=True))
    assert set(ok(daemon.call("status"))["statuses"].values()) == {"stopped"}
    assert daemon.children() == []
    ok(daemon.call("start", waiting=True))
    assert len(daemon.children()) == 3
    ok(daemon.call("restart", waiting=True))
    assert len(daemon.children()) == 3
    error(daemon.call("stop", name="web", match="fuzzy"), 3)
    error(daemon.call("stop", name="web-3"), 3)
    assert ok(daemon.call("stop", name="nothing*", match="glob"))["watchers"] == []


def test_reload_watcher_and_all(circusd):
    daemon = sleeper(circusd, 2, "\n[watcher:other]\ncmd = sleep 301\n")
    with EventLog(daemon).sync("sleeper") as events:
        before = pids(daemon)
        ok(daemon.call("reload", name="sleeper", waiting=True))
        events.topic("watcher.sleeper.reload")
        after = pids(daemon)
        assert len(after) == 2 and not set(before) & set(after)
        ok(daemon.call("reload", name="sleeper", sequential=True, waiting=True))
        assert not set(after) & set(pids(daemon))
        other = pids(daemon, "other")
        ok(daemon.call("reload", waiting=True))
        events.topic("watcher.other.reload")
        assert pids(daemon, "other") != other


def test_reloadconfig_adds_and_removes(circusd):
    daemon = sleeper(circusd)
    text = daemon.config_path.read_text()
    daemon.config_path.write_text(text + "\n[watcher:new]\ncmd = sleep 304\n")
    reply = ok(daemon.call("reloadconfig", waiting=True))
    assert reply["changes"]["added"] == ["new"]
    assert ok(daemon.call("list"))["watchers"] == ["new", "sleeper"]
    assert len(pids(daemon, "new")) == 1
    daemon.config_path.write_text(text.replace("[watcher:sleeper]", "[watcher:bad]\nnope = 1\n"
                                               "[watcher:sleeper]"))
    reply = error(daemon.call("reloadconfig", waiting=True), 5)
    assert "nope" in reply["reason"]
    assert ok(daemon.call("list"))["watchers"] == ["new", "sleeper"]


def test_reloadconfig_that_cannot_build_a_watcher_changes_nothing(circusd):
    daemon = sleeper(circusd, extra="\n[socket:s]\nhost = 127.0.0.1\nport = 0\n")
    before = pids(daemon)
    sockets = ok(daemon.call("listsockets"))["sockets"]
    text = daemon.config_path.read_text()
    moved = free_port()
    # the file loads, but the stream's constructor fails when the watcher is
    # built; the socket would move, the sleeper would go
    daemon.config_path.write_text(
        text.split("[watcher:sleeper]")[0]
        + "[watcher:new]\ncmd = sleep 304\nstdout_stream.class = tests.apps.streams.Broken\n"
        + "[socket:s]\nhost = 127.0.0.1\nport = %d\n" % moved)
    for waiting in (True, False):  # the error comes before the reply either way
        reply = error(daemon.call("reloadconfig", waiting=waiting), 5)
        assert "this stream cannot be built" in reply["reason"], reply
        assert "[watcher:new]" in reply["reason"] and str(daemon.config_path) in reply["reason"]
    assert ok(daemon.call("list"))["watchers"] == ["sleeper"]
    assert pids(daemon) == before
    assert ok(daemon.call("listsockets"))["sockets"] == sockets
    # nothing was left bound on the new port
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", moved))


def test_nothing_starts_while_circusd_stops(circusd, tmp_path):
    # stubborn ignores SIGTERM: circusd stays in its quit for graceful_timeout
    daemon = circusd("[watcher:stubborn]\ncmd = %s\ngraceful_timeout = 4\n"
                     "[watcher:idle]\ncmd = sleep 312.5\nautostart = false\n" % STUBBORN)
    wait_for(lambda: list(tmp_path.glob("ready-*")), message="stubborn to run")
    ok(daemon.call("quit"))
    wait_for(lambda: daemon.call("status", name="stubborn")["status"] == "stopping",
             message="the quit to begin")
    for command, props in [("start", {"name": "idle"}), ("start", {}),
                           ("restart", {"name": "idle"}), ("reload", {"name": "idle"}),
                           ("incr", {"name": "idle"}), ("reloadconfig", {}),
                           ("add", {"name": "late", "cmd": "sleep 312.5", "start": True}),
                           ("start", {"name": "idle", "waiting": True})]:
        reply = error(daemon.call(command, **props), 5)
        assert "circusd is stopping" in reply["reason"], (command, reply)
    ok(daemon.call("stop", name="idle"))  # stopping stays allowed
    assert daemon.call("status", name="idle")["status"] == "stopped"
    assert "late" not in ok(daemon.call("list"))["watchers"]
    assert daemon.proc.wait(30) == 0
    assert not [p for p in daemon.children()]
    assert b"watcher idle started" not in daemon.read_log()


def test_stop_of_a_stopped_watcher_answers_ok_and_changes_nothing(circusd):
    daemon = circusd(SLEEP % 1 + "\n[watcher:idle]\ncmd = sleep 313\nautostart = false\n")
    with EventLog(daemon, ["watcher.idle.", "watcher.sleeper."]).sync("sleeper") as events:
        ok(daemon.call("stop", name="idle", waiting=True))
        ok(daemon.call("stop", name="idle"))
        ok(daemon.call("stop", name="idle", reason="maintenance", waiting=True))
        _, first = events.topic("watcher.idle.already_stopped")
        assert "reason" not in first
        events.topic("watcher.idle.already_stopped")
        events.topic("watcher.idle.already_stopped", reason="maintenance")
        # a stop that stops publishes stop, with the reason given
        ok(daemon.call("stop", name="sleeper", reason="maintenance", waiting=True))
        events.topic("watcher.sleeper.stop", reason="maintenance")
        assert "watcher.idle.stop" not in events.topics()
        assert "watcher.sleeper.already_stopped" not in events.topics()
    assert daemon.call("status", name="idle")["status"] == "stopped"
    error(daemon.call("stop", name="idle", reason=5), 3)


def test_quit(circusd):
    daemon = sleeper(circusd, 2)
    children = pids(daemon)
    ok(daemon.call("quit"))
    assert daemon.proc.wait(10) == 0
    assert not any(pid_alive(p) for p in children)


# --- events ---------------------------------------------------------------------

def test_lifecycle_events(circusd):
    daemon = sleeper(circusd)
    with EventLog(daemon, ["watcher.sleeper."]).sync("sleeper") as events:
        ok(daemon.call("incr", name="sleeper", waiting=True))
        _, spawn = events.topic("watcher.sleeper.spawn")
        assert isinstance(spawn["process_pid"], int) and isinstance(spawn["time"], float)
        ok(daemon.call("stop", name="sleeper", waiting=True))
        _, kill = events.topic("watcher.sleeper.kill")
        assert "process_pid" in kill
        _, reap = events.topic("watcher.sleeper.reap", process_pid=spawn["process_pid"])
        assert reap["exit_code"] == -signal.SIGTERM
        events.topic("watcher.sleeper.stop")
        ok(daemon.call("start", name="sleeper", waiting=True))
        events.topic("watcher.sleeper.start")
        assert not [t for t in events.topics() if not t.startswith("watcher.sleeper.")]


def test_audit_property_is_logged_and_published_and_no_command_sees_it(circusd):
    daemon = sleeper(circusd)
    who = {"user": "alice", "role": "operator", "addr": "10.1.2.3", "via": "circushttpd"}
    with EventLog(daemon, ["audit.", "watcher.sleeper.updated"]).sync("sleeper") as events:
        ok(daemon.call("incr", name="sleeper", nb=2, audit=who))
        _, event = events.topic("audit.incr")
        assert {k: event[k] for k in who} == who
        assert event["target"] == "sleeper" and event["status"] == "ok"
        assert event["properties"] == {"nb": 2} and isinstance(event["time"], float)
        error(daemon.call("incr", name="nobody", audit=who), 3)
        _, event = events.topic("audit.incr")
        assert event["target"] == "nobody" and event["status"] == "error"
        assert "nobody" in event["reason"]
        # without the property, nothing is audited
        ok(daemon.call("decr", name="sleeper"))
        ok(daemon.call("numprocesses", name="sleeper", audit=who))
        events.topic("audit.numprocesses")
        assert events.topics().count("audit.decr") == 0
    log = daemon.read_log().decode()
    assert "audit: alice (operator) from 10.1.2.3 via circushttpd: incr sleeper: ok" in log
    assert "audit: alice (operator) from 10.1.2.3 via circushttpd: incr nobody: error:" in log


def test_max_retry_give_up_is_an_event(circusd):
    daemon = sleeper(circusd)
    with EventLog(daemon).sync("sleeper") as events:
        ok(daemon.call("add", name="broken", cmd="false", options={"max_retry": 2},
                       start=True))
        _, msg = events.topic("watcher.broken.max_retry")
        assert msg["max_retry"] == 2 and "reason" in msg
        _, stop = events.topic("watcher.broken.stop")
        assert "gave up" in stop["reason"]
    assert daemon.call("status", name="broken")["status"] == "stopped"


# --- errors ---------------------------------------------------------------------

def test_error_replies(circusd):
    daemon = sleeper(circusd)
    reply = raw_call(daemon, b"{not json")
    assert reply["status"] == "error" and reply["errno"] == 1 and reply["id"] is None
    assert raw_call(daemon, [1, 2])["errno"] == 1
    reply = raw_call(daemon, {"id": "a1", "command": "frobnicate"})
    assert reply["errno"] == 2 and reply["id"] == "a1"
    assert raw_call(daemon, {"id": "a2"})["errno"] == 3
    assert raw_call(daemon, {"id": "a3", "command": "list", "properties": [1]})["errno"] == 3
    error(daemon.call("incr"), 3)  # missing property
    error(daemon.call("incr", name="sleeper", nb="two"), 3)  # ill-typed
    error(daemon.call("incr", name=5), 3)
    reply = error(daemon.call("incr", name="ghost"), 3)
    assert reply["reason"] == "program ghost not found"
    # and circusd is still fine
    assert ok(daemon.call("status", name="sleeper"))["status"] == "active"


def test_command_names_are_case_insensitive_and_req_sockets_work(circusd):
    daemon = sleeper(circusd)
    reply = raw_call(daemon, {"id": "x", "command": "LIST"}, socket_type=zmq.REQ)
    assert reply["watchers"] == ["sleeper"] and reply["id"] == "x"


def test_cast_gets_no_reply_but_is_done(circusd):
    daemon = sleeper(circusd)
    msg = {"id": "c1", "command": "incr", "msg_type": "cast",
           "properties": {"name": "sleeper", "nb": 2}}
    assert raw_call(daemon, msg, timeout=0.3) is None
    wait_for(lambda: len(daemon.children()) == 3)
    assert raw_call(daemon, dict(msg, command="nope"), timeout=0.3) is None


def test_ipc_endpoints_are_private(circusd, tmp_path):
    daemon = circusd(SLEEP % 1, start=False)
    daemon.endpoint = "ipc://%s" % (tmp_path / "ctl.sock")
    daemon.pubsub = "ipc://%s" % (tmp_path / "pub.sock")
    daemon.config_path.write_text("[circus]\nendpoint = %s\npubsub_endpoint = %s\n"
                                  % (daemon.endpoint, daemon.pubsub) + SLEEP % 1)
    daemon.start()
    for name in ("ctl.sock", "pub.sock"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    assert ok(daemon.call("list"))["watchers"] == ["sleeper"]
    with EventLog(daemon).sync("sleeper"):
        pass


# --- signals to circusd ---------------------------------------------------------

def test_sighup_reloads_the_config(circusd):
    daemon = sleeper(circusd)
    daemon.config_path.write_text(daemon.config_path.read_text()
                                  + "\n[watcher:hup]\ncmd = sleep 305\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "hup" in daemon.call("list")["watchers"])
    wait_for(lambda: len(pids(daemon, "hup")) == 1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_stop_signals_quit(circusd, signum):
    daemon = sleeper(circusd, 2)
    children = pids(daemon)
    daemon.proc.send_signal(signum)
    assert daemon.proc.wait(10) == 0
    assert not any(pid_alive(p) for p in children)
    assert b"Arbiter exiting" in daemon.read_log()


def test_stop_refused_by_a_before_stop_hook_answers_an_error(circusd):
    daemon = circusd(SLEEP % 2 + "hooks.before_stop = tests.apps.watcher_hooks.refuse\n")
    before = wait_pids(daemon, 2)
    reply = error(daemon.call("stop", name="sleeper", waiting=True), 5)
    assert "before_stop" in reply["reason"] and "sleeper" in reply["reason"]
    assert ok(daemon.call("status", name="sleeper"))["status"] == "active"
    assert pids(daemon) == before and all(pid_alive(p) for p in before)
    assert b"watcher sleeper not stopped: hook before_stop" in daemon.read_log()
    # quitting is not refused: nothing is left behind
    ok(daemon.call("quit", waiting=True))
    daemon.proc.wait(20)
    assert not any(pid_alive(p) for p in before)


GATED = """
[watcher:gated]
cmd = %s %s $(circus.wid)
ready = notify
ready_timeout = 30
graceful_timeout = 5
"""

# sends READY=1 once the file gate-WID exists in its working directory
GATED_SCRIPT = (
    "import os, sys, time\n"
    "from circus.sdnotify import notify\n"
    "gate = 'gate-' + sys.argv[1]\n"
    "while not os.path.exists(gate): time.sleep(0.01)\n"
    "notify('READY=1')\n"
    "time.sleep(300)\n")


def test_incr_waiting_answers_once_the_new_process_sent_ready(circusd, tmp_path):
    (tmp_path / "gated.py").write_text(GATED_SCRIPT)
    (tmp_path / "gate-1").touch()
    daemon = circusd(GATED % (PYTHON, tmp_path / "gated.py"))
    with EventLog(daemon) as events:
        events.sync("gated")
        replies = []
        thread = threading.Thread(target=lambda: replies.append(
            daemon.call("incr", name="gated", nb=1, waiting=True, timeout=30)))
        thread.start()
        try:
            _, spawn = events.topic("watcher.gated.spawn")
            wait_pids(daemon, 2, "gated")
            thread.join(0.5)
            assert thread.is_alive() and not replies  # spawned, not ready: no answer yet
            (tmp_path / "gate-2").touch()
            _, ready = events.topic("watcher.gated.ready")
            assert ready["process_pid"] == spawn["process_pid"]
        finally:
            (tmp_path / "gate-2").touch()
            thread.join(30)
    assert ok(replies[0])["numprocesses"] == 2
    # the answer came after READY=1
    assert replies[0]["time"] >= ready["time"]


def test_status_says_starting_until_ready_and_stopping_until_gone(circusd, tmp_path):
    (tmp_path / "gated.py").write_text(GATED_SCRIPT)
    daemon = circusd(GATED % (PYTHON, tmp_path / "gated.py") + "autostart = false\n"
                     "[watcher:stubborn]\ncmd = %s\ngraceful_timeout = 2\n" % STUBBORN)
    ok(daemon.call("start", name="gated"))  # answered at once; the start goes on
    wait_pids(daemon, 1, "gated")
    # spawned, and no READY=1 can come before the gate exists
    assert ok(daemon.call("status", name="gated"))["status"] == "starting"
    assert ok(daemon.call("status"))["statuses"] == {"gated": "starting", "stubborn": "active"}
    (tmp_path / "gate-1").touch()
    wait_for(lambda: daemon.call("status", name="gated")["status"] == "active",
             message="gated to be active")
    _ignore_sigterm(wait_pids(daemon, 1, "stubborn"))
    ok(daemon.call("stop", name="stubborn"))
    # SIGTERM ignored: stopping until the SIGKILL after graceful_timeout
    wait_for(lambda: daemon.call("status", name="stubborn")["status"] == "stopping",
             message="the stop to begin")
    wait_for(lambda: daemon.call("status", name="stubborn")["status"] == "stopped",
             message="the stop to end")


def _in_thread(daemon, results, command, **props):
    thread = threading.Thread(target=lambda: results.append(
        (command, daemon.call(command, timeout=30, waiting=True, **props))))
    thread.start()
    return thread


def _ignore_sigterm(pids):
    def ignoring(pid):
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
        return False
    wait_for(lambda: all(ignoring(p) for p in pids), message="SIGTERM ignored")
    return pids


def test_operations_on_one_watcher_are_serialised(circusd, tmp_path):
    # stopping a stubborn process takes graceful_timeout: a long operation
    # that a second client's command must wait for, not interleave with
    daemon = circusd("""
        [watcher:slow]
        cmd = %s
        numprocesses = 2
        graceful_timeout = 1
        """ % STUBBORN)
    old = _ignore_sigterm(wait_pids(daemon, 2, "slow"))
    with EventLog(daemon) as events:
        events.sync("slow")
        results = []
        threads = [_in_thread(daemon, results, "reload", name="slow")]
        events.topic("watcher.slow.kill")  # the reload is under way
        threads.append(_in_thread(daemon, results, "incr", name="slow", nb=1))
        for thread in threads:
            thread.join(30)
        # the two replies can reach their threads in either order: the
        # order the server ran them in is read from its events below
        replies = dict(results)
        assert sorted(replies) == ["incr", "reload"]
        assert all(ok(reply) for reply in replies.values())
        assert replies["incr"]["numprocesses"] == 3
        for _ in range(3):
            events.topic("watcher.slow.spawn")
        topics = [t.rsplit(".", 1)[1] for t in events.topics()
                  if t.rsplit(".", 1)[1] in ("spawn", "kill", "reload")]
        # the reload's 2 spawns and 2 kills, its end, then the incr's spawn
        assert topics[:6] == ["spawn", "spawn", "kill", "kill", "reload", "spawn"], topics
        now = _ignore_sigterm(wait_pids(daemon, 3, "slow", exclude=old))
        assert not any(pid_alive(p) for p in old)

        # stop racing start: the start waits for the stop, and wins
        events.items.clear()
        results.clear()
        stopping = time.monotonic()
        threads = [_in_thread(daemon, results, "stop", name="slow")]
        events.topic("watcher.slow.kill")
        threads.append(_in_thread(daemon, results, "start", name="slow"))
        for thread in threads:
            thread.join(30)
        assert time.monotonic() - stopping >= 1.0  # the start waited for the stop
        assert sorted(c for c, _ in results) == ["start", "stop"]
        assert all(ok(reply) for _, reply in results)
        events.topic("watcher.slow.start")
        topics = [t.rsplit(".", 1)[1] for t in events.topics()
                  if t.rsplit(".", 1)[1] in ("spawn", "kill", "stop", "start")]
        assert topics == ["kill"] * 3 + ["stop"] + ["spawn"] * 3 + ["start"], topics
        assert ok(daemon.call("status", name="slow"))["status"] == "active"
        wait_pids(daemon, 3, "slow", exclude=now)


def test_reload_sequential_over_zmq_replaces_one_process_at_a_time(circusd):
    daemon = sleeper(circusd, 3)
    old = wait_pids(daemon, 3)
    with EventLog(daemon) as events:
        events.sync("sleeper")
        ok(daemon.call("reload", name="sleeper", sequential=True, waiting=True))
        events.topic("watcher.sleeper.reload")
        kinds = []
        for topic, msg in events.items:
            kind = topic.rsplit(".", 1)[1]
            if kind in ("spawn", "kill", "reap"):
                kinds.append(kind)
                if kind != "spawn":
                    assert msg["process_pid"] in old
        # each old process is gone before the next successor is started
        assert kinds == ["spawn", "kill", "reap"] * 3, kinds
    wait_pids(daemon, 3, exclude=old)


def test_reload_graceful_false_over_zmq_kills_the_old_processes_at_once(circusd):
    daemon = circusd("[watcher:slow]\ncmd = %s\nnumprocesses = 2\ngraceful_timeout = 30\n"
                     % STUBBORN)
    old = _ignore_sigterm(wait_pids(daemon, 2, "slow"))
    with EventLog(daemon) as events:
        events.sync("slow")
        started = time.monotonic()
        ok(daemon.call("reload", name="slow", graceful=False, waiting=True, timeout=30))
        assert time.monotonic() - started < 10  # not graceful_timeout: SIGKILL at once
        reaps = [events.topic("watcher.slow.reap")[1] for _ in old]
        assert sorted(m["process_pid"] for m in reaps) == sorted(old)
        assert all(m["exit_code"] == -signal.SIGKILL for m in reaps)
        # the new processes were started before the old ones were killed
        kinds = [t.rsplit(".", 1)[1] for t in events.topics()
                 if t.rsplit(".", 1)[1] in ("spawn", "kill")]
        assert kinds == ["spawn", "spawn", "kill", "kill"], kinds
    wait_pids(daemon, 2, "slow", exclude=old)
    # graceful (the default) waits: a stubborn process outlives its SIGTERM
    daemon.call("set", name="slow", options={"graceful_timeout": 0.5})
    now = _ignore_sigterm(wait_pids(daemon, 2, "slow"))
    started = time.monotonic()
    ok(daemon.call("reload", name="slow", waiting=True))
    assert time.monotonic() - started >= 0.5
    wait_pids(daemon, 2, "slow", exclude=now)
