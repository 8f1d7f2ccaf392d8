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
