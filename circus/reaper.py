"""Route the exit of every child to its owner, driven by SIGCHLD.

One waitid() peek tells which child has exited without reaping it, so a
child that belongs to someone else in this process (a subprocess a hook ran)
is left for its owner, and ours are found in O(1) through the pid map.
"""
import logging
import os
import signal
import threading

from circus.spawner import spawner

logger = logging.getLogger("circus")


class Reaper:
    def __init__(self, loop, reap_strangers=False):
        self.loop = loop
        # as PID 1 (a container's main process) orphans are re-parented to
        # us and nobody else will ever collect them
        self.reap_strangers = reap_strangers
        self._owners = {}
        self._pidfds = {}
        # signal handlers live in the main thread only; elsewhere (an arbiter
        # run in a background thread) each child gets a pidfd on the loop
        self._by_signal = threading.current_thread() is threading.main_thread()
        self._started = False
        # spawns sent to the spawner whose pids are not watched yet: a
        # zombie nobody owns may be one of them, not a stranger
        self.spawns_in_flight = 0

    def start(self):
        if self._by_signal and not self._started:
            self.loop.add_signal_handler(signal.SIGCHLD, self.reap)
            quiet_wakeups()
        self._started = True

    def close(self):
        if self._by_signal and self._started:
            self.loop.remove_signal_handler(signal.SIGCHLD)
        for pid in list(self._pidfds):
            self._forget_pidfd(pid)
        self._started = False

    def watch(self, pid, callback):
        """callback(pid, wait_status) runs on the loop once pid has exited.
        A pid whose SIGCHLD may have come before this call needs
        check_soon() too."""
        self._owners[pid] = callback
        if not self._by_signal:
            fd = os.pidfd_open(pid)  # readable at once if it has exited
            self._pidfds[pid] = fd
            self.loop.add_reader(fd, self._reap_pid, pid)

    def check_soon(self, pids):
        """Look at the loop's next turn whether pids (watched) have exited
        already: their SIGCHLD came and went while they were not known yet
        (a spawn finished after a loop turn, circus.spawner)."""
        if self._by_signal and self._started and pids:
            self.loop.call_soon(self._reap_pids, pids)

    def _reap_pids(self, pids):
        for pid in pids:
            if pid in self._owners:
                self._reap_pid(pid)

    def __len__(self):
        return len(self._owners)

    def reap(self):
        while self._owners or self.reap_strangers:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            if info.si_pid not in self._owners and spawner().reap_if_mine(info.si_pid):
                continue
            if (info.si_pid not in self._owners and self.reap_strangers
                    and not self.spawns_in_flight):
                self._reap_pid(info.si_pid)
                continue
            if info.si_pid not in self._owners:
                # the first zombie is not ours: check ours one by one instead
                for pid in list(self._owners):
                    self._reap_pid(pid)
                return
            self._reap_pid(info.si_pid)

    def _reap_pid(self, pid):
        try:
            waited, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # reaped behind our back (os.wait elsewhere); report it as lost
            waited, status = pid, 255 << 8
        if not waited:
            return
        callback = self._owners.pop(pid, None)
        self._forget_pidfd(pid)
        if callback is None:
            return
        try:
            callback(pid, status)
        except Exception:
            logger.exception("error while handling the exit of pid %d", pid)

    def _forget_pidfd(self, pid):
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            self.loop.remove_reader(fd)
            os.close(fd)


def quiet_wakeups():
    """Hundreds of children exiting at once fill asyncio's signal wakeup
    socket, and Python then prints a BlockingIOError traceback to stderr
    (circusd's log) for every SIGCHLD that does not fit. The loop is awake
    already and one reap() collects every exit: nothing is lost but the
    noise. asyncio sets the wakeup fd again (loud) at each
    add_signal_handler: call this after the last one. Main thread only."""
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
