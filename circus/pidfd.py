"""Learn on an asyncio loop that a process has exited, without polling
(a leaf: circusd-stats and circus-plugin use it to follow the circusd that
started them, whatever killed it).

A pidfd (Linux 5.3+) becomes readable when its process exits. Where there is
none (older kernels, another OS), only a process already gone is noticed.
"""
import os


def call_when_gone(loop, pid, callback):
    """Call callback() once, on loop, when process pid exits. Returns a
    function that stops watching (and releases the pidfd)."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        if not _alive(pid):
            handle = loop.call_soon(callback)
            return handle.cancel
        return lambda: None
    watching = True

    def stop():
        nonlocal watching
        if watching:
            watching = False
            loop.remove_reader(fd)
            os.close(fd)

    def gone():
        stop()
        callback()
    loop.add_reader(fd, gone)
    return stop


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True
