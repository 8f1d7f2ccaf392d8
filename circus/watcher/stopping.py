"""Stopping processes: signals through the before_signal hook, the graceful
stop of one process, and the wait for its own children."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from circus.process import Process

logger = logging.getLogger("circus")


class ProcessStopping:
    """Watcher's side of signals and stops. Expects name, processes,
    stop_signal, stop_children, graceful_timeout, refusal, call_hook,
    _vetoes_apply and notify_event."""

    refusal: str | None

    def send_signal(self, pid: int | str, signum: int, force: bool = False) -> bool:
        """Send signum unless the before_signal hook refuses it (False);
        force: the hook is told but cannot refuse."""
        process = self.processes[int(pid)]
        if not self.call_hook("before_signal", pid=process.pid, signum=signum):
            if not force:
                logger.warning("watcher %s: signal %s not sent to pid %d: hook before_signal "
                               "refused it", self.name, _signame(signum), process.pid)
                return False
            logger.warning("watcher %s: hook before_signal refused signal %s to pid %d; "
                           "ignored, the process must go", self.name, _signame(signum),
                           process.pid)
        try:
            process.send_signal(signum)
        except ProcessLookupError:
            pass
        self.call_hook("after_signal", pid=process.pid, signum=signum)
        return True

    async def kill_process(self, process: Process, graceful: bool = True,
                           signum: int | None = None, timeout: float | None = None,
                           force: bool = False) -> int | None:
        """stop_signal (or signum), up to graceful_timeout (or timeout), then
        SIGKILL; returns the exit code. A timeout of 0 sends SIGKILL right
        after the stop signal: no grace at all, as the option's name says
        (a process that must never be killed wants a long graceful_timeout).

        When the before_signal hook refuses the stop signal (and force is
        false and vetoes apply, see circus.watcher.hooks) nothing is done:
        the process keeps running, is not stopping, and None is returned."""
        if process.returncode is not None:
            return process.returncode
        stop = self._send_stop(process, graceful, signum, force)
        if stop is None:
            return None
        await self._await_stops([stop], graceful, timeout)
        return process.returncode

    async def _kill_all(self, processes, graceful=True, force=False):
        """Stop processes together (what kill_process does to each, the
        signals first, then one wait for them all); returns those a hook
        kept running."""
        stops = []
        with _children_exits_held(self._no_signal_hooks()):
            for process in processes:
                if process.returncode is None:
                    stop = self._send_stop(process, graceful, None, force)
                    if stop is not None:
                        stops.append(stop)
        if stops:
            await self._await_stops(stops, graceful, None)
        return [p for p in processes if p.returncode is None and not p.stopping]

    def _no_signal_hooks(self):
        """No user code runs between the signals: a hook might start a
        process, which would inherit SIGCHLD blocked."""
        return not (self.hooks.get("before_signal") or self.hooks.get("after_signal"))

    def _send_stop(self, process, graceful, signum, force):
        """The first half of a stop: (process, signal, its children to wait
        for), or None when the before_signal hook refused it."""
        force = force or not self._vetoes_apply()
        tree = process.children(recursive=True) if self.stop_children else []
        signum = (signum or self.stop_signal) if graceful else signal.SIGKILL
        if not process.stopping:  # a recycling or a readiness timeout began it already
            process.begin_stop()
        if not self.send_signal(process.pid, signum, force=force):
            process.stop_refused()
            self.refusal = "hook before_signal refused to stop pid %d" % process.pid
            return None
        self.notify_event("kill", {"process_id": process.wid, "process_pid": process.pid})
        _signal_pids(tree, signum)
        return process, signum, tree

    async def _await_stops(self, stops, graceful, timeout):
        """The second half: wait up to the timeout for the stop signals to
        work, SIGKILL what is left, wait for every exit, then for the
        children of stop_children."""
        if timeout is None:
            timeout = self.graceful_timeout
        timeout = max(0.0, float(timeout)) if graceful else 0.0
        exits = [process.exit_future for process, _, _ in stops]
        graceful_ones = [p.exit_future for p, signum, _ in stops if signum != signal.SIGKILL]
        if graceful_ones and timeout > 0:
            # (asyncio.wait leaves the futures alone when it times out or is cancelled)
            _, late = await asyncio.wait(graceful_ones, timeout=timeout)
            if late:
                pids = [str(p.pid) for p, _, _ in stops if p.exit_future in late]
                logger.info("watcher %s: pid %s still alive after %.1fs, sending SIGKILL",
                            self.name, ", ".join(pids[:10]) + (" and %d more" % (len(pids) - 10)
                                                               if len(pids) > 10 else ""),
                            timeout)
        with _children_exits_held(self._no_signal_hooks()):
            for process, signum, _ in stops:
                if signum != signal.SIGKILL and not process.exit_future.done():
                    try:
                        process.send_signal(signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        pending = [future for future in exits if not future.done()]
        if pending:
            await asyncio.wait(pending)
        trees = [tree for _, _, tree in stops if tree]
        if trees:
            await asyncio.gather(*(_wait_gone(tree, timeout) for tree in trees))


class _children_exits_held:
    """SIGCHLD held back while signals go out to many processes: the exits
    then arrive as one pending signal once the last kill() is sent, instead
    of interrupting the loop of kill() calls once per child (the C handler,
    the loop's wakeup write and the Python-level handler, a few microseconds
    each: tens of milliseconds at 10,000 processes). Only when enabled (no
    user hook runs meanwhile) and on the main thread, which the signal
    handler belongs to."""

    def __init__(self, enabled=True):
        self._enabled = enabled

    def __enter__(self):
        self._held = (self._enabled and threading.current_thread() is threading.main_thread()
                      and signal.SIGCHLD not in signal.pthread_sigmask(signal.SIG_BLOCK, ()))
        if self._held:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        return self

    def __exit__(self, *exc):
        if self._held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _signame(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _signal_pids(pids, signum):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


async def _wait_gone(pids, timeout):
    """Wait for processes that are not our children (a worker's own children)
    to exit, through pidfds on the loop; SIGKILL what outlives timeout."""
    loop = asyncio.get_running_loop()
    waiters = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        future = loop.create_future()
        loop.add_reader(fd, lambda f=future: f.done() or f.set_result(None))
        waiters.append((fd, future))
    try:
        if waiters:
            done, pending = await asyncio.wait([f for _, f in waiters], timeout=timeout or 0.01)
            for fd, future in waiters:
                if not future.done():
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        for fd, _ in waiters:
            loop.remove_reader(fd)
            os.close(fd)
