"""Keeping a watcher's processes: spawn, readiness, reaping, replacing the
dead, and giving up after max_retry failed starts."""
from __future__ import annotations

import asyncio
import errno
import heapq
import logging
import random
import signal
import subprocess
import time
import weakref

from circus import fdtable, heap
from circus.errors import describe
from circus.process import Process
from circus.states import WatcherState
from circus.watcher.output import describe_exit, last_stderr, with_stderr
from circus.watcher.streams import PipeReader

logger = logging.getLogger("circus")

# a process that exits sooner than this after its spawn failed to start
MIN_UPTIME = 1.0
# the longest pause between two attempts when starts keep failing
MAX_BACKOFF = 5.0


# circusd answers commands while it spawns many processes: spawning takes
# at most SPAWN_SLICE seconds of the loop (a spawn takes about a
# millisecond, more with many processes running), then lets the loop turn
# without spawning, at least SPAWN_YIELDS times and then for as long as it
# has callbacks ready (up to SPAWN_YIELDS_MAX): a request takes several
# turns (its frame is read, the controller's task wakes, the command's
# task runs, the reply goes), so one that arrives during a spawn is
# answered before the next. An idle turn costs some 20 microseconds.
SPAWN_SLICE = 0.001
SPAWN_YIELDS = 3
# spawns sent to the spawner before the first answer is read
SPAWN_BATCH = 4
SPAWN_YIELDS_MAX = 32


class _Slice:
    """The time spent spawning since a loop last had a turn, shared by every
    watcher of that loop (a start of several, respawns after a mass exit)."""
    started = weakref.WeakKeyDictionary()  # loop -> when this turn's spawns began

    @classmethod
    def spent(cls, loop):
        """True when this turn of the loop has spawned long enough."""
        now = time.monotonic()
        started = cls.started.get(loop)
        if started is None:
            cls.started[loop] = started = now
            # runs first at the loop's next turn, before anything put off now
            loop.call_soon(cls.started.pop, loop, None)
        return now - started > SPAWN_SLICE


async def spawn_pause(loop, must_yield=False):
    """Await between two spawns: yields to the loop once the slice is spent
    (or at once: must_yield)."""
    if _Slice.spent(loop) or must_yield:
        for turn in range(1, SPAWN_YIELDS_MAX + 1):
            await asyncio.sleep(0)
            # asyncio's queue of ready callbacks (read only; not public API)
            if turn >= SPAWN_YIELDS and not getattr(loop, "_ready", None):
                break


# a start of this many processes keeps the heap out of the garbage
# collector's full collections while it runs: see circus.heap
HEAP_FREEZE_FROM = 1000


def retry_delay(failures: int) -> float:
    """No pause for the first retry, then a doubling one: a crash loop is
    answered at once but cannot spin the loop when max_retry is -1."""
    if failures <= 1:
        return 0.0
    return min(0.05 * 2 ** (failures - 2), MAX_BACKOFF)


