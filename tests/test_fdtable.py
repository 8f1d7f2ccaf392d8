"""circus.fdtable: circusd's descriptor table grown once, ahead of the
descriptors of a big start (each growth in a threaded process waits for an
RCU grace period, with the loop blocked)."""
import json
import os
import resource
import subprocess
import sys

import pytest

from circus import fdtable
from support import ROOT

PROGRAM = """
import json, os, resource
from circus import fdtable
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
result = {"size_before": fdtable.table_size()}
resource.setrlimit(resource.RLIMIT_NOFILE, (1500, hard))
fdtable.reserve(10 ** 6)  # bounded by the soft limit, no error
result["size_bounded"] = fdtable.table_size()
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
keep = os.dup2(1, 300)  # an open descriptor inside the range reserved
result["open_before"] = sorted(os.listdir("/proc/self/fd"))
fdtable.reserve(5000)
result["size_after"] = fdtable.table_size()
result["open_after"] = sorted(os.listdir("/proc/self/fd"))
result["kept"] = os.fstat(300).st_ino == os.fstat(1).st_ino
print(json.dumps(result))
"""


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 6000,
                    reason="the hard RLIMIT_NOFILE leaves no room for 5000 descriptors")
def test_reserve_grows_the_table_and_touches_no_descriptor():
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), timeout=30)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["size_before"] < 1500 <= result["size_bounded"] <= 2048  # rounded up
    assert result["size_bounded"] < 5000 <= result["size_after"]
    assert result["open_after"] == result["open_before"] and result["kept"]


def test_table_size_reads_this_process():
    assert fdtable.table_size() >= len(os.listdir("/proc/self/fd"))
