"""Keeping a watcher's processes: spawn, readiness, reaping, replacing the
dead, and giving up after max_retry failed starts."""
import asyncio
import heapq
import logging
import random
import subprocess
import time

from circus.errors import describe
from circus.process import Process
from circus.states import WatcherState
from circus.watcher.streams import read_stream

logger = logging.getLogger("circus")

# a process that exits sooner than this after its spawn failed to start
MIN_UPTIME = 1.0
# the longest pause between two attempts when starts keep failing
MAX_BACKOFF = 5.0
# the longest stretch of spawning (a spawn takes about half a millisecond)
# before circusd's loop gets its turn: a command that arrives meanwhile
# waits no longer than that
SPAWN_SLICE = 0.002
# turns of the loop given at each pause: answering a command takes three
# (its socket's reader, the serving task, the command's own task)
PAUSE_TURNS = 3
# a crash replaced straight from the reap callback; more missing processes
# than this (a crash storm) are spawned by a task that pauses
INLINE_REPLACEMENTS = 4


def retry_delay(failures):
    """No pause for the first retry, then a doubling one: a crash loop is
    answered at once but cannot spin the loop when max_retry is -1."""
    if failures <= 1:
        return 0.0
    return min(0.05 * 2 ** (failures - 2), MAX_BACKOFF)


class Pacer:
    """Spawning in a loop, `await pacer.step()` after each spawn gives
    circusd's loop its turn once SPAWN_SLICE has passed since the last one."""

    def __init__(self):
        self._until = time.monotonic() + SPAWN_SLICE

    async def step(self):
        if time.monotonic() < self._until:
            return
        for _ in range(PAUSE_TURNS):
            await asyncio.sleep(0)
        self._until = time.monotonic() + SPAWN_SLICE


