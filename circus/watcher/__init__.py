"""A watcher runs N processes of one command and keeps them alive.

Everything here runs on one asyncio loop. Operations that change the set of
processes (start, stop, reload, incr, decr, recycling) are serialised by a
per-watcher lock; a crashed process is replaced at the loop's next turn
after its reap (later after repeated failed starts: retry_delay), with
every other death of that turn; without the lock, unless an operation
holds it, which then spawns what is missing once it is done.

The watcher's lifecycle is circus.states.WatcherState, changed only by
Watcher._set_state along WATCHER_TRANSITIONS. The package splits by concern:
hooks (names, calls, vetoes: the user documentation of hooks is there),
spawning (spawn, readiness, reaping, give-up), stopping (signals, the
graceful stop of a process), reloading (new processes for old: reload,
max_age recycling), streams (children's pipes) and output (what is kept
of what they wrote: the last lines of each, and of the failed exits).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from circus.errors import HookError  # noqa: F401  (re-exported)
from circus.options.facts import READY_MODES
from circus.states import WATCHER_TRANSITIONS, WatcherState, check_transition
from circus.stream import get_stream
from circus.tasks import BackgroundTasks
from circus.util import to_bool, to_gid, to_signum, to_uid
from circus.watcher.hooks import HOOK_NAMES, HookCalls, resolve_hooks
from circus.watcher.output import OutputKeeping
from circus.watcher.reloading import ProcessReplacing
from circus.watcher.spawning import MAX_BACKOFF, MIN_UPTIME, ProcessKeeping, retry_delay
from circus.watcher.stopping import ProcessStopping

if TYPE_CHECKING:
    from circus.process import Process
    from circus.procstats import Snapshot
    from circus.reaper import Reaper
    from circus.sockets import CircusSockets

__all__ = ["Watcher", "WatcherState", "HOOK_NAMES", "HookError", "MIN_UPTIME", "MAX_BACKOFF",
           "READY_MODES", "retry_delay"]

logger = logging.getLogger("circus")



class Watcher(HookCalls, ProcessKeeping, ProcessStopping, ProcessReplacing, OutputKeeping):
    """Class managing a list of processes for a given command."""

    # the options as a config file wrote them (an options.Section, set by
    # arbiter.build_watcher); None for a watcher a program or a command added
    config: Mapping[str, Any] | None = None

    def __init__(self, name: str, cmd: str, args: str | Sequence[object] | None = None,
                 numprocesses: int = 1, warmup_delay: float = 0.0,
                 working_dir: str | None = None, shell: bool = False,
                 uid: int | str | None = None, max_retry: int = 5, gid: int | str | None = None,
                 send_hup: bool = False, env: Mapping[str, str] | None = None,
                 stopped: bool = True, graceful_timeout: float = 30.0,
                 prereload_fn: Callable[[Watcher], object] | None = None,
                 rlimits: Mapping[str, int | str] | None = None, executable: str | None = None,
                 stdout_stream: Mapping[str, Any] | None = None,
                 stderr_stream: Mapping[str, Any] | None = None, stream_backend: str = "thread",
                 priority: int = 0, singleton: bool = False, use_sockets: bool = False,
                 copy_env: bool = False, copy_path: bool = False, max_age: float = 0,
                 max_age_variance: float = 30,
                 hooks: Mapping[str, Callable[..., object] | str] | None = None,
                 stop_signal: int | str = signal.SIGTERM, stop_children: bool = False,
                 autostart: bool = True, respawn: bool = True, ready: str = "spawn",
                 ready_delay: float = 0.0, ready_timeout: float = 30.0,
                 max_numprocesses: int | None = None, die_with_circusd: bool | int = True,
                 loop: asyncio.AbstractEventLoop | None = None, **options: Any) -> None:
        self.name = name
        self.cmd = cmd
        self.args = args
        self.singleton = to_bool(singleton)
        self.numprocesses = 1 if self.singleton and numprocesses > 1 else int(numprocesses)
        # None: the arbiter's max_numprocesses (circus.options.limits)
        self.max_numprocesses = None if max_numprocesses is None else int(max_numprocesses)
        self.warmup_delay = float(warmup_delay)
        self.working_dir = working_dir
        self.shell = to_bool(shell)
        self.uid = to_uid(uid)
        self.gid = to_gid(gid)
        self.max_retry = int(max_retry)
        self.send_hup = to_bool(send_hup)
        self.env = dict(env or {})
        self.graceful_timeout = float(graceful_timeout)
        self.prereload_fn = prereload_fn
        self.rlimits = dict(rlimits or {})
        self.executable = executable
        self.stdout_stream_conf = dict(stdout_stream or {})
        self.stderr_stream_conf = dict(stderr_stream or {})
        self.stream_backend = stream_backend
        self.priority = int(priority)
        self.use_sockets = to_bool(use_sockets)
        self.copy_env = to_bool(copy_env)
        self.copy_path = to_bool(copy_path)
        self.max_age = float(max_age or 0)
        self.max_age_variance = float(max_age_variance or 0)
        self.stop_signal = to_signum(stop_signal)
        self.stop_children = to_bool(stop_children)
        self.autostart = to_bool(autostart)
        self.respawn = to_bool(respawn)
        # false: its processes survive a crash (or kill -9) of circusd; a
        # signal number: the one they get then (circusd's own processes)
        self.die_with_circusd: bool | int = (
            die_with_circusd if isinstance(die_with_circusd, int)
            and not isinstance(die_with_circusd, bool) else to_bool(die_with_circusd))
        if ready not in READY_MODES:
            raise ValueError("ready must be one of %s, not %r" % (", ".join(READY_MODES), ready))
        self.ready = ready
        self.ready_delay = float(ready_delay)
        self.ready_timeout = float(ready_timeout)
        self.options = options
        self.hooks = resolve_hooks(hooks)
        self.stdout_stream = get_stream(self.stdout_stream_conf)
        self.stderr_stream = get_stream(self.stderr_stream_conf)

        self._state = WatcherState.STOPPED
        self.processes: dict[int, Process] = {}  # pid -> Process, in spawn order
        # the Arbiter that attached it (not imported: the watcher knows nothing above it)
        self.arbiter: Any = None
        self.sockets: CircusSockets | None = None
        self.reaper: Reaper | None = None
        self.debug = False
        # address given to children when ready = notify
        self.notify_socket: str | None = None
        self._loop = loop
        self._lock: asyncio.Lock | None = None
        # wids free below the highest given (see ProcessKeeping._next_wid)
        self._free_wids: list[int] = []
        self._wid_top = 0
        # failed starts in a row (max_retry), and why the watcher last gave up
        self._failures = 0
        self._gave_up: str | None = None
        # why it last stopped, if the stop said (a give-up, a plugin...)
        self.stop_reason: str | None = None
        self._init_output()
        # the last spawn had to go without pipes: out of file descriptors
        self._uncaptured = False
        # out-of-descriptors episodes, and the count when each process begun
        # with its output kept began (spawning.py: warn once per episode)
        self._exhaustions = 0
        self._captured_since: dict[Any, int] = {}
        # the replacement of dead processes put off to the loop's next turn
        self._replace_later: asyncio.Handle | None = None
        self._publish: Callable[[str, dict[str, Any]], object] | None = None
        self._tasks = BackgroundTasks(lambda: "watcher %s" % self.name)
        # close() has begun: the stops on the way ignore hook vetoes
        self._closing = False
        # why the last stop, or stop of a process, was refused by a hook
        self.refusal: str | None = None

    # --- wiring -----------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop, reaper: Reaper,
               publish: Callable[[str, dict[str, Any]], object] | None = None,
               sockets: CircusSockets | None = None, arbiter: Any = None) -> None:
        """Called by the owner (the Arbiter) before the watcher runs."""
        self._loop = loop
        self.reaper = reaper
        self._publish = publish
        self.sockets = sockets
        self.arbiter = arbiter
        self._lock = asyncio.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @property
    def lock(self) -> asyncio.Lock | None:
        return self._lock

    def _operation_lock(self) -> asyncio.Lock:
        """The lock every operation takes; RuntimeError before attach()."""
        if self._lock is None:
            raise RuntimeError("watcher %s is not attached to a loop (see attach)" % self.name)
        return self._lock

    def notify_event(self, topic: str, msg: Mapping[str, Any]) -> None:
        """Publish watcher.<name>.<topic> on the event channel."""
        if self._publish is not None:
            msg = dict(msg)
            msg.setdefault("time", time.time())
            self._publish("watcher.%s.%s" % (self.name, topic), msg)

    def _spawn_task(self, coro: Coroutine[Any, Any, object]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro, self._loop)

    # --- state ------------------------------------------------------------
    @property
    def state(self) -> WatcherState:
        return self._state

    @property
    def status(self) -> WatcherState:
        """The state as the wire says it ("active"...): a str."""
        return self._state

    def _set_state(self, new: WatcherState, reason: str | None = None) -> None:
        """The only writer of the state: checks the edge against
        WATCHER_TRANSITIONS and publishes the event the change has (start,
        stop with its reason). An illegal edge raises IllegalTransition: it
        is a bug, and going on would report a state the processes are not in."""
        old = self._state
        check_transition(WATCHER_TRANSITIONS, old, new, "watcher %s" % self.name)
        self._state = new
        logger.debug("watcher %s: %s -> %s", self.name, old, new)
        if new is WatcherState.STOPPED:
            self.stop_reason = reason
        if new is WatcherState.ACTIVE and old is WatcherState.STARTING:
            self.notify_event("start", {})
        elif new is WatcherState.STOPPED:
            self.notify_event("stop", {"reason": reason} if reason else {})

    def is_starting(self) -> bool:
        return self._state is WatcherState.STARTING

    def is_active(self) -> bool:
        return self._state is WatcherState.ACTIVE

    def is_running(self) -> bool:
        """Starting or active: processes are kept (respawned) and counted."""
        return self._state in (WatcherState.STARTING, WatcherState.ACTIVE)

    def is_stopping(self) -> bool:
        return self._state is WatcherState.STOPPING

    def is_stopped(self) -> bool:
        return self._state is WatcherState.STOPPED

    def is_closed(self) -> bool:
        return self._state is WatcherState.CLOSED

    # --- introspection ----------------------------------------------------
    def live_processes(self) -> list[Process]:
        """Processes that count toward numprocesses (not on their way out)."""
        return [p for p in self.processes.values() if not p.stopping]

    def get_process(self, pid: int | str) -> Process | None:
        return self.processes.get(int(pid))

    @property
    def pids(self) -> list[int]:
        return list(self.processes)

    def variables(self) -> dict[str, object]:
        """What $(circus.X) may name in cmd, args and env, besides wid and env."""
        values: dict[str, object] = {
            k: v for k, v in vars(self).items()
            if not k.startswith("_") and isinstance(v, (str, int, float, bool))}
        values.update({k.lower(): v for k, v in self.options.items()
                       if isinstance(v, (str, int, float, bool))})
        if self.sockets is not None:
            values.update(self.sockets.variables())
        return values

    def process_env(self) -> dict[str, str]:
        env = dict(os.environ) if self.copy_env else {}
        if self.copy_path:
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.update(self.env)
        if self.ready == "notify" and self.notify_socket:
            env["NOTIFY_SOCKET"] = self.notify_socket
        return env

    # --- operations (each takes the lock) ---------------------------------
    async def start(self) -> bool:
        async with self._operation_lock():
            return await self._start()

    async def _start(self) -> bool:
        if self.is_closed():
            logger.info("watcher %s not started: it was removed", self.name)
            return False
        if self.is_stopping():
            await self._stop(force=True)  # a give-up under way: finish it first
        if self.is_active():
            return True
        if self.arbiter is not None and getattr(self.arbiter, "stopping", False):
            # circusd is quitting: whatever asks (a plugin's restart...),
            # nothing may start that the shutdown would not stop
            logger.info("watcher %s not started: circusd is stopping", self.name)
            return False
        if not self.call_hook("before_start"):
            return False
        self._failures = 0
        self._gave_up = None
        self.last_exits.clear()
        self._set_state(WatcherState.STARTING)
        # started means ready: watchers of lower priority start after this one serves
        await self._wait_ready(await self._spawn_missing())
        if not self.is_starting():
            return False  # gave up after max_retry meanwhile
        self._set_state(WatcherState.ACTIVE)
        logger.info("watcher %s started", self.name)
        self.call_hook("after_start")
        return True

    async def stop(self, graceful: bool = True, reason: str | None = None) -> bool:
        """Stop every process. Asked of a watcher that is stopped already,
        it changes nothing and publishes `already_stopped` (not `stop`: no
        state changed), so a plugin that means to start the watcher again
        (flapping) learns that somebody wants it down. reason, if given, is
        carried by the event."""
        async with self._operation_lock():
            if self.is_stopped() or self.is_closed():
                self.notify_event("already_stopped", {"reason": reason} if reason else {})
                return True
            return await self._stop(graceful=graceful, reason=reason)

    async def _stop(self, graceful: bool = True, reason: str | None = None,
                    force: bool = False) -> bool:
        """False when a hook refused (see circus.watcher.hooks); the watcher
        is then active and self.refusal says why."""
        if self.is_stopped() or self.is_closed():
            return True
        giving_up = self.is_stopping()
        if giving_up:
            # the only stopping state a locked operation can find: max_retry
            # began a stop that nobody may refuse; this one completes it
            force = True
            reason = reason or self._gave_up
        force = force or not self._vetoes_apply()
        self.refusal = None
        if not self.call_hook("before_stop"):
            if not force:
                self.refusal = "hook before_stop refused the stop"
                logger.warning("watcher %s not stopped: %s; its processes keep running",
                               self.name, self.refusal)
                return False
            logger.warning("watcher %s: hook before_stop refused the stop; ignored, "
                           "the watcher must go", self.name)
        if not giving_up:
            self._set_state(WatcherState.STOPPING)
        kept = await self._kill_all(list(self.processes.values()), graceful, force=force)
        if kept:
            # a before_signal veto: what was refused keeps running, and the
            # watcher with it
            self._set_state(WatcherState.ACTIVE)
            self.refusal = "hook before_signal refused to stop pid %s" % ", ".join(
                str(p.pid) for p in kept)
            logger.warning("watcher %s not stopped: %s", self.name, self.refusal)
            await self._spawn_missing()
            return False
        self._set_state(WatcherState.STOPPED, reason=reason)
        if self._replace_later is not None:
            # a replacement (or its backoff) scheduled before the stop must
            # not hold back those of the next start
            self._replace_later.cancel()
            self._replace_later = None
        logger.info("watcher %s stopped%s", self.name, ": " + reason if reason else "")
        self.call_hook("after_stop")
        return True

    async def restart(self) -> bool:
        async with self._operation_lock():
            if not await self._stop():
                return False
            return await self._start()

    async def reload(self, graceful: bool = True, sequential: bool = False) -> bool:
        async with self._operation_lock():
            return await self._reload(graceful, sequential)

    def _set_count(self, numprocesses: int) -> None:
        """The one writer of numprocesses once the watcher runs: a count that
        grows passes the arbiter's check first (LimitError), with no await
        between the check and the change."""
        count = 1 if self.singleton and numprocesses > 1 else int(numprocesses)
        check = getattr(self.arbiter, "check_numprocesses", None)
        if count > self.numprocesses and check is not None:
            check(self.name, count, self.max_numprocesses)
        self.numprocesses = count

    async def incr(self, nb: int = 1) -> int:
        async with self._operation_lock():
            self._set_count(self.numprocesses + int(nb))
            if self.is_active():
                await self._wait_ready(await self._spawn_missing())
            return self.numprocesses

    async def decr(self, nb: int = 1) -> int:
        async with self._operation_lock():
            self._set_count(max(0, self.numprocesses - int(nb)))
            if self.is_active():
                await self._reduce()
            return self.numprocesses

    async def _reduce(self) -> None:
        live = self.live_processes()
        extra = len(live) - self.numprocesses
        if extra > 0:
            # the oldest go first: they are the nearest to max_age anyway
            await self._kill_all(live[:extra])

    async def set_numprocesses(self, numprocesses: int) -> int:
        async with self._operation_lock():
            self._set_count(numprocesses)
            if self.is_active():
                await self._reduce()
                await self._wait_ready(await self._spawn_missing())
            return self.numprocesses

    async def signal(self, signum: int, pid: int | str | None = None, children: bool = False,
                     recursive: bool = False, child_pid: int | str | None = None) -> list[int]:
        """Send signum to one process or all of them, their children, or both."""
        targets = [self.processes[int(pid)]] if pid is not None else self.live_processes()
        for process in targets:
            if child_pid is not None:
                process.send_signal_child(int(child_pid), signum)
            elif children:
                process.send_signal_children(signum)
            else:
                if recursive:
                    process.send_signal_children(signum)
                # (ignores: a spawned process has a pid)
                self.send_signal(process.pid, signum)  # type: ignore[arg-type]
        return [p.pid for p in targets]  # type: ignore[misc]


    async def kill(self, pid: int | str, graceful: bool = True, signum: int | None = None,
                   graceful_timeout: float | None = None) -> int | None:
        """Stop one process; an active watcher then replaces it, as after a crash."""
        process = self.processes[int(pid)]
        code = await self.kill_process(process, graceful, signum, graceful_timeout)
        if self.is_running():
            async with self._operation_lock():
                await self._spawn_missing()
        return code

    async def close(self) -> None:
        """Stop everything and release streams; the watcher is then closed
        for good: it refuses to start again (its arbiter has let it go)."""
        self._closing = True
        if self._lock is None:
            self._release()
            return
        async with self._operation_lock():
            await self._stop(force=True)
            self._release()

    def _release(self) -> None:
        if self.is_closed():
            return  # closed already, by an earlier close()
        self._set_state(WatcherState.CLOSED)
        self._tasks.cancel()
        for stream in (self.stdout_stream, self.stderr_stream):
            if stream is not None and hasattr(stream, "close"):
                stream.close()

    # --- information ------------------------------------------------------
    def info(self, snapshot: Snapshot | None = None) -> dict[int, dict[str, Any] | str]:
        """{pid: info} of every process. One /proc snapshot serves them all
        (pass one to share it between watchers): per-process psutil calls
        scan the whole system for children each, O(N^2)."""
        if snapshot is None:
            from circus.procstats import Snapshot
            snapshot = Snapshot()
        return {pid: snapshot.info(pid, p.started) for pid, p in list(self.processes.items())}

    def stop_report(self) -> dict[str, Any]:
        """For a stopped watcher, what status and stats add: why it stopped
        (stop_reason) and its failed exits since its last start, newest
        last (last_exits); {} otherwise."""
        report: dict[str, Any] = {}
        if self.is_stopped():
            if self.stop_reason:
                report["stop_reason"] = self.stop_reason
            if self.last_exits:
                report["last_exits"] = list(self.last_exits)
        return report

    def process_info(self, pid: int | str,
                     snapshot: Snapshot | None = None) -> dict[str, Any] | str:
        process = self.processes[int(pid)]
        if snapshot is None:
            from circus.procstats import Snapshot
            snapshot = Snapshot()
        return snapshot.info(process.pid, process.started)

    def __repr__(self) -> str:
        return "<Watcher %s %s %d/%d>" % (self.name, self.status,
                                          len(self.live_processes()), self.numprocesses)
