"""How the connections of one wrk run are spread over a server's processes.

Counted once, halfway through the run: the established TCP connections on
the server's port (/proc/net/tcp), each given to the process that holds its
socket (/proc/PID/fd). wrk opens its connections when it starts and keeps
them alive, so that one count holds for the whole run. With more workers
than CPUs, how evenly the kernel hands them out moves requests/s by several
percent from one run to the next, for every server alike.
"""
import os
import threading

ESTABLISHED = "01"


def established_inodes(port):
    """Socket inodes of the established connections whose local port is port."""
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            table = open(path)
        except OSError:
            continue
        with table:
            next(table, None)  # the header
            for line in table:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def socket_inodes(pid):
    found = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def connections_per_process(port, pids):
    """One count per process of pids (those with none included), largest first."""
    established = established_inodes(port)
    return sorted((len(socket_inodes(pid) & established) for pid in pids), reverse=True)


class Sampler:
    """Takes connections_per_process(port, pids()) once, delay seconds after
    the with block starts; counts stays None if the block ends first."""

    def __init__(self, port, pids, delay):
        self.port = port
        self.pids = pids
        self.delay = delay
        self.counts = None
        self._timer = None

    def _sample(self):
        self.counts = connections_per_process(self.port, self.pids())

    def __enter__(self):
        self._timer = threading.Timer(self.delay, self._sample)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        self._timer.join()


def spelled(counts):
    """[26, 24] -> '26/24'."""
    return "/".join(str(n) for n in counts) if counts else "n/a"
