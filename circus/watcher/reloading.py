"""Reloading: new processes in place of old ones, for a reload (all at
once or one by one) and for max_age recycling; an old process goes only
once its successor is ready."""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from circus.watcher.spawning import spawn_pause

if TYPE_CHECKING:
    from circus.process import Process

logger = logging.getLogger("circus")


class ProcessReplacing:
    """Watcher's side of reloads and recycling. Expects the Watcher's
    options, live_processes, spawn_process, kill_process, _kill_all,
    send_signal, notify_event, _operation_lock, _spawn_task and _start."""

    async def _reload(self, graceful: bool = True, sequential: bool = False) -> bool:
        if not self.is_active():
            return await self._start()
        started = time.monotonic()
        if self.prereload_fn is not None:
            self.prereload_fn(self)
        old = self.live_processes()
        if self.send_hup:
            for process in old:
                # (ignore: a spawned process has a pid)
                self.send_signal(process.pid, signal.SIGHUP)  # type: ignore[arg-type]
        elif sequential:
            for process in old:
                if not self.is_active():
                    break  # gave up (max_retry) on the way
                await self._replace(process, graceful)
        else:
            # new processes first; an old one goes only once a new one is ready
            new = []
            for _ in range(self.numprocesses):
                if not self.is_active():
                    break  # the new processes fail: max_retry gave up
                spawned = self.spawn_process()
                if spawned is not None:
                    new.append(spawned)
                if self.warmup_delay > 0:
                    await asyncio.sleep(self.warmup_delay)
                else:
                    await spawn_pause(self._loop)
            ready = await self._wait_ready(new)
            kept = await self._kill_all(old[:ready], graceful)
            if kept:
                # a hook kept old processes: as many new ones go instead
                await self._kill_all([p for p in new if p.returncode is None][-len(kept):],
                                     force=True)
        logger.info("watcher %s reloaded", self.name)
        self.notify_event("reload", {"duration": round(time.monotonic() - started, 6)})
        return True

    async def _replace(self, process: Process, graceful: bool = True) -> bool:
        """Start a successor to process and stop process once it is ready."""
        successor = self.spawn_process()
        if successor is None or not await self._wait_ready([successor]):
            return False
        if await self.kill_process(process, graceful) is None:
            # a hook kept the old one: the successor is the one to go
            await self.kill_process(successor, force=True)
            return False
        return True

    async def _wait_ready(self, processes: Sequence[Process]) -> int:
        """How many of processes became ready (each has its own timeout)."""
        if not processes:
            return 0
        # (a watcher's processes are made with its loop: they have both futures)
        # only the pending ones are waited on: gather would run a callback
        # per future, ten thousand in one loop turn after a big start
        pending = [p.ready_future for p in processes
                   if not p.ready_future.done()]  # type: ignore[union-attr]
        if pending:
            await asyncio.wait(pending)  # type: ignore[type-var]
        failed = [p for p in processes if not p.ready_future.result()]  # type: ignore[union-attr]
        # the ones that failed are being killed: let the caller see them gone
        if failed:
            await asyncio.wait([p.exit_future for p in failed])  # type: ignore[type-var]
        return len(processes) - len(failed)

    async def _recycle(self, process: Process) -> None:
        async with self._operation_lock():
            if not self.is_active() or process.stopping or process.returncode is not None:
                return
            logger.debug("watcher %s: pid %d reached max_age", self.name, process.pid)
            successor = self.spawn_process()
            if successor is None or not await self._wait_ready([successor]):
                # keep the old one serving; try again a little later
                if process.returncode is None and self.is_active():
                    process.add_timer(max(1.0, self.max_age_variance),
                                      lambda: self._spawn_task(self._recycle(process)))
                return
            # from here on the successor counts in its place
            process.begin_stop()
            self.notify_event("recycle", {"process_id": process.wid, "process_pid": process.pid,
                                          "age": round(process.age(), 3),
                                          "successor_pid": successor.pid})
        # the replacement is serving: the old one may take its time to go
        if await self.kill_process(process) is None:
            # a hook kept the old one: the replacement goes instead
            await self.kill_process(successor, force=True)