class ProcessKeeping:
    """Watcher's side of its processes' lives. Expects the Watcher's
    options, processes, state and _set_state, reaper, _loop, _lock,
    _failures, _gave_up, call_hook, notify_event, kill_process and _stop."""

    def _next_wid(self):
        """The smallest wid no process of the watcher holds: every wid up to
        _wid_top is held or free (in the _free_wids heap)."""
        if self._free_wids:
            return heapq.heappop(self._free_wids)
        self._wid_top += 1
        return self._wid_top

    def _release_wid(self, wid):
        heapq.heappush(self._free_wids, wid)

    def spawn_process(self):
        """Start one process now; None when it could not be started."""
        if not self.call_hook("before_spawn"):
            self._start_failed("hook before_spawn refused the spawn")
            return None
        # debug: children write where circusd writes; otherwise nowhere
        default_out = None if self.debug else subprocess.DEVNULL
        wid = self._next_wid()
        try:
            process = Process(
                wid, self.cmd, args=self.args, working_dir=self.working_dir,
                shell=self.shell, uid=self.uid, gid=self.gid, env=self.process_env(),
                rlimits=self.rlimits, executable=self.executable, use_fds=self.use_sockets,
                watcher=self, pass_fds=self.sockets.fds() if self.sockets else (),
                variables=self.variables,
                stdout=subprocess.PIPE if self.stdout_stream else default_out,
                stderr=subprocess.PIPE if self.stderr_stream else default_out,
                loop=self._loop)
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            self._release_wid(wid)
            self._start_failed("cannot start %r: %s" % (self.cmd, describe(exc)))
            return None
        pid = process.pid
        self.processes[pid] = process
        self.reaper.watch(pid, self._on_exit)
        if self.stdout_stream:
            read_stream(self, process, process.stdout, "stdout", self.stdout_stream)
        if self.stderr_stream:
            read_stream(self, process, process.stderr, "stderr", self.stderr_stream)
        logger.debug("watcher %s: spawned pid %d (wid %d)", self.name, pid, process.wid)
        self.notify_event("spawn", {"process_id": process.wid, "process_pid": pid})
        self._arm_ready(process)
        self._arm_uptime(process)
        self._arm_max_age(process)
        self.call_hook("after_spawn", pid=pid)
        return process

    # --- readiness --------------------------------------------------------
    def _arm_ready(self, process):
        if self.ready == "notify":
            process.add_timer(self.ready_timeout, self._ready_timed_out, process)
        elif self.ready_delay > 0:
            process.add_timer(self.ready_delay, self.process_ready, process.pid)
        else:
            self.process_ready(process.pid)

    def process_ready(self, pid):
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
    def _start_failed(self, reason):
        self._failures += 1
        logger.error("watcher %s: %s (failure %d)", self.name, reason, self._failures)
        if 0 <= self.max_retry < self._failures:
            self._give_up("%s; gave up after %d retries" % (reason, self.max_retry))

    def _give_up(self, reason):
        """max_retry failed starts: stop the watcher. The state turns to
        stopping at once, so nothing respawns meanwhile; the stop itself
        waits for the lock (whichever locked operation comes first finishes
        it, see _stop)."""
        if not self.is_running():
            return
        self._gave_up = reason
        logger.error("watcher %s: stopping: %s", self.name, reason)
        self.notify_event("max_retry", {"reason": reason, "max_retry": self.max_retry})
        self._set_state(WatcherState.STOPPING)
        self._spawn_task(self._locked(self._finish_give_up))

    async def _finish_give_up(self):
        if self.state is WatcherState.STOPPING:
            await self._stop(force=True)

    async def _locked(self, func, *args, **kwargs):
        async with self._lock:
            return await func(*args, **kwargs)

    # --- keeping numprocesses ---------------------------------------------
    def _missing(self):
        """How many processes to spawn to have numprocesses (counting them
        walks every process: once per batch of spawns, never per spawn)."""
        return self.numprocesses - len(self.live_processes())

    async def _spawn_missing(self):
        """Spawn until numprocesses are live, honouring warmup_delay; the
        loop gets its turn every SPAWN_SLICE. Called with the lock held, so
        nothing else spawns meanwhile; deaths during a pause are counted
        again at the end of the batch."""
        spawned = []
        while self.is_running():
            missing = self._missing()
            if missing <= 0:
                break
            pacer = Pacer()
            for left in range(missing - 1, -1, -1):
                process = self.spawn_process()
                if process is None:
                    if self.is_running():
                        await asyncio.sleep(retry_delay(self._failures))
                    break
                spawned.append(process)
                if not self.is_running():
                    break
                if self.warmup_delay > 0 and left:
                    await asyncio.sleep(self.warmup_delay)
                else:
                    await pacer.step()
        return spawned

    def _on_exit(self, pid, wait_status):
        process = self.processes.get(pid)
        if process is None:
            return
        self.call_hook("before_reap", pid=pid)
        del self.processes[pid]
        self._release_wid(process.wid)
        expected = process.stopping
        process.reaped(wait_status)
        logger.debug("watcher %s: pid %d exited with %s", self.name, pid, process.returncode)
        self.notify_event("reap", {"process_id": process.wid, "process_pid": pid,
                                   "exit_code": process.returncode})
        self.call_hook("after_reap", pid=pid, exit_code=process.returncode)
        if expected or not self.is_running():
            return
        # an unexpected death
        if process.age() < MIN_UPTIME or process.ready_future.result() is False:
            self._start_failed("process %d exited with %s after %.2fs"
                               % (pid, process.returncode, process.age()))
            if not self.is_running():
                return
        if not self.respawn:
            return
        delay = retry_delay(self._failures)
        if delay:
            self._loop.call_later(delay, self._replace_dead)
        elif not self._replacing:
            # the reaper hands over every exited child in one go: the deaths
            # of one turn of the loop are counted and replaced together
            self._replacing = True
            self._loop.call_soon(self._replace_dead)

    def _replace_dead(self):
        self._replacing = False
        if not self.is_running():
            return
        missing = self._missing()
        if missing <= 0:
            return
        if (self._lock and self._lock.locked()) or missing > INLINE_REPLACEMENTS:
            # the operation holding the lock spawns what it needs itself and
            # this task checks again once it is done; a crash storm is
            # replaced by the task too, which pauses for the loop
            self._spawn_task(self._locked(self._spawn_missing))
            return
        for _ in range(missing):
            if not self.is_running():
                return
            if self.spawn_process() is None:
                if self.is_running():
                    self._loop.call_later(retry_delay(self._failures), self._replace_dead)
                return
