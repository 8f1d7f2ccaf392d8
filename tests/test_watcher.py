"""Watcher and Process lifecycle with real child processes, in-process arbiter."""
import asyncio
import os
import signal
import sys
import time

import psutil
import pytest

from circus.watcher import Watcher
from support import is_spawner_argv
from support.aio import running, until

PY = sys.executable


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(body)
    return "%s %s" % (PY, path)


def read_proc_file(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as handle:
        return handle.read()


async def cmdline(pid):
    # a vfork parent may resume before the exec has filled in the new argv,
    # and a child forked without vfork (a preexec_fn) shows its parent's
    # until its exec: wait
    parent = read_proc_file(os.getpid(), "cmdline")

    def own():
        argv = read_proc_file(pid, "cmdline")
        spawner = is_spawner_argv(argv.split(b"\0"))
        return argv if argv and argv != parent and not spawner else None
    return (await until(own, message="exec")).split(b"\0")


def proc_environ(pid):
    raw = read_proc_file(pid, "environ")
    return dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)


def test_processes_start_and_respawn_at_once_after_kill9():
    async def main():
        watcher = Watcher("sleepers", "sleep 120", numprocesses=3)
        async with running([watcher]) as arbiter:
            assert len(watcher.processes) == 3
            assert all(psutil.pid_exists(pid) for pid in watcher.pids)
            victim = watcher.pids[0]
            mark = len(arbiter.events.items)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            topic, msg = await arbiter.events.wait(
                lambda t, m: t == "watcher.sleepers.spawn", start=mark)
            respawn = time.monotonic() - killed_at
            reap = [m for t, m in arbiter.events.items[mark:] if t.endswith(".reap")][0]
            assert reap["process_pid"] == victim and reap["exit_code"] == -signal.SIGKILL
            assert respawn < 1.0
            assert victim not in watcher.processes and len(watcher.processes) == 3
            pids = watcher.pids
        # quit leaves nothing behind
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                       for pid in pids)
        assert watcher.status == "stopped"
    run(main())


def test_missing_binary_gives_up_after_max_retry():
    async def main():
        watcher = Watcher("ghost", "/nonexistent/binary --flag", max_retry=3)
        async with running([watcher]) as arbiter:
            _, msg = await arbiter.events.topic("watcher.ghost.max_retry")
            assert "no such file" in msg["reason"].lower()
            assert "/nonexistent/binary" in msg["reason"]
            await arbiter.events.topic("watcher.ghost.stop")
            await until(lambda: watcher.status == "stopped")
            assert not watcher.processes
            assert arbiter.status == "active"  # circusd itself keeps running
    run(main())


def test_permission_denied_is_retried_max_retry_times_then_stopped(tmp_path, caplog):
    target = tmp_path / "not-executable"
    target.write_text("#!/bin/sh\nexec sleep 120\n")
    target.chmod(0o644)

    async def main():
        watcher = Watcher("denied", str(target), max_retry=2)
        async with running([watcher]) as arbiter:
            _, msg = await arbiter.events.topic("watcher.denied.max_retry")
            assert "permission denied" in msg["reason"].lower()
            assert "gave up after 2 retries" in msg["reason"]
            await arbiter.events.topic("watcher.denied.stop")
            assert watcher.status == "stopped" and not watcher.processes
            assert "watcher.denied.spawn" not in arbiter.events.topics()
            assert arbiter.status == "active"
        failures = [r.getMessage() for r in caplog.records
                    if "denied" in r.getMessage() and "permission denied" in r.getMessage()]
        assert len([m for m in failures if "(failure" in m]) == 3  # the start, 2 retries
        assert any("stopping" in m and str(target) in m for m in failures)
    run(main())


