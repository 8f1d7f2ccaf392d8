"""A watcher runs N processes of one command and keeps them alive.

Everything here runs on one asyncio loop. Operations that change the set of
processes (start, stop, reload, incr, decr, recycling) are serialised by a
per-watcher lock; a crashed process is replaced straight from the reap
callback, which never waits.

Hooks
-----
hooks maps a hook name (HOOK_NAMES) to a callable, or the dotted name of
one, called as hook(watcher=, arbiter=, hook_name=, **details). A hook that
returns False, or raises, says "do not go on":

- before_start: the watcher is not started.
- before_spawn: that process is not spawned; it counts as a failed start
  (max_retry).
- before_stop: the stop is refused. The processes keep running, the
  watcher stays active, `stop` answers an error saying so and the log has
  a warning.
- before_signal (details pid, signum): that signal is not sent. When the
  signal is the stop signal of a stop, reload, decr, kill or max_age
  recycling, the veto covers the whole stop of that process: it is not
  marked as stopping, no SIGKILL follows after graceful_timeout, and it
  keeps running as one of the watcher's processes. A refused `stop` leaves
  the watcher active (an error reply); a reload or recycling keeps the old
  process and stops the replacement it had started for it, so the watcher
  keeps numprocesses; after a refused decr the watcher runs more processes
  than numprocesses. Once a stop signal has been sent, the SIGKILL that
  follows graceful_timeout is not asked for again.
- the after_* and before_reap hooks only observe: their result is ignored.

Vetoes are honoured for what an operator or a plugin asks. They are ignored
(with a warning) where obeying would leave processes nobody manages or
wedge the watcher: when circusd quits, when a watcher is removed or
replaced by a config reload, when a watcher gives up after max_retry and
when a process that never got ready is killed.

States
------
The watcher's lifecycle is circus.states.WatcherState, changed only by
Watcher._set_state along WATCHER_TRANSITIONS.
"""
import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import time

from circus.errors import HookError, describe  # noqa: F401  (HookError re-exported)
from circus.process import Process
from circus.states import WATCHER_TRANSITIONS, WatcherState, check_transition
from circus.stream import get_stream
from circus.tasks import BackgroundTasks
from circus.util import resolve_name, to_gid, to_signum, to_uid

logger = logging.getLogger("circus")

HOOK_NAMES = ("before_start", "after_start", "before_spawn", "after_spawn",
              "before_stop", "after_stop", "before_signal", "after_signal",
              "before_reap", "after_reap")

# a process that exits sooner than this after its spawn failed to start
MIN_UPTIME = 1.0
# the longest pause between two attempts when starts keep failing
MAX_BACKOFF = 5.0

READY_MODES = ("spawn", "notify")




def retry_delay(failures):
    """No pause for the first retry, then a doubling one: a crash loop is
    answered at once but cannot spin the loop when max_retry is -1."""
    if failures <= 1:
        return 0.0
    return min(0.05 * 2 ** (failures - 2), MAX_BACKOFF)


