"""The /proc snapshot behind stats describes processes as psutil does."""
import subprocess
import time

import psutil

from circus.process import process_info
from circus.procstats import NO_SUCH_PROCESS, Snapshot
from support import PYTHON, wait_for


def test_snapshot_matches_psutil():
    parent = subprocess.Popen([PYTHON, "-c", "import subprocess, time; "
                               "subprocess.Popen(['sleep', '30']); time.sleep(30)"])
    try:
        children = wait_for(lambda: psutil.Process(parent.pid).children())
        ours = Snapshot().info(parent.pid)
        theirs = process_info(psutil.Process(parent.pid))
        assert set(ours) == set(theirs)
        for key in ("pid", "cmdline", "username", "nice"):
            assert ours[key] == theirs[key], key
        # children: the same mappings, of the children only
        assert [c["pid"] for c in ours["children"]] == [c["pid"] for c in theirs["children"]] \
            == [children[0].pid]
        for child in ours["children"] + theirs["children"]:
            assert set(child) == set(ours) and child["cmdline"] == "sleep 30"
            assert child["children"] == []
        assert abs(ours["create_time"] - theirs["create_time"]) < 0.05
        assert abs(ours["rss"] - theirs["rss"]) < 1 << 20
        assert ours["cpu"] == 0.0  # no earlier look at this process
        assert isinstance(Snapshot().info(parent.pid, time.time() - 5)["cpu"], float)
        assert 4.9 < Snapshot().info(parent.pid, time.time() - 5)["age"] < 6
    finally:
        for child in psutil.Process(parent.pid).children():
            child.kill()
        parent.kill()
        parent.wait()
    assert Snapshot().info(parent.pid) == NO_SUCH_PROCESS


def test_snapshot_reads_a_command_line_again_once_a_minute(monkeypatch):
    from circus import procstats
    # exec keeps the pid and its start time: the same process, a new argv
    proc = subprocess.Popen(["sh", "-c", "read line; exec sleep 30"], stdin=subprocess.PIPE)
    try:
        # a vfork parent may resume before the exec has filled in the argv
        first = wait_for(lambda: Snapshot().info(proc.pid)["cmdline"], message="the exec")
        assert first == "sh -c read line; exec sleep 30"
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        def execd():
            with open("/proc/%d/cmdline" % proc.pid, "rb") as handle:
                return handle.read() == b"sleep\x0030\x00"
        wait_for(execd, message="the exec")
        # read once a minute: 10,000 processes each described costs a read less
        assert Snapshot().info(proc.pid)["cmdline"] == first
        monkeypatch.setattr(procstats, "IDENTITY_REFRESH", 0.0)
        assert Snapshot().info(proc.pid)["cmdline"] == "sleep 30"
    finally:
        proc.kill()
        proc.wait()


def test_a_look_gives_the_loop_a_turn_every_chunk_of_processes(monkeypatch):
    import asyncio
    import os

    from circus import procstats
    monkeypatch.setattr(procstats, "SCAN_CHUNK", 5)

    async def main():
        turns = 0
        looking = True

        async def count_turns():
            nonlocal turns
            while looking:
                await asyncio.sleep(0)
                turns += 1
        counter = asyncio.ensure_future(count_turns())
        await asyncio.sleep(0)
        snapshot = Snapshot()
        await snapshot.scan()
        looking = False
        await counter
        assert turns >= len(snapshot._stats) // 5 - 1
        assert snapshot.info(os.getpid())["pid"] == os.getpid()
    asyncio.run(main())


def test_cpu_is_the_share_of_a_core_since_the_previous_look():
    busy = subprocess.Popen([PYTHON, "-c", "while True: pass"])
    try:
        assert Snapshot().info(busy.pid)["cpu"] == 0.0  # no earlier look
        time.sleep(0.5)  # an interval to measure over, not a wait for a state
        cpu = Snapshot().info(busy.pid)["cpu"]
        # a core at most; at least a share of one even on a loaded machine
        assert 10.0 < cpu <= 105.0
    finally:
        busy.kill()
        busy.wait()