def test_crash_loop_is_retried_max_retry_times_then_stopped():
    async def main():
        watcher = Watcher("crasher", "sh -c 'exit 3'", max_retry=4)
        healthy = Watcher("healthy", "sleep 120")
        async with running([watcher, healthy]) as arbiter:
            _, stop = await arbiter.events.topic("watcher.crasher.stop")
            spawns = arbiter.events.topics().count("watcher.crasher.spawn")
            assert spawns == 5  # the first start and max_retry retries
            reaps = [m for t, m in arbiter.events.items if t == "watcher.crasher.reap"]
            assert all(m["exit_code"] == 3 for m in reaps)
            assert "gave up after 4 retries" in stop["reason"]
            assert watcher.status == "stopped"
            assert healthy.status == "active" and len(healthy.processes) == 1
    run(main())


def test_stop_sends_stop_signal_then_sigkill_after_graceful_timeout(tmp_path):
    marker = tmp_path / "got"
    cmd = script(tmp_path, "stubborn.py", (
        "import signal, sys, time\n"
        "def handler(signum, frame):\n"
        "    open(%r, 'a').write(str(signum) + '\\n')\n"
        "signal.signal(signal.SIGUSR1, handler)\n"
        "signal.signal(signal.SIGTERM, handler)\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)\n") % str(marker))

    async def main():
        watcher = Watcher("stubborn", cmd, stop_signal="USR1", graceful_timeout=0.5)
        async with running([watcher]) as arbiter:
            pid = watcher.pids[0]
            await until(lambda: b"stubborn" in read_proc_file(pid, "cmdline") and
                        _has_handler(pid, signal.SIGUSR1), message="handlers installed")
            started = time.monotonic()
            await watcher.stop()
            elapsed = time.monotonic() - started
            assert 0.4 < elapsed < 3
            reap = [m for t, m in arbiter.events.items if t == "watcher.stubborn.reap"][-1]
            assert reap["exit_code"] == -signal.SIGKILL
            assert marker.read_text().split() == [str(int(signal.SIGUSR1))]
    run(main())


def test_graceful_timeout_0_sends_sigkill_right_after_the_stop_signal(tmp_path):
    # 0 means no grace at all (the reference: the time we wait before we
    # definitely kill), never "wait forever"
    cmd = script(tmp_path, "deaf.py", (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True: time.sleep(1)\n"))

    async def main():
        watcher = Watcher("deaf", cmd, graceful_timeout=0)
        async with running([watcher]) as arbiter:
            pid = watcher.pids[0]
            await until(lambda: b"deaf" in read_proc_file(pid, "cmdline") and
                        _ignores(pid, signal.SIGTERM), message="SIGTERM ignored")
            started = time.monotonic()
            async with asyncio.timeout(10):  # the old behaviour waited forever
                await watcher.stop()
            assert time.monotonic() - started < 1.0
            reap = [m for t, m in arbiter.events.items if t == "watcher.deaf.reap"][-1]
            assert reap["process_pid"] == pid and reap["exit_code"] == -signal.SIGKILL
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    run(main())


def _ignores(pid, signum):
    for line in read_proc_file(pid, "status").decode().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def _has_handler(pid, signum):
    for line in read_proc_file(pid, "status").decode().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def test_stop_children_reaches_the_whole_tree(tmp_path):
    cmd = script(tmp_path, "parent.py", (
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '120'])\n"
        "subprocess.Popen(['sh', '-c', 'sleep 120; true'])\n"
        "time.sleep(120)\n"))

    async def main():
        watcher = Watcher("tree", cmd, stop_children=True, graceful_timeout=5)
        plain = Watcher("plain", cmd, graceful_timeout=5)
        async with running([watcher, plain]):
            proc = psutil.Process(watcher.pids[0])
            await until(lambda: len(proc.children(recursive=True)) >= 3, message="grandchildren")
            tree = proc.children(recursive=True)
            plain_proc = psutil.Process(plain.pids[0])
            await until(lambda: len(plain_proc.children(recursive=True)) >= 3)
            plain_tree = plain_proc.children(recursive=True)
            await watcher.stop()
            gone, alive = psutil.wait_procs(tree, timeout=5)
            assert not alive
            await plain.stop()
            # without stop_children the orphans survive; clean them up
            survivors = [p for p in plain_tree if p.is_running() and p.status() != "zombie"]
            assert survivors
            for p in survivors:
                p.kill()
    run(main())