class ProcessKeeping:
    """Watcher's side of its processes' lives. Expects the Watcher's
    options, processes, state and _set_state, reaper, _loop, _lock,
    _failures, _gave_up, call_hook, notify_event, kill_process and _stop."""

    def _next_wid(self) -> int:
        """The smallest wid no process of the watcher holds: every wid up to
        _wid_top is held or free (in the _free_wids heap)."""
        if self._free_wids:
            return heapq.heappop(self._free_wids)
        self._wid_top += 1
        return self._wid_top

    def _release_wid(self, wid: int) -> None:
        heapq.heappush(self._free_wids, wid)

    def spawn_process(self) -> Process | None:
        """Start one process now; None when it could not be started."""
        begun = self._begin_spawn()
        return None if begun is None else self._finish_spawn(begun)

    def _begin_spawns(self, count: int) -> tuple[list[Process], bool]:
        """Send count spawns to the spawner (circus.spawner), to be
        finished later (_finish_spawn); True with them if one of them could
        not be sent (the failure is counted)."""
        begun = []
        for _ in range(count):
            process = self._begin_spawn()
            if process is None:
                return begun, True
            begun.append(process)
        return begun, False

    def _begin_spawn(self) -> Process | None:
        if not self.call_hook("before_spawn"):
            self._start_failed("hook before_spawn refused the spawn", "refused")
            return None
        wid = self._next_wid()
        try:
            try:
                process = self._new_process(wid, capture=True)
            except OSError as exc:
                process = self._without_capture(wid, exc)
            else:
                self._captured_since[process] = self._exhaustions
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            self._spawn_error(wid, exc)
            return None
        return process

    def _without_capture(self, wid, exc):
        """Out of file descriptors: a process without its output kept is
        better than no process. Re-raises any other error."""
        if exc.errno not in (errno.EMFILE, errno.ENFILE) or self.debug:
            raise exc
        process = self._new_process(wid, capture=False)
        if not self._uncaptured:
            logger.warning("watcher %s: out of file descriptors (%s): processes "
                           "start without their output kept", self.name, exc.strerror)
        self._uncaptured = True
        self._exhaustions += 1
        return process

    def _cancel_spawn(self, process: Process) -> None:
        """A spawn begun before the watcher stopped: the child may exist
        already; it is killed and reaped unannounced (no spawn, no reap)."""
        self._release_wid(process.wid)
        self._captured_since.pop(process, None)
        try:
            if process.finish_spawn(fallback=False) is None:
                return
        except (OSError, ValueError, KeyError, subprocess.SubprocessError):
            return
        self.reaper.watch(process.pid, lambda pid, status: process.reaped(status))
        self.reaper.check_soon([process.pid])
        process.begin_stop()
        process.send_signal(signal.SIGKILL)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()

    def _spawn_error(self, wid, exc):
        self._release_wid(wid)
        self._start_failed("cannot start %r: %s" % (self.cmd, describe(exc)), "error")

    def _finish_spawn(self, process: Process) -> Process | None:
        # begun with its output kept, and no shortage of descriptors since
        captured = self._captured_since.pop(process, None) == self._exhaustions
        try:
            try:
                process.finish_spawn()
            except OSError as exc:  # the descriptors a Popen in circusd needs
                process = self._without_capture(process.wid, exc)
                captured = False
                process.finish_spawn()
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            self._spawn_error(process.wid, exc)
            return None
        if captured:
            self._uncaptured = False  # say so again if they run out again
        pid = process.pid
        self.processes[pid] = process
        self.reaper.watch(pid, self._on_exit)
        process.pipe_readers = tuple(
            PipeReader(self, process, pipe, name, stream)
            for name, pipe, stream in (("stdout", process.stdout, self.stdout_stream),
                                       ("stderr", process.stderr, self.stderr_stream))
            if pipe is not None)
        logger.debug("watcher %s: spawned pid %d (wid %d)", self.name, pid, process.wid)
        self.notify_event("spawn", {"process_id": process.wid, "process_pid": pid})
        self._arm_ready(process)
        self._arm_uptime(process)
        self._arm_max_age(process)
        self.call_hook("after_spawn", pid=pid)
        return process

    def _new_process(self, wid, capture):
        """capture: pipe stdout and stderr to circusd whatever the streams,
        to keep their last lines (circus.watcher.output). In debug mode
        children write where circusd writes instead (its terminal, as a
        terminal: a pipe would change how they buffer and colour)."""
        def target(stream):
            if stream is not None or (capture and not self.debug):
                return subprocess.PIPE
            return None if self.debug else subprocess.DEVNULL
        process = Process(
            wid, self.cmd, args=self.args, working_dir=self.working_dir,
            shell=self.shell, uid=self.uid, gid=self.gid, env=self.process_env(),
            rlimits=self.rlimits, executable=self.executable, use_fds=self.use_sockets,
            watcher=self, pass_fds=self.sockets.fds() if self.sockets else (),
            variables=self.variables, stdout=target(self.stdout_stream),
            stderr=target(self.stderr_stream), die_with_parent=self.die_with_circusd,
            loop=self._loop, spawn=False)
        process.begin_spawn()
        return process

    # --- readiness --------------------------------------------------------
    def _arm_ready(self, process):
        if self.ready == "notify":
            process.add_timer(self.ready_timeout, self._ready_timed_out, process)
        elif self.ready_delay > 0:
            process.add_timer(self.ready_delay, self.process_ready, process.pid)
        else:
            self.process_ready(process.pid)

    def process_ready(self, pid: int) -> None:
        """The process said it is ready (sd_notify READY=1) or its delay ran out."""
        process = self.processes.get(pid)
        if process is not None and process.mark_ready():
            self.notify_event("ready", {"process_pid": pid, "process_id": process.wid})

    def _ready_timed_out(self, process):
        if process.ready_future.done() or process.returncode is not None:
            return
        logger.warning("watcher %s: pid %d not ready after %.1fs, killing it",
                       self.name, process.pid, self.ready_timeout)
        process.readiness_failed()
        self.notify_event("ready_timeout", {"process_pid": process.pid,
                                            "timeout": self.ready_timeout})
        # not a stop a hook may refuse: the process failed to start
        self._spawn_task(self.kill_process(process, force=True))

    def _arm_uptime(self, process):
        # a process that has run for MIN_UPTIME started fine: forget failures
        def started():
            if process.returncode is None:
                self._failures = 0
        process.add_timer(MIN_UPTIME, started)

    def _arm_max_age(self, process):
        if self.max_age <= 0:
            return
        # drawn once per process, so siblings never expire together
        lifetime = self.max_age + random.uniform(0, self.max_age_variance)
        process.schedule_expiry(lifetime, lambda: self._spawn_task(self._recycle(process)))

    # --- failures ---------------------------------------------------------
    def _start_failed(self, reason, cause, stderr=None, pid=None):
        """A start that failed: cause is "refused" (a hook), "error" (the
        spawn itself) or "early_exit" (the process died before it started
        well); published as spawn_failure. stderr: the last lines of the
        process that failed (pid), for the log and the give-up event."""
        self._failures += 1
        logger.error("%s", with_stderr("watcher %s: %s (failure %d)"
                                       % (self.name, reason, self._failures),
                                       self.name, pid, stderr))
        self.notify_event("spawn_failure", {"reason": reason, "cause": cause,
                                            "failures": self._failures})
        if 0 <= self.max_retry < self._failures:
            self._give_up("%s; gave up after %d retries" % (reason, self.max_retry), stderr)

    def _give_up(self, reason, stderr=None):
        """max_retry failed starts: stop the watcher. The state turns to
        stopping at once, so nothing respawns meanwhile; the stop itself
        waits for the lock (whichever locked operation comes first finishes
        it, see _stop)."""
        if not self.is_running():
            return
        self._gave_up = reason
        logger.error("watcher %s: stopping: %s", self.name, reason)
        event = {"reason": reason, "max_retry": self.max_retry}
        if stderr is not None:
            event["stderr"] = stderr
        self.notify_event("max_retry", event)
        self._set_state(WatcherState.STOPPING)
        self._spawn_task(self._locked(self._finish_give_up))

    async def _finish_give_up(self):
        if self.state is WatcherState.STOPPING:
            await self._stop(force=True)

    async def _locked(self, func, *args, **kwargs):
        async with self._lock:
            return await func(*args, **kwargs)

    # --- keeping numprocesses ---------------------------------------------
    def _missing(self) -> int:
        """How many processes to spawn to have numprocesses (counting them
        walks every process: once per batch of spawns, never per spawn)."""
        return self.numprocesses - len(self.live_processes())

    async def _spawn_missing(self):
        """Spawn until numprocesses are live, honouring warmup_delay; the
        loop gets its turns (spawn_pause). Called with the lock held, so
        nothing else spawns meanwhile; deaths during a pause are counted
        again at the end of the batch."""
        spawned = []
        while self.is_running():
            missing = self._missing()
            if missing <= 0:
                break
            if await self._spawn_count(missing, spawned) and self.is_running():
                await asyncio.sleep(retry_delay(self._failures))
        return spawned

    async def _spawn_count(self, count, spawned):
        if count < HEAP_FREEZE_FROM:
            return await self._spawn_batches(count, spawned)
        with heap.frozen():
            return await self._spawn_batches(count, spawned)

    async def _spawn_batches(self, count, spawned):
        """Spawn count processes into spawned; True when one failed (the
        rest is left for a new count). A spawn hook or a warmup_delay
        spawns one at a time, start to end; otherwise in batches, two of
        them in flight (_pipelined)."""
        fdtable.reserve(fdtable.PER_PROCESS * count)  # one growth, not one per doubling
        if self.warmup_delay > 0 or "before_spawn" in self.hooks \
                or "after_spawn" in self.hooks:
            return await self._one_by_one(count, spawned)
        self.reaper.spawns_in_flight += 1
        try:
            return await self._pipelined(count, spawned)
        finally:
            self.reaper.spawns_in_flight -= 1

    async def _one_by_one(self, count, spawned):
        while count > 0:
            if not self.is_running():
                return False  # a give-up (or a stop) during a pause ends the batch
            process = self.spawn_process()
            if process is None:
                return True
            spawned.append(process)
            count -= 1
            if self.warmup_delay > 0 and count:
                await asyncio.sleep(self.warmup_delay)
            else:
                await spawn_pause(self._loop)
        return False

    async def _pipelined(self, count, spawned):
        """The spawner (circus.spawner) works on a batch while the loop has
        its turn and while circusd finishes the batch before: a batch is
        sent, the loop turns, then the previous batch is finished, once the
        spawner has answered it (the loop free until then)."""
        in_flight = []  # batches begun and not finished, oldest first
        failed = False
        try:
            while True:
                if count > 0 and not failed and self.is_running():
                    batch, failed = self._begin_spawns(min(count, SPAWN_BATCH))
                    count -= len(batch)
                    if batch:
                        in_flight.append(batch)
                if not in_flight:
                    return failed
                await spawn_pause(self._loop, must_yield=True)
                if not self.is_running():
                    return False  # stopped (a give-up) meanwhile: no more spawns
                if len(in_flight) == 1 and count > 0 and not failed:
                    continue  # one more batch in flight first
                oldest = in_flight[0]
                await oldest[-1].spawn_answered()  # answers come in order
                if not self.is_running():
                    return False
                done = []
                while oldest:
                    process = self._finish_spawn(oldest.pop(0))
                    if process is None:
                        failed = True
                    else:
                        done.append(process)
                in_flight.pop(0)
                spawned.extend(done)
                self.reaper.check_soon([p.pid for p in done])
                heap.frozen.freeze()
        finally:
            # cancelled, stopped or failed: a child that may exist already
            # is killed, not left untracked
            for batch in in_flight:
                for process in batch:
                    self._cancel_spawn(process)

    def _on_exit(self, pid, wait_status):
        process = self.processes.get(pid)
        if process is None:
            return
        self.call_hook("before_reap", pid=pid)
        del self.processes[pid]
        self._release_wid(process.wid)
        expected = process.stopping
        # its readiness timed out (it was killed for it) before it exited
        not_ready = process.ready_future.done() and process.ready_future.result() is False
        for reader in process.pipe_readers:
            reader.drain()  # what it wrote last, before its exit is told
        process.reaped(wait_status)
        code = process.returncode
        logger.debug("watcher %s: pid %d exited with %s", self.name, pid, code)
        start_failure = not expected and (process.age() < MIN_UPTIME
                                          or process.ready_future.result() is False)
        failed = not_ready or start_failure or (not expected and code != 0)
        event = {"process_id": process.wid, "process_pid": pid, "exit_code": code}
        stderr = None
        if failed:
            stderr = event["stderr"] = last_stderr(process)
            self._record_exit(process, stderr)
        process.output = None  # the rings of the dead go now
        self.notify_event("reap", event)
        self.call_hook("after_reap", pid=pid, exit_code=code)
        what = describe_exit(pid, code, process.age())
        if expected or not self.is_running():
            if not_ready and stderr:
                logger.warning("%s", with_stderr("watcher %s: %s (it was not ready in time)"
                                                 % (self.name, what), self.name, pid, stderr))
            return
        # an unexpected death
        if start_failure:
            self._start_failed(what, "early_exit", stderr, pid)
            if not self.is_running():
                return
        elif failed:
            logger.warning("%s", with_stderr("watcher %s: %s" % (self.name, what),
                                             self.name, pid, stderr))
        if not self.respawn:
            return
        if self._replace_later is not None:
            return  # a replacement of the dead is scheduled already
        # the reaper hands over every exited child of a turn in one go: they
        # are counted and replaced together, at the next turn at the earliest
        self._replace_later = self._loop.call_later(retry_delay(self._failures),
                                                    self._replace_dead)

    def _replace_dead(self, missing=None):
        """Respawn after an unexpected death; each replacement is published
        as respawn (after its spawn). missing: what is left to spawn of a
        count made at an earlier turn (a slice of a crash storm)."""
        self._replace_later = None
        if not self.is_running() or (self._lock and self._lock.locked()):
            # the operation holding the lock spawns what it needs itself;
            # check again once it is done
            if self.is_running():
                self._spawn_task(self._locked(self._respawn_missing))
            return
        carried = missing is not None
        if missing is None:
            missing = self._missing()
        else:
            # a count of an earlier turn: a decr (or a kill) since may have
            # lowered what is wanted; counting every process, those on
            # their way out too, can only under-count (the end counts again)
            missing = min(missing, self.numprocesses - len(self.processes))
        for left in range(missing, 0, -1):
            if not self.is_running():
                return
            if _Slice.spent(self._loop):
                # many died at once: the rest at the loop's next turn,
                # without counting every process again at each slice
                self._replace_later = self._loop.call_soon(self._replace_dead, left)
                return
            process = self.spawn_process()
            if process is None:
                if self.is_running():
                    self._replace_later = self._loop.call_later(retry_delay(self._failures),
                                                                self._replace_dead)
                return
            self._respawned(process)
        if carried:
            # deaths during the slices scheduled nothing (this was): count once more
            self._replace_later = self._loop.call_soon(self._replace_dead)

    async def _respawn_missing(self):
        for process in await self._spawn_missing():
            self._respawned(process)

    def _respawned(self, process):
        self.notify_event("respawn", {"process_id": process.wid, "process_pid": process.pid})