class Watcher:
    """Class managing a list of processes for a given command."""

    def __init__(self, name, cmd, args=None, numprocesses=1, warmup_delay=0.0,
                 working_dir=None, shell=False, uid=None, max_retry=5, gid=None,
                 send_hup=False, env=None, stopped=True, graceful_timeout=30.0,
                 prereload_fn=None, rlimits=None, executable=None, stdout_stream=None,
                 stderr_stream=None, stream_backend="thread", priority=0,
                 singleton=False, use_sockets=False, copy_env=False, copy_path=False,
                 max_age=0, max_age_variance=30, hooks=None, stop_signal=signal.SIGTERM,
                 stop_children=False, autostart=True, respawn=True, ready="spawn",
                 ready_delay=0.0, ready_timeout=30.0, loop=None, **options):
        self.name = name
        self.cmd = cmd
        self.args = args
        self.singleton = bool(singleton)
        self.numprocesses = 1 if self.singleton and numprocesses > 1 else int(numprocesses)
        self.warmup_delay = float(warmup_delay)
        self.working_dir = working_dir
        self.shell = bool(shell)
        self.uid = to_uid(uid)
        self.gid = to_gid(gid)
        self.max_retry = int(max_retry)
        self.send_hup = bool(send_hup)
        self.env = dict(env or {})
        self.graceful_timeout = float(graceful_timeout)
        self.prereload_fn = prereload_fn
        self.rlimits = dict(rlimits or {})
        self.executable = executable
        self.stdout_stream_conf = dict(stdout_stream or {})
        self.stderr_stream_conf = dict(stderr_stream or {})
        self.stream_backend = stream_backend
        self.priority = int(priority)
        self.use_sockets = bool(use_sockets)
        self.copy_env = bool(copy_env)
        self.copy_path = bool(copy_path)
        self.max_age = float(max_age or 0)
        self.max_age_variance = float(max_age_variance or 0)
        self.stop_signal = to_signum(stop_signal)
        self.stop_children = bool(stop_children)
        self.autostart = bool(autostart)
        self.respawn = bool(respawn)
        if ready not in READY_MODES:
            raise ValueError("ready must be one of %s, not %r" % (", ".join(READY_MODES), ready))
        self.ready = ready
        self.ready_delay = float(ready_delay)
        self.ready_timeout = float(ready_timeout)
        self.options = options
        self.hooks = {}
        for hook_name, target in (hooks or {}).items():
            if hook_name not in HOOK_NAMES:
                raise ValueError("unknown hook %r (one of %s)" % (hook_name, ", ".join(HOOK_NAMES)))
            self.hooks[hook_name] = resolve_name(target)
        self.stdout_stream = get_stream(self.stdout_stream_conf)
        self.stderr_stream = get_stream(self.stderr_stream_conf)

        self._state = WatcherState.STOPPED
        self.processes = {}  # pid -> Process, in spawn order
        self.arbiter = None
        self.sockets = None
        self.reaper = None
        self.debug = False
        self.notify_socket = None  # address given to children when ready = notify
        self._loop = loop
        self._lock = None
        # failed starts in a row (max_retry), and why the watcher last gave up
        self._failures = 0
        self._gave_up = None
        self._publish = None
        self._tasks = BackgroundTasks(lambda: "watcher %s" % self.name)
        # close() has begun: the stops on the way ignore hook vetoes
        self._closing = False
        # why the last stop, or stop of a process, was refused by a hook
        self.refusal = None

    # --- wiring -----------------------------------------------------------
    def attach(self, loop, reaper, publish=None, sockets=None, arbiter=None):
        """Called by the owner (the Arbiter) before the watcher runs."""
        self._loop = loop
        self.reaper = reaper
        self._publish = publish
        self.sockets = sockets
        self.arbiter = arbiter
        self._lock = asyncio.Lock()

    @property
    def loop(self):
        return self._loop

    @property
    def lock(self):
        return self._lock

    def notify_event(self, topic, msg):
        """Publish watcher.<name>.<topic> on the event channel."""
        if self._publish is not None:
            msg = dict(msg)
            msg.setdefault("time", time.time())
            self._publish("watcher.%s.%s" % (self.name, topic), msg)

    def _spawn_task(self, coro):
        return self._tasks.spawn(coro, self._loop)

    # --- state ------------------------------------------------------------
    @property
    def state(self):
        return self._state

    @property
    def status(self):
        """The state as the wire says it ("active"...): a str."""
        return self._state

    def _set_state(self, new, reason=None):
        """The only writer of the state: checks the edge against
        WATCHER_TRANSITIONS and publishes the event the change has (start,
        stop with its reason). An illegal edge raises IllegalTransition: it
        is a bug, and going on would report a state the processes are not in."""
        old = self._state
        check_transition(WATCHER_TRANSITIONS, old, new, "watcher %s" % self.name)
        self._state = new
        logger.debug("watcher %s: %s -> %s", self.name, old, new)
        if new is WatcherState.ACTIVE and old is WatcherState.STARTING:
            self.notify_event("start", {})
        elif new is WatcherState.STOPPED:
            self.notify_event("stop", {"reason": reason} if reason else {})

    def is_starting(self):
        return self._state is WatcherState.STARTING

    def is_active(self):
        return self._state is WatcherState.ACTIVE

    def is_running(self):
        """Starting or active: processes are kept (respawned) and counted."""
        return self._state in (WatcherState.STARTING, WatcherState.ACTIVE)

    def is_stopping(self):
        return self._state is WatcherState.STOPPING

    def is_stopped(self):
        return self._state is WatcherState.STOPPED

    def is_closed(self):
        return self._state is WatcherState.CLOSED

    # --- hooks ------------------------------------------------------------
    def call_hook(self, hook_name, **kwargs):
        """Run a hook; False (or an exception) means: do not go on."""
        hook = self.hooks.get(hook_name)
        if hook is None:
            return True
        try:
            result = hook(watcher=self, arbiter=self.arbiter, hook_name=hook_name, **kwargs)
        except Exception:
            logger.exception("watcher %s: hook %s failed", self.name, hook_name)
            return False
        if result is False:
            logger.info("watcher %s: hook %s returned False", self.name, hook_name)
        return result is not False

    def _vetoes_apply(self):
        """Hooks may refuse stops and signals, except while the watcher
        goes away for good (circusd quits, rm, replaced by reloadconfig)."""
        if self._closing:
            return False
        return not (self.arbiter is not None and getattr(self.arbiter, "stopping", False))

    # --- introspection ----------------------------------------------------
    def live_processes(self):
        """Processes that count toward numprocesses (not on their way out)."""
        return [p for p in self.processes.values() if not p.stopping]

    def get_process(self, pid):
        return self.processes.get(int(pid))

    @property
    def pids(self):
        return list(self.processes)

    def variables(self):
        """What $(circus.X) may name in cmd, args and env, besides wid and env."""
        values = {k: v for k, v in vars(self).items()
                  if not k.startswith("_") and isinstance(v, (str, int, float, bool))}
        values.update({k.lower(): v for k, v in self.options.items()
                       if isinstance(v, (str, int, float, bool))})
        if self.sockets is not None:
            values.update(self.sockets.variables())
        return values

    def process_env(self):
        env = dict(os.environ) if self.copy_env else {}
        if self.copy_path:
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.update(self.env)
        if self.ready == "notify" and self.notify_socket:
            env["NOTIFY_SOCKET"] = self.notify_socket
        return env

    # --- spawning ---------------------------------------------------------
    def _next_wid(self):
        used = {p.wid for p in self.processes.values()}
        wid = 1
        while wid in used:
            wid += 1
        return wid

    def spawn_process(self):
        """Start one process now; None when it could not be started."""
        if not self.call_hook("before_spawn"):
            self._start_failed("hook before_spawn refused the spawn")
            return None
        # debug: children write where circusd writes; otherwise nowhere
        default_out = None if self.debug else subprocess.DEVNULL
        try:
            process = Process(
                self._next_wid(), self.cmd, args=self.args, working_dir=self.working_dir,
                shell=self.shell, uid=self.uid, gid=self.gid, env=self.process_env(),
                rlimits=self.rlimits, executable=self.executable, use_fds=self.use_sockets,
                watcher=self, pass_fds=self.sockets.fds() if self.sockets else (),
                variables=self.variables(),
                stdout=subprocess.PIPE if self.stdout_stream else default_out,
                stderr=subprocess.PIPE if self.stderr_stream else default_out,
                loop=self._loop)
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            self._start_failed("cannot start %r: %s" % (self.cmd, describe(exc)))
            return None
        pid = process.pid
        self.processes[pid] = process
        self.reaper.watch(pid, self._on_exit)
        if self.stdout_stream:
            self._read_stream(process, process.stdout, "stdout", self.stdout_stream)
        if self.stderr_stream:
            self._read_stream(process, process.stderr, "stderr", self.stderr_stream)
        logger.debug("watcher %s: spawned pid %d (wid %d)", self.name, pid, process.wid)
        self.notify_event("spawn", {"process_id": process.wid, "process_pid": pid})
        self._arm_ready(process)
        self._arm_uptime(process)
        self._arm_max_age(process)
        self.call_hook("after_spawn", pid=pid)
        return process

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

    async def _spawn_missing(self):
        """Spawn until numprocesses are live, honouring warmup_delay."""
        spawned = []
        while self.is_running() and len(self.live_processes()) < self.numprocesses:
            process = self.spawn_process()
            if process is None:
                if not self.is_running():
                    break
                await asyncio.sleep(retry_delay(self._failures))
                continue
            spawned.append(process)
            if self.warmup_delay > 0 and len(self.live_processes()) < self.numprocesses:
                await asyncio.sleep(self.warmup_delay)
        return spawned

    # --- streams ----------------------------------------------------------
    def _read_stream(self, process, pipe, name, stream):
        fd = pipe.fileno()
        os.set_blocking(fd, False)

        def readable():
            try:
                # one bounded read per wake-up keeps a flooding child from
                # starving the loop; the pipe buffer bounds what waits
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._loop.remove_reader(fd)
                pipe.close()
                return
            try:
                stream({"pid": process.pid, "wid": process.wid, "name": name, "data": data})
            except Exception:
                logger.exception("watcher %s: %s stream failed", self.name, name)

        self._loop.add_reader(fd, readable)

    # --- reaping ----------------------------------------------------------
    def _on_exit(self, pid, wait_status):
        process = self.processes.get(pid)
        if process is None:
            return
        self.call_hook("before_reap", pid=pid)
        del self.processes[pid]
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
        else:
            self._replace_dead()

    def _replace_dead(self):
        if not self.is_running() or (self._lock and self._lock.locked()):
            # the operation holding the lock spawns what it needs itself;
            # check again once it is done
            if self.is_running():
                self._spawn_task(self._locked(self._spawn_missing))
            return
        while self.is_running() and len(self.live_processes()) < self.numprocesses:
            if self.spawn_process() is None:
                if self.is_running():
                    self._loop.call_later(retry_delay(self._failures), self._replace_dead)
                return

    # --- stopping processes -----------------------------------------------
    def send_signal(self, pid, signum, force=False):
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

    async def kill_process(self, process, graceful=True, signum=None, timeout=None,
                           force=False):
        """stop_signal (or signum), up to graceful_timeout (or timeout), then
        SIGKILL; returns the exit code. A timeout of 0 sends SIGKILL right
        after the stop signal: no grace at all, as the option's name says
        (a process that must never be killed wants a long graceful_timeout).

        When the before_signal hook refuses the stop signal (and force is
        false and vetoes apply, see the module doc) nothing is done: the
        process keeps running, is not stopping, and None is returned."""
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

    # --- operations (each takes the lock) ---------------------------------
    async def start(self):
        async with self._lock:
            return await self._start()

    async def _start(self):
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
        self._set_state(WatcherState.STARTING)
        # started means ready: watchers of lower priority start after this one serves
        await self._wait_ready(await self._spawn_missing())
        if not self.is_starting():
            return False  # gave up after max_retry meanwhile
        self._set_state(WatcherState.ACTIVE)
        logger.info("watcher %s started", self.name)
        self.call_hook("after_start")
        return True

    async def stop(self, graceful=True, reason=None):
        """Stop every process. Asked of a watcher that is stopped already,
        it changes nothing and publishes `already_stopped` (not `stop`: no
        state changed), so a plugin that means to start the watcher again
        (flapping) learns that somebody wants it down. reason, if given, is
        carried by the event."""
        async with self._lock:
            if self.is_stopped() or self.is_closed():
                self.notify_event("already_stopped", {"reason": reason} if reason else {})
                return True
            return await self._stop(graceful=graceful, reason=reason)

    async def _stop(self, graceful=True, reason=None, force=False):
        """False when a hook refused (see the module doc); the watcher is
        then active and self.refusal says why."""
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
        logger.info("watcher %s stopped%s", self.name, ": " + reason if reason else "")
        self.call_hook("after_stop")
        return True

    async def restart(self):
        async with self._lock:
            if not await self._stop():
                return False
            return await self._start()

    async def reload(self, graceful=True, sequential=False):
        async with self._lock:
            return await self._reload(graceful, sequential)

    async def _reload(self, graceful=True, sequential=False):
        if not self.is_active():
            return await self._start()
        if self.prereload_fn is not None:
            self.prereload_fn(self)
        old = self.live_processes()
        if self.send_hup:
            for process in old:
                self.send_signal(process.pid, signal.SIGHUP)
        elif sequential:
            for process in old:
                await self._replace(process, graceful)
        else:
            # new processes first; an old one goes only once a new one is ready
            new = []
            for _ in range(self.numprocesses):
                process = self.spawn_process()
                if process is not None:
                    new.append(process)
                if self.warmup_delay > 0:
                    await asyncio.sleep(self.warmup_delay)
            ready = await self._wait_ready(new)
            kept = await self._kill_all(old[:ready], graceful)
            if kept:
                # a hook kept old processes: as many new ones go instead
                await self._kill_all([p for p in new if p.returncode is None][-len(kept):],
                                     force=True)
        logger.info("watcher %s reloaded", self.name)
        self.notify_event("reload", {})
        return True

    async def _replace(self, process, graceful=True):
        """Start a successor to process and stop process once it is ready."""
        successor = self.spawn_process()
        if successor is None or not await self._wait_ready([successor]):
            return False
        if await self.kill_process(process, graceful) is None:
            # a hook kept the old one: the successor is the one to go
            await self.kill_process(successor, force=True)
            return False
        return True

    async def _wait_ready(self, processes):
        """How many of processes became ready (each has its own timeout)."""
        if not processes:
            return 0
        results = await asyncio.gather(*(p.ready_future for p in processes))
        # the ones that failed are being killed: let the caller see them gone
        await asyncio.gather(*(p.exit_future for p, ok in zip(processes, results) if not ok))
        return sum(1 for r in results if r)

    async def _recycle(self, process):
        async with self._lock:
            if not self.is_active() or process.stopping or process.returncode is not None:
                return
            logger.debug("watcher %s: pid %d reached max_age", self.name, process.pid)
            successor = self.spawn_process()
            ok = successor is not None and await self._wait_ready([successor])
            if not ok:
                # keep the old one serving; try again a little later
                if process.returncode is None and self.is_active():
                    process.add_timer(max(1.0, self.max_age_variance),
                                      lambda: self._spawn_task(self._recycle(process)))
                return
            # from here on the successor counts in its place
            process.begin_stop()
        # the replacement is serving: the old one may take its time to go
        if await self.kill_process(process) is None:
            # a hook kept the old one: the replacement goes instead
            await self.kill_process(successor, force=True)

    async def incr(self, nb=1):
        async with self._lock:
            self.numprocesses = 1 if self.singleton else self.numprocesses + int(nb)
            if self.is_active():
                await self._wait_ready(await self._spawn_missing())
            return self.numprocesses

    async def decr(self, nb=1):
        async with self._lock:
            self.numprocesses = max(0, self.numprocesses - int(nb))
            if self.is_active():
                await self._reduce()
            return self.numprocesses

    async def _reduce(self):
        live = self.live_processes()
        extra = len(live) - self.numprocesses
        if extra > 0:
            # the oldest go first: they are the nearest to max_age anyway
            await self._kill_all(live[:extra])

    async def set_numprocesses(self, numprocesses):
        async with self._lock:
            self.numprocesses = 1 if self.singleton and numprocesses > 1 else int(numprocesses)
            if self.is_active():
                await self._reduce()
                await self._wait_ready(await self._spawn_missing())
            return self.numprocesses

    async def signal(self, signum, pid=None, children=False, recursive=False, child_pid=None):
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
                self.send_signal(process.pid, signum)
        return [p.pid for p in targets]

    async def kill(self, pid, graceful=True, signum=None, graceful_timeout=None):
        """Stop one process; an active watcher then replaces it, as after a crash."""
        process = self.processes[int(pid)]
        code = await self.kill_process(process, graceful, signum, graceful_timeout)
        if self.is_running():
            async with self._lock:
                await self._spawn_missing()
        return code

    async def close(self):
        """Stop everything and release streams; the watcher is then closed
        for good: it refuses to start again (its arbiter has let it go)."""
        self._closing = True
        if self._lock is None:
            self._release()
            return
        async with self._lock:
            await self._stop(force=True)
            self._release()

    def _release(self):
        if self.is_closed():
            return  # closed already, by an earlier close()
        self._set_state(WatcherState.CLOSED)
        self._tasks.cancel()
        for stream in (self.stdout_stream, self.stderr_stream):
            if stream is not None and hasattr(stream, "close"):
                stream.close()

    # --- information ------------------------------------------------------
    def info(self, snapshot=None):
        """{pid: info} of every process. One /proc snapshot serves them all
        (pass one to share it between watchers): per-process psutil calls
        scan the whole system for children each, O(N^2)."""
        if snapshot is None:
            from circus.procstats import Snapshot
            snapshot = Snapshot()
        return {p.pid: snapshot.info(p.pid, p.started) for p in list(self.processes.values())}

    def process_info(self, pid, snapshot=None):
        process = self.processes[int(pid)]
        if snapshot is None:
            from circus.procstats import Snapshot
            snapshot = Snapshot()
        return snapshot.info(process.pid, process.started)

    def __repr__(self):
        return "<Watcher %s %s %d/%d>" % (self.name, self.status,
                                          len(self.live_processes()), self.numprocesses)


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