def test_reload_starts_new_processes_before_stopping_old_ones():
    async def main():
        watcher = Watcher("web", "sleep 120", numprocesses=4, graceful_timeout=5)
        async with running([watcher]) as arbiter:
            old = set(watcher.pids)
            samples = []
            sampling = True

            async def sample():
                while sampling:
                    samples.append(sum(1 for p in watcher.processes.values()
                                       if p.returncode is None and not p.stopping))
                    await asyncio.sleep(0)
            sampler = asyncio.ensure_future(sample())
            await watcher.reload()
            sampling = False
            await sampler
            new = set(watcher.pids)
            assert len(new) == 4 and not (new & old)
            assert min(samples) >= 4
            topics = [t for t in arbiter.events.topics() if t.endswith((".spawn", ".kill"))]
            first_kill = topics.index("watcher.web.kill")
            assert topics[first_kill - 4:first_kill] == ["watcher.web.spawn"] * 4
            assert "watcher.web.reload" in arbiter.events.topics()
    run(main())


def test_reload_sequential_replaces_one_at_a_time():
    async def main():
        watcher = Watcher("web", "sleep 120", numprocesses=3)
        async with running([watcher]) as arbiter:
            old = set(watcher.pids)
            mark = len(arbiter.events.items)
            await watcher.reload(sequential=True)
            assert not (set(watcher.pids) & old) and len(watcher.pids) == 3
            kinds = [t.rsplit(".", 1)[1] for t in arbiter.events.topics()[mark:]
                     if t.rsplit(".", 1)[1] in ("spawn", "kill")]
            assert kinds == ["spawn", "kill"] * 3
    run(main())


def test_reload_with_send_hup_signals_instead(tmp_path):
    log = tmp_path / "hups"
    cmd = script(tmp_path, "hup.py", (
        "import os, signal, time\n"
        "signal.signal(signal.SIGHUP, lambda *a: open(%r, 'a').write('%%d\\n' %% os.getpid()))\n"
        "open(%r + '.ready', 'a').write('x')\n"
        "while True: time.sleep(1)\n") % (str(log), str(log)))

    async def main():
        watcher = Watcher("hup", cmd, numprocesses=2, send_hup=True)
        async with running([watcher]):
            pids = set(watcher.pids)
            ready = tmp_path / "hups.ready"
            await until(lambda: ready.exists() and len(ready.read_text()) == 2)
            await watcher.reload()
            await until(lambda: log.exists() and len(log.read_text().split()) == 2)
            assert {int(p) for p in log.read_text().split()} == pids
            assert set(watcher.pids) == pids
    run(main())


@pytest.mark.slow
def test_max_age_recycles_with_staggered_lifetimes_and_no_gap():
    async def main():
        watcher = Watcher("aging", "sleep 120", numprocesses=3, max_age=1.0,
                          max_age_variance=1.0, graceful_timeout=5)
        async with running([watcher]) as arbiter:
            lifetimes = [p.expires_in for p in watcher.processes.values()]
            assert all(1.0 <= t <= 2.0 for t in lifetimes)
            assert len(set(lifetimes)) == 3  # drawn per process
            first = set(watcher.pids)
            samples = []
            deadline = time.monotonic() + 4.5
            while time.monotonic() < deadline:
                samples.append(len([p for p in watcher.processes.values()
                                    if p.returncode is None and not p.stopping]))
                await asyncio.sleep(0.005)
            assert min(samples) >= 3
            assert not (first & set(watcher.pids))
            # replacement spawned before the expired one was killed, each time
            topics = [t for t in arbiter.events.topics() if t.endswith((".spawn", ".kill"))]
            assert topics[:3] == ["watcher.aging.spawn"] * 3
            for index, topic in enumerate(topics[3:]):
                if topic.endswith(".kill"):
                    assert topics[3 + index - 1].endswith(".spawn")
    run(main())


