"""A process for the resource watcher: holds `megabytes` of memory; on
SIGUSR1 appends its pid to `marker` (if given)."""
import os
import signal
import sys
import time

megabytes = int(sys.argv[1])
marker = sys.argv[2] if len(sys.argv) > 2 else None
block = bytearray(megabytes << 20)
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page: resident, not just reserved


def usr1(signum, frame):
    with open(marker, "a") as handle:
        handle.write("%d\n" % os.getpid())


if marker:
    signal.signal(signal.SIGUSR1, usr1)
while True:
    time.sleep(3600)
