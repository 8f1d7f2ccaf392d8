"""Stopping processes: signals through the before_signal hook, the graceful
stop of one process, and the wait for its own children."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
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
        if timeout is None:
            timeout = self.graceful_timeout
        timeout = max(0.0, float(timeout)) if graceful else 0.0
        if signum != signal.SIGKILL:
            if timeout > 0:
                try:
                    async with asyncio.timeout(timeout):
                        await asyncio.shield(process.exit_future)
                except TimeoutError:
                    logger.info("watcher %s: pid %d still alive after %.1fs, sending SIGKILL",
                                self.name, process.pid, timeout)
            if not process.exit_future.done():
                try:
                    process.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
        await asyncio.shield(process.exit_future)
        if tree:
            await _wait_gone(tree, timeout)
        return process.returncode

    async def _kill_all(self, processes, graceful=True, force=False):
        """Stop processes together; returns those a hook kept running."""
        if processes:
            await asyncio.gather(*(self.kill_process(p, graceful, force=force)
                                   for p in processes))
        return [p for p in processes if p.returncode is None and not p.stopping]


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