def test_incr_decr_and_singleton():
    async def main():
        watcher = Watcher("pool", "sleep 120", numprocesses=2)
        single = Watcher("single", "sleep 120", singleton=True, numprocesses=5)
        async with running([watcher, single]):
            assert await watcher.incr(3) == 5
            assert len(watcher.processes) == 5
            oldest = watcher.pids[:3]
            assert await watcher.decr(3) == 2
            assert len(watcher.processes) == 2
            assert not set(oldest) & set(watcher.pids)
            assert len(single.processes) == 1
            assert await single.incr(2) == 1 and len(single.processes) == 1
    run(main())


def test_warmup_delay_priority_and_autostart():
    async def main():
        slow = Watcher("slow", "sleep 120", numprocesses=3, warmup_delay=0.2, priority=1)
        first = Watcher("first", "sleep 120", priority=10)
        manual = Watcher("manual", "sleep 120", autostart=False)
        async with running([slow, manual, first]) as arbiter:
            spawns = [(t, m["time"]) for t, m in arbiter.events.items if t.endswith(".spawn")]
            assert [t for t, _ in spawns] == ["watcher.first.spawn"] + ["watcher.slow.spawn"] * 3
            gaps = [b[1] - a[1] for a, b in zip(spawns[1:], spawns[2:])]
            assert all(g >= 0.19 for g in gaps)
            assert manual.status == "stopped" and not manual.processes
            await manual.start()
            assert len(manual.processes) == 1
    run(main())


def test_respawn_false_leaves_dead_process_dead():
    async def main():
        watcher = Watcher("oneshot", "sleep 120", numprocesses=2, respawn=False)
        async with running([watcher]) as arbiter:
            victim = watcher.pids[0]
            os.kill(victim, signal.SIGTERM)
            await arbiter.events.topic("watcher.oneshot.reap")
            assert len(watcher.processes) == 1
            assert watcher.status == "active"
    run(main())


def test_spawn_options_env_cwd_rlimits_executable_shell(tmp_path):
    os.environ["CIRCUS_TEST_OUTER"] = "outer-value"

    async def main():
        env_watcher = Watcher("envw", "sleep 120", env={"FOO": "bar-$(circus.wid)"},
                              working_dir=str(tmp_path), rlimit_nofile=None,
                              rlimits={"nofile": 123})
        copied = Watcher("copied", "sleep 120", copy_env=True, copy_path=True)
        renamed = Watcher("renamed", "my-display-name 120", executable="/bin/sleep")
        # stop_children: the shell's sleep is stopped with it, not orphaned
        shell = Watcher("shell", "sleep 120 && echo $HOME", shell=True, stop_children=True)
        async with running([env_watcher, copied, renamed, shell]):
            pid = env_watcher.pids[0]
            await cmdline(pid)
            env = proc_environ(pid)
            assert env == {b"FOO": b"bar-1"}  # no copy_env: nothing else leaks
            assert os.readlink("/proc/%d/cwd" % pid) == str(tmp_path)
            assert psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE) == (123, 123)
            await cmdline(copied.pids[0])
            copied_env = proc_environ(copied.pids[0])
            assert copied_env[b"CIRCUS_TEST_OUTER"] == b"outer-value"
            assert b"PYTHONPATH" in copied_env
            argv = await cmdline(renamed.pids[0])
            assert argv[0] == b"my-display-name"
            assert os.readlink("/proc/%d/exe" % renamed.pids[0]).endswith("sleep")
            shell_cmd = await cmdline(shell.pids[0])
            assert shell_cmd[:2] == [b"/bin/sh", b"-c"]
    run(main())


