"""A process for the resource watcher: holds `megabytes` of memory; on
SIGUSR1 appends its pid to `marker` (if given)."""
import os
import signal
import sys
import time

megabytes = int(sys.argv[1])
marker = sys.argv[2] if len(sys.argv) > 2 else None


def usr1(signum, frame):
    with open(marker, "a") as handle:
        handle.write("%d\n" % os.getpid())


if marker:
    # before the memory grows: the watcher may signal as soon as it has
    signal.signal(signal.SIGUSR1, usr1)
block = bytearray(megabytes << 20)
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page: resident, not just reserved
while True:
    time.sleep(3600)
