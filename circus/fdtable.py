"""Room in circusd's descriptor table, made before the descriptors come.

The kernel grows a process's descriptor table by doubling it. In a process
with threads (circusd has ZeroMQ's) each growth waits for an RCU grace
period inside whatever call needed the room: measured 8-16 ms a growth
here, in the pipe2 of a spawn, with circusd's loop blocked. A start of ten
thousand processes (two pipes each) grows the table nine times on the way.
Growing it once to the size wanted costs one wait, and none at all before
circusd has a thread.
"""
import fcntl
import os
import resource

# what circusd holds for each process: its two output pipes, and a pidfd
# where an arbiter runs off the main thread, without SIGCHLD (circus.reaper)
PER_PROCESS = 3


def reserve(count):
    """Make the table hold count more descriptors than are open now,
    within the soft RLIMIT_NOFILE; best effort (a failure only means the
    kernel grows the table later, as it would have)."""
    global _reached
    try:
        probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # out of descriptors: no room to make
    try:
        # the kernel hands out the lowest free number: about how many are open
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        target = probe + count
        if soft != resource.RLIM_INFINITY:
            target = min(target, soft - 1)
        if target < _reached_size():
            return  # most calls (a respawn's): no need to read /proc
        size = table_size()
        if target >= size:
            # F_DUPFD takes the lowest free number at or above target: it
            # never replaces an open descriptor, and makes the table cover it
            os.close(fcntl.fcntl(probe, fcntl.F_DUPFD_CLOEXEC, target))
            size = target + 1
        _reached = (os.getpid(), size)
    except OSError:
        pass
    finally:
        os.close(probe)


# (pid, size) the table has reached: it never shrinks, but a fork's child
# gets a table of its own, possibly smaller
_reached = (0, 0)


def _reached_size():
    pid, size = _reached
    return size if pid == os.getpid() else 0


def table_size():
    """The descriptor table's size (FDSize), 0 where /proc does not tell."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"FDSize:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