@pytest.mark.skipif(os.geteuid() != 0, reason="changing uid/gid needs root")
def test_uid_and_gid():
    async def main():
        watcher = Watcher("nobody", "sleep 120", uid="nobody", gid="nogroup")
        async with running([watcher]):
            proc = psutil.Process(watcher.pids[0])
            assert proc.username() == "nobody"
            import grp
            assert proc.gids().real == grp.getgrnam("nogroup").gr_gid
    run(main())


def test_wid_and_option_substitution(tmp_path):
    out = tmp_path / "out"

    async def main():
        cmd = "sh -c 'echo $(circus.wid) $(CIRCUS.NAME) $(circus.numprocesses) $WID >> %s; " \
              "exec sleep 120'" % out
        watcher = Watcher("subst", cmd, numprocesses=2)
        async with running([watcher]):
            await until(lambda: out.exists() and len(out.read_text().splitlines()) == 2)
            lines = sorted(out.read_text().splitlines())
            assert lines == ["1 subst 2 1", "2 subst 2 2"]
    run(main())


def test_hooks_run_and_false_aborts(tmp_path):
    calls = []

    def record(watcher, arbiter, hook_name, **kwargs):
        calls.append((hook_name, kwargs))
        return True

    def refuse(watcher, arbiter, hook_name, **kwargs):
        calls.append((hook_name, kwargs))
        return False

    async def main():
        hooks = {name: record for name in (
            "before_start", "after_start", "before_spawn", "after_spawn", "before_stop",
            "after_stop", "before_signal", "after_signal", "before_reap", "after_reap")}
        watcher = Watcher("hooked", "sleep 120", hooks=hooks)
        refused = Watcher("refused", "sleep 120", hooks={"before_start": refuse})
        async with running([watcher, refused]):
            assert refused.status == "stopped" and not refused.processes
            await watcher.stop()
        names = [name for name, _ in calls]
        for expected in ("before_start", "before_spawn", "after_spawn", "after_start",
                         "before_stop", "before_signal", "after_signal", "before_reap",
                         "after_reap", "after_stop"):
            assert expected in names, expected
        assert names.index("before_spawn") < names.index("after_spawn") < names.index("after_start")
        assert names.index("before_signal") < names.index("after_reap") < names.index("after_stop")
    run(main())


def test_hook_by_dotted_name_refuses_spawn(tmp_path):
    async def main():
        watcher = Watcher("nospawn", "sleep 120", max_retry=1,
                          hooks={"before_spawn": "tests.apps.watcher_hooks.refuse"})
        async with running([watcher]) as arbiter:
            await arbiter.events.topic("watcher.nospawn.stop")
            assert "before_spawn" in watcher._gave_up
    run(main())


NOTIFY_SCRIPT = (
    "import os, socket, sys, time\n"
    "time.sleep(float(sys.argv[1]))\n"
    "if sys.argv[2] == 'ready':\n"
    "    addr = os.environ['NOTIFY_SOCKET']\n"
    "    addr = '\\0' + addr[1:] if addr.startswith('@') else addr\n"
    "    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "    s.sendto(b'READY=1', addr)\n"
    "time.sleep(120)\n")


def test_ready_notify_gates_reload(tmp_path):
    cmd = script(tmp_path, "notifier.py", NOTIFY_SCRIPT)

    async def main():
        watcher = Watcher("web", cmd + " 0.3 ready", numprocesses=2, ready="notify",
                          ready_timeout=10)
        async with running([watcher]) as arbiter:
            assert all(p.ready_future.result() for p in watcher.processes.values())
            old = set(watcher.pids)
            started = time.monotonic()
            mark = len(arbiter.events.items)
            await watcher.reload()
            assert time.monotonic() - started >= 0.3  # waited for READY=1
            topics = arbiter.events.topics()[mark:]
            assert topics.index("watcher.web.ready") < topics.index("watcher.web.kill")
            assert not set(watcher.pids) & old
    run(main())


def test_replacement_never_ready_is_killed_and_old_keeps_serving(tmp_path):
    cmd = script(tmp_path, "notifier.py", NOTIFY_SCRIPT)

    async def main():
        watcher = Watcher("web", cmd + " 0 ready", numprocesses=1, ready="notify",
                          ready_timeout=1.0)
        async with running([watcher]) as arbiter:
            old = watcher.pids
            watcher.args = None
            watcher.cmd = cmd + " 0 never"
            mark = len(arbiter.events.items)
            await watcher.reload()
            assert watcher.pids == old  # the old worker is still the one serving
            topics = arbiter.events.topics()[mark:]
            assert "watcher.web.ready_timeout" in topics
            killed = [m["process_pid"] for t, m in arbiter.events.items[mark:]
                      if t == "watcher.web.kill"]
            assert killed and old[0] not in killed
            assert watcher.status == "active"
    run(main())


def test_before_stop_false_keeps_the_watcher_running_until_circusd_quits():
    refusing = [True]

    def before_stop(watcher, arbiter, hook_name, **kwargs):
        return not refusing[0]

    async def main():
        watcher = Watcher("kept", "sleep 120", numprocesses=2,
                          hooks={"before_stop": before_stop})
        async with running([watcher]) as arbiter:
            pids = watcher.pids
            mark = len(arbiter.events.items)
            assert await watcher.stop() is False
            assert watcher.status == "active" and watcher.pids == pids
            assert all(psutil.pid_exists(pid) for pid in pids)
            assert "before_stop" in watcher.refusal
            topics = arbiter.events.topics()[mark:]
            assert "watcher.kept.stop" not in topics and "watcher.kept.kill" not in topics
            refusing[0] = False
            assert await watcher.stop() is True
            assert watcher.status == "stopped" and not watcher.processes
    run(main())


def test_before_stop_false_cannot_keep_processes_past_quit():
    async def main():
        watcher = Watcher("kept", "sleep 120", hooks={"before_stop": lambda **kw: False})
        async with running([watcher]):
            pids = watcher.pids
        # quitting does not leave orphans behind for a hook's sake
        assert watcher.status == "stopped"
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                       for pid in pids)
    run(main())


SIGNAL_LOG_SCRIPT = (
    "import signal, sys, time\n"
    "def handler(signum, frame):\n"
    "    with open(sys.argv[1], 'a') as f:\n"
    "        f.write(signal.Signals(signum).name + '\\n')\n"
    "for s in (signal.SIGTERM, signal.SIGWINCH):\n"
    "    signal.signal(s, handler)\n"
    "open(sys.argv[1] + '.ready', 'w').close()\n"
    "while True: time.sleep(1)\n")


def test_before_signal_false_vetoes_the_signal_and_the_whole_stop(tmp_path):
    # a refused stop signal is a refused stop: no SIGKILL after graceful_timeout
    log = tmp_path / "signals"
    cmd = script(tmp_path, "siglog.py", SIGNAL_LOG_SCRIPT) + " " + str(log)
    asked = []

    def before_signal(watcher, arbiter, hook_name, pid, signum):
        asked.append(signum)
        return signum != signal.SIGTERM

    async def main():
        watcher = Watcher("vetoed", cmd, graceful_timeout=0.2,
                          hooks={"before_signal": before_signal})
        async with running([watcher]) as arbiter:
            pid = watcher.pids[0]
            await until(lambda: (tmp_path / "signals.ready").exists(), message="handlers")

            async def probe(count):
                # SIGWINCH (28) is handled after a pending SIGTERM (15): if
                # SIGTERM had been sent, it would be in the log first
                await watcher.signal(signal.SIGWINCH)
                await until(lambda: log.exists() and
                            log.read_text().split().count("SIGWINCH") == count)

            assert await watcher.signal(signal.SIGTERM) == [pid]
            await probe(1)
            mark = len(arbiter.events.items)
            started = time.monotonic()
            assert await watcher.stop() is False
            assert time.monotonic() - started < 0.2  # no graceful_timeout wait either
            assert watcher.status == "active" and watcher.pids == [pid]
            assert not watcher.processes[pid].stopping
            assert "before_signal" in watcher.refusal
            await probe(2)
            assert log.read_text().split() == ["SIGWINCH", "SIGWINCH"]
            assert asked.count(signal.SIGTERM) == 2 and signal.SIGKILL not in asked
            topics = arbiter.events.topics()[mark:]
            assert not [t for t in topics if t.endswith((".kill", ".reap", ".stop"))]
        # circusd quits anyway: the veto is ignored, the process is gone
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert "SIGTERM" in log.read_text().split()
    run(main())


def test_before_signal_veto_in_reload_keeps_the_old_process_and_the_count():
    def before_signal(watcher, arbiter, hook_name, pid, signum):
        return pid != kept[0]

    kept = []

    async def main():
        watcher = Watcher("web", "sleep 120", numprocesses=2,
                          hooks={"before_signal": before_signal})
        async with running([watcher]):
            kept.append(watcher.pids[0])
            other = watcher.pids[1]
            await watcher.reload()
            assert kept[0] in watcher.pids and other not in watcher.pids
            assert len(watcher.live_processes()) == 2
            await watcher.reload(sequential=True)
            assert kept[0] in watcher.pids and len(watcher.live_processes()) == 2
            kept.clear()
            kept.append(None)
    run(main())


GATED_NOTIFY_SCRIPT = (
    "import os, socket, sys, time\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    "addr = os.environ['NOTIFY_SOCKET']\n"
    "addr = '\\0' + addr[1:] if addr.startswith('@') else addr\n"
    "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', addr)\n"
    "time.sleep(120)\n")


@pytest.mark.slow
def test_max_age_successor_never_ready_is_killed_and_the_old_one_recycled_later(tmp_path):
    gate = tmp_path / "gate"
    gate.touch()
    cmd = script(tmp_path, "gated.py", GATED_NOTIFY_SCRIPT) + " " + str(gate)

    async def main():
        watcher = Watcher("aging", cmd, ready="notify", ready_timeout=0.5, max_age=1.0,
                          max_age_variance=0, graceful_timeout=5)
        async with running([watcher]) as arbiter:
            events = arbiter.events
            old = watcher.pids[0]
            gate.unlink()  # from now on, nothing new gets ready
            _, spawn = await events.wait(lambda t, m: t == "watcher.aging.spawn"
                                         and m["process_pid"] != old)
            successor = spawn["process_pid"]
            _, timeout = await events.topic("watcher.aging.ready_timeout")
            assert timeout["process_pid"] == successor and timeout["timeout"] == 0.5
            await events.wait(lambda t, m: t == "watcher.aging.reap"
                              and m["process_pid"] == successor)
            # the old one kept serving, and counted as the only process
            assert watcher.pids == [old] and psutil.pid_exists(old)
            assert not watcher.processes[old].stopping
            mark = len(events.items)
            gate.touch()
            # retried later: a new successor gets ready, then the old one goes
            _, reap = await events.wait(lambda t, m: t == "watcher.aging.reap"
                                        and m["process_pid"] == old, timeout=10)
            later = events.items[mark:]
            ready = [m["process_pid"] for t, m in later if t == "watcher.aging.ready"]
            kill = [i for i, (t, m) in enumerate(later)
                    if t == "watcher.aging.kill" and m["process_pid"] == old][0]
            assert ready and [i for i, (t, m) in enumerate(later)
                              if t == "watcher.aging.ready"][0] < kill
            assert reap["exit_code"] == -signal.SIGTERM
            assert len(watcher.live_processes()) == 1 and old not in watcher.pids
    run(main())
