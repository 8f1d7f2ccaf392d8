"""One child process: how it is spawned, signalled and described.

Process knows nothing of watchers: whoever owns it reaps it and calls
reaped() with the wait status. Its lifecycle (circus.states.ProcessState)
changes only through its own methods; given a loop, it also owns the
futures and timers of that lifecycle (ready, exit, max_age...). It has no
event channel: its owner publishes what each change means.
"""
from __future__ import annotations

import functools
import os
import resource
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from circus.guardian import guardian
from circus.options.facts import rlimit_id  # noqa: F401  (circus.process.rlimit_id)
from circus.spawner import Child, spawner
from circus.states import PROCESS_TRANSITIONS, ProcessState, check_transition
from circus.util import bytes2human, env_variables, substitute, which

if TYPE_CHECKING:
    import asyncio

    import psutil

# Process.status, as the original Circus documents it (ProcessState is the
# lifecycle; these only say whether the OS process exists)
UNEXISTING = 0
RUNNING = 1
DEAD_OR_ZOMBIE = 2
OTHER = 3

def _set_rlimits(limits: list[tuple[int, int]]) -> Callable[[], None]:
    def apply() -> None:
        for ident, value in limits:
            resource.setrlimit(ident, (value, value))
    return apply


class Process:
    """Wraps a running process.

    wid is the worker id ($(circus.wid)); cmd and args may reference
    $(circus.wid), $(circus.env.X), $(circus.sockets.NAME) and whatever else
    `variables` holds (a mapping, or a callable that returns one, called
    only if there is a $ to replace). With a loop, the process has
    ready_future (True once ready, False if it never got ready) and
    exit_future (its returncode), and timers (add_timer) that end with it.
    """

    def __init__(self, wid: int, cmd: str, args: str | Sequence[object] | None = None,
                 working_dir: str | None = None, shell: bool = False, uid: int | None = None,
                 gid: int | None = None, env: Mapping[str, object] | None = None,
                 rlimits: Mapping[str, int | str] | None = None, executable: str | None = None,
                 use_fds: bool = False, watcher: Any = None, spawn: bool = True,
                 pass_fds: Iterable[int] = (),
                 variables: Mapping[str, object] | Callable[[], Mapping[str, object]] | None = None,
                 stdout: int | IO[Any] | None = subprocess.DEVNULL,
                 stderr: int | IO[Any] | None = subprocess.DEVNULL,
                 new_process_group: bool = True, die_with_parent: bool | int = False,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.wid = wid
        self.cmd = cmd
        self.args = args
        self.working_dir = working_dir
        self.shell = shell
        self.uid = uid
        self.gid = gid
        self.env = env
        self.rlimits = rlimits or {}
        self.executable = executable
        self.use_fds = use_fds
        self.watcher = watcher
        self.pass_fds = tuple(pass_fds) if use_fds else ()
        self.variables = variables or {}
        # DEVNULL, PIPE, or None to write where the parent writes
        self.stdout_target = stdout
        self.stderr_target = stderr
        self.new_process_group = new_process_group
        # killed when its parent dies, even by SIGKILL (circus.guardian):
        # True for SIGKILL, or the signal it gets then
        self.die_with_parent = die_with_parent
        self.started: float | None = None
        self.returncode: int | None = None
        # the lifetime drawn for max_age, once schedule_expiry() has armed it
        self.expires_in: float | None = None
        self._state = ProcessState.CREATED
        self._loop = loop
        self._ready: asyncio.Future[bool] | None = (
            loop.create_future() if loop is not None else None)
        self._exit: asyncio.Future[int] | None = (
            loop.create_future() if loop is not None else None)
        self._timers: list[asyncio.TimerHandle] = []
        self._popen: subprocess.Popen[bytes] | Child | None = None
        self._pending: tuple[Any, ...] | None = None  # between begin_ and finish_spawn
        self._readers: list[IO[bytes] | None] = [None, None]  # its stdout and stderr pipes
        self._psutil: psutil.Process | None = None
        # what its owner keeps of its output (circus.watcher.output): the
        # readers of its pipes, and its recent output once it wrote any
        self.pipe_readers: tuple[Any, ...] = ()
        self.output: Any = None
        if spawn:
            self.spawn()

    # --- command line -----------------------------------------------------
    def _all_variables(self) -> dict[str, object]:
        if callable(self.variables):
            self.variables = self.variables()
        variables = env_variables(os.environ)
        if self.env:
            variables.update(env_variables(self.env))
        variables.update(self.variables)
        variables["wid"] = self.wid
        return variables

    def _has_variables(self) -> bool:
        """Something to substitute: most commands have nothing, and then the
        mapping of every variable is not worth building at each spawn."""
        texts: list[object] = [self.cmd]
        texts += [self.args] if isinstance(self.args, str) else list(self.args or ())
        if self.env:
            texts += self.env.values()
        return any("$" in str(text) for text in texts)

    def format_args(self, variables: Mapping[str, object] | None = None) -> list[str] | str:
        """The argv (or shell string) with every variable substituted."""
        if variables is None:
            variables = self._all_variables()
        cmd = substitute(self.cmd, variables)
        if isinstance(self.args, str):
            extra = _split(substitute(self.args, variables))
        else:
            extra = [substitute(str(a), variables) for a in (self.args or [])]
        if self.shell:
            return " ".join([cmd] + [shlex.quote(a) for a in extra])
        return _split(cmd) + extra

    def spawn(self) -> subprocess.Popen[bytes] | Child:
        self.begin_spawn()
        child = self.finish_spawn()
        assert child is not None  # with the fallback, a child or an exception
        return child

    def begin_spawn(self) -> None:
        """The first half of spawn(): the request goes to the spawner, which
        works on it while the caller begins more (finish_spawn() of each,
        in the same order, then). Raises what spawn() raises before a child
        exists (an empty command, no descriptors left for its pipes)."""
        variables = self._all_variables() if self._has_variables() else {}
        argv = self.format_args(variables)
        if not argv:
            raise ValueError("the command %r is empty" % self.cmd)
        env = None
        if self.env is not None:
            env = {k: substitute(str(v), variables) for k, v in self.env.items()}
        executable = self.executable
        if not self.shell and executable is None and argv:
            # children may get a bare env; find the program with circusd's PATH
            executable = which(argv[0])
        readers, writers = self._make_pipes()
        try:
            submitted = self._submit(argv, executable, env, writers)
        except BaseException:
            _close_all(readers)
            _close_fds(writers.values())
            raise
        if submitted is not None:
            _close_fds(writers.values())  # the spawner holds its own copies
            writers = {}
        self._pending = (argv, executable, env, submitted, readers, writers)

    async def spawn_answered(self) -> None:
        """Wait, with the loop free, until finish_spawn() has nothing to
        wait for: the spawner answered (or failed) a begun spawn."""
        if self._pending is not None and self._pending[3] is not None:
            await spawner().answered(self._pending[3][0])

    def finish_spawn(self, fallback: bool = True) -> subprocess.Popen[bytes] | Child | None:
        """The second half of spawn(): the child, started. Without
        fallback, None instead of a spawn in-process when the spawner could
        not start it (a spawn being cancelled needs no new process)."""
        if self._pending is None:
            raise RuntimeError("finish_spawn() without begin_spawn()")
        argv, executable, env, submitted, readers, writers = self._pending
        self._pending = None
        child: subprocess.Popen[bytes] | Child | None = None
        try:
            if submitted is not None:
                child = spawner().result(*submitted)
                if child is None:  # it died before it answered: pipes anew
                    _close_all(readers)
                    readers, writers = (([None, None], {}) if not fallback
                                        else self._make_pipes())
            if child is None:
                if not fallback:
                    return None
                child = self._spawn_here(argv, executable, env, writers)
        except BaseException:
            _close_all(readers)
            raise
        finally:
            _close_fds(writers.values())
        self._popen = child
        self._readers = readers
        if self.die_with_parent:
            guardian().register(
                child.pid, signal.SIGKILL if self.die_with_parent is True
                else self.die_with_parent, group=self.new_process_group)
        self.started = time.time()
        self._set_state(ProcessState.STARTING)
        return child

    def _make_pipes(self) -> tuple[list[IO[bytes] | None], dict[int, int]]:
        """The pipes of the targets that are PIPE: ([stdout reader, stderr
        reader], {1 or 2: write end}). Made in circusd either way, so that
        running out of descriptors shows at begin_spawn."""
        readers: list[IO[bytes] | None] = [None, None]
        writers: dict[int, int] = {}
        try:
            for index, wanted in enumerate((self.stdout_target, self.stderr_target)):
                if wanted == subprocess.PIPE:
                    read_end, writers[index + 1] = os.pipe2(os.O_CLOEXEC)
                    # read raw on the loop: a buffered reader would cost
                    # 8 KiB per pipe, allocated up front for every process
                    readers[index] = open(read_end, "rb", buffering=0)  # noqa: SIM115
        except BaseException:
            _close_all(readers)
            _close_fds(writers.values())
            raise
        return readers, writers

    def _rlimit_list(self) -> list[tuple[int, int]]:
        return [(rlimit_id(name), int(value)) for name, value in (self.rlimits or {}).items()]

    def _uid_and_groups(self) -> tuple[int | None, int | None, list[int] | None]:
        groups = None
        if self.uid is not None and os.geteuid() == 0:
            groups = _groups_of(self.uid, self.gid)
        return self.uid, self.gid, groups

    def _submit(self, argv: list[str] | str, executable: str | None,
                env: dict[str, str] | None,
                writers: dict[int, int]) -> tuple[Any, dict[str, Any]] | None:
        """Send the spawn to the spawner (circus.spawner): (its ticket, the
        spec), or None when it cannot serve (then finish_spawn spawns
        in-process)."""
        helper = spawner()
        if not helper.available() or not _plain_target(self.stdout_target) \
                or not _plain_target(self.stderr_target):
            return None  # files and descriptors as targets: Popen handles them
        if self.shell:
            argv = [executable or "/bin/sh", "-c", str(argv)]
        uid, gid, groups = self._uid_and_groups()
        argv = [str(arg) for arg in argv]  # marshal takes exact types only
        spec = {"argv": argv, "executable": str(executable or argv[0]),
                "env": {str(k): str(v) for k, v in (os.environ if env is None else env).items()},
                "cwd": None if self.working_dir is None else str(self.working_dir),
                "uid": uid, "gid": gid, "groups": groups,
                "rlimits": self._rlimit_list(), "process_group": bool(self.new_process_group)}
        if spec["cwd"] is None:
            try:  # where circusd is now, as a Popen child would start
                spec["cwd"] = os.getcwd()
            except OSError:
                pass
        if not _clean(spec):
            return None  # Popen raises the ValueError it deserves
        fds = {fd: fd for fd in self.pass_fds}
        fds.update(writers)
        for target, wanted in ((1, self.stdout_target), (2, self.stderr_target)):
            if wanted is None and _is_open(target):
                fds[target] = target  # where circusd writes
        ticket = helper.submit(spec, fds)
        return None if ticket is None else (ticket, spec)

    def _spawn_here(self, argv: list[str] | str, executable: str | None,
                    env: dict[str, str] | None,
                    writers: dict[int, int]) -> subprocess.Popen[bytes]:
        """With subprocess.Popen, in circusd itself; writers: the write ends
        of the pipes begin_spawn made."""
        kwargs: dict[str, Any] = {}
        if self.rlimits:
            kwargs["preexec_fn"] = _set_rlimits(self._rlimit_list())
        uid, gid, groups = self._uid_and_groups()
        if uid is not None:
            kwargs["user"] = uid
        if groups is not None:
            kwargs["extra_groups"] = groups
        if gid is not None:
            kwargs["group"] = gid
        return subprocess.Popen(
            argv, executable=executable, shell=self.shell, cwd=self.working_dir, env=env,
            stdin=subprocess.DEVNULL, stdout=writers.get(1, self.stdout_target),
            stderr=writers.get(2, self.stderr_target), close_fds=True, pass_fds=self.pass_fds,
            # own process group: a Ctrl-C at circusd's terminal reaches circusd
            # only, which then stops children gracefully
            process_group=0 if self.new_process_group else None,
            **kwargs)

    # --- state ------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def stdout(self) -> IO[bytes] | None:
        return self._readers[0]

    @property
    def stderr(self) -> IO[bytes] | None:
        return self._readers[1]

    @property
    def state(self) -> ProcessState:
        return self._state

    def _set_state(self, new: ProcessState) -> None:
        """The only writer of the state; IllegalTransition on an edge that
        PROCESS_TRANSITIONS does not have."""
        check_transition(PROCESS_TRANSITIONS, self._state, new, "process %s" % self.pid)
        self._state = new

    @property
    def stopping(self) -> bool:
        """Asked to stop and not gone yet: it no longer counts as one of its
        watcher's processes."""
        return self._state is ProcessState.STOPPING

    @property
    def alive(self) -> bool:
        return self._state in (ProcessState.STARTING, ProcessState.READY,
                               ProcessState.STOPPING)

    @property
    def ready_future(self) -> asyncio.Future[bool] | None:
        return self._ready

    @property
    def exit_future(self) -> asyncio.Future[int] | None:
        return self._exit

    def mark_ready(self) -> bool:
        """It said READY=1, or its ready_delay ran out. True when that is
        news: it was still awaited (a process asked to stop may still
        report, and counts as ready if that stop is refused)."""
        if self._ready is not None:
            if self._ready.done():
                return False
            self._ready.set_result(True)
        elif self._state is not ProcessState.STARTING:
            return False
        if self._state is ProcessState.STARTING:
            self._set_state(ProcessState.READY)
        return True

    def readiness_failed(self) -> None:
        """It did not get ready in time: it will never count as ready, and
        is on its way out."""
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        if self._state is ProcessState.STARTING:
            self._set_state(ProcessState.STOPPING)

    def begin_stop(self) -> None:
        """From now on it is going: its stop signal is about to be sent."""
        self._set_state(ProcessState.STOPPING)

    def stop_refused(self) -> None:
        """The stop was refused (a hook vetoed the signal): it runs on, as
        ready as it was."""
        ready = self._ready is not None and self._ready.done() and self._ready.result()
        self._set_state(ProcessState.READY if ready else ProcessState.STARTING)

    def add_timer(self, delay: float, callback: Callable[..., object], *args: Any) -> None:
        """callback(*args) after delay seconds, unless the process exits first."""
        if self._loop is None:
            raise RuntimeError("a Process made without a loop has no timers")
        self._timers.append(self._loop.call_later(delay, callback, *args))

    def schedule_expiry(self, lifetime: float, callback: Callable[[], object]) -> None:
        """max_age: callback() after lifetime seconds (kept in expires_in)."""
        self.expires_in = lifetime
        self.add_timer(lifetime, callback)

    def reaped(self, wait_status: int) -> None:
        """Record the exit, given the raw status from waitpid."""
        self._exited(os.waitstatus_to_exitcode(wait_status))
        if self._popen is not None:
            # tell Popen too, so it never waits on a pid that may be reused
            self._popen.returncode = self.returncode

    def _exited(self, returncode: int) -> None:
        self.returncode = returncode
        if self.die_with_parent and self._popen is not None:
            guardian().forget(self._popen.pid)
        self._set_state(ProcessState.EXITED)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(returncode)

    @property
    def status(self) -> int:
        if self._state is ProcessState.CREATED:
            return UNEXISTING
        if self.poll() is not None:
            return DEAD_OR_ZOMBIE
        return RUNNING

    def poll(self) -> int | None:
        """Non-blocking check for callers that own no reaper."""
        if self.returncode is None and self._popen is not None:
            try:
                pid, status = os.waitpid(self._popen.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.reaped(status)
        return self.returncode

    def age(self) -> float:
        return time.time() - self.started if self.started else 0.0

    # --- signals ----------------------------------------------------------
    def send_signal(self, signum: int) -> None:
        if self.alive and self._popen is not None:
            os.kill(self._popen.pid, signum)

    def children(self, recursive: bool = False) -> list[int]:
        proc = self._ps()
        if proc is None:
            return []
        try:
            return [c.pid for c in proc.children(recursive=recursive)]
        except _psutil_errors():
            return []

    def is_child(self, pid: int) -> bool:
        return pid in self.children(recursive=True)

    def send_signal_child(self, pid: int, signum: int) -> None:
        if not self.is_child(pid):
            raise ValueError("%d is not a child of process %s" % (pid, self.pid))
        os.kill(pid, signum)

    def send_signal_children(self, signum: int, recursive: bool = True) -> None:
        for pid in self.children(recursive=recursive):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate and wait, for programs that use Process on its own."""
        if not self.alive or self._popen is None:
            return
        if not self.stopping:
            self.begin_stop()
        self.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout
        while self.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        if self.poll() is None:
            self.send_signal(signal.SIGKILL)
            self._exited(self._popen.wait())

    # --- information ------------------------------------------------------
    def _ps(self) -> psutil.Process | None:
        if self._psutil is None and self.alive:
            import psutil
            try:
                self._psutil = psutil.Process(self.pid)
            except psutil.Error:
                return None
        return self._psutil

    def info(self) -> dict[str, Any] | str:
        """The documented info mapping, from psutil."""
        proc = self._ps()
        if proc is None:
            return "No such process (stopped?)"
        return process_info(proc, self.started)

    def __repr__(self) -> str:
        return "<Process wid=%s pid=%s>" % (self.wid, self.pid)


@functools.lru_cache(maxsize=256)
def _split_cached(text: str) -> tuple[str, ...]:
    return tuple(shlex.split(text))


def _split(text: str) -> list[str]:
    """shlex.split, remembered: every spawn of a watcher splits the same
    command line (24 us each)."""
    return list(_split_cached(text))


def _psutil_errors() -> type[Exception]:
    import psutil
    return psutil.Error


def _plain_target(target: Any) -> bool:
    return target in (subprocess.PIPE, subprocess.DEVNULL, None)


def _clean(spec: dict[str, Any]) -> bool:
    """No NUL byte anywhere, no "=" in a variable's name: what C strings
    and an environment can hold."""
    texts = spec["argv"] + list(spec["env"].values()) + [spec["executable"], spec["cwd"] or ""]
    return not any("\0" in text for text in texts) and not any(
        "=" in name or "\0" in name for name in spec["env"])


def _close_all(files: list[Any]) -> None:
    for handle in files:
        if handle is not None:
            handle.close()


def _close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        os.close(fd)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _groups_of(uid: int, gid: int | None) -> list[int]:
    import pwd
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return []
    return os.getgrouplist(entry.pw_name, gid if gid is not None else entry.pw_gid)


def process_info(proc: psutil.Process, started: float | None = None,
                 children: bool = True) -> dict[str, Any] | str:
    """Describe a psutil.Process the way the stats commands document it;
    "children" holds the same mappings of its children (without theirs)."""
    import psutil
    try:
        with proc.oneshot():
            mem = proc.memory_info()
            cpu_times = proc.cpu_times()
            ctime = cpu_times.user + cpu_times.system
            info = {
                "pid": proc.pid,
                "cpu": proc.cpu_percent(interval=None),
                "mem": round(proc.memory_percent(), 1),
                "mem_info1": bytes2human(mem.rss),
                "mem_info2": bytes2human(mem.vms),
                "rss": mem.rss,
                "vms": mem.vms,
                "ctime": "%d:%05.2f" % divmod(ctime, 60),
                "nice": proc.nice(),
                "username": proc.username(),
                "cmdline": " ".join(proc.cmdline()),
                "create_time": proc.create_time(),
            }
        info["children"] = [c for c in (process_info(child, children=False)
                                        for child in proc.children()) if isinstance(c, dict)] \
            if children else []
        info["age"] = time.time() - (started or info["create_time"])
        return info
    except psutil.NoSuchProcess:
        return "No such process (stopped?)"
    except psutil.AccessDenied:
        return "Access denied to process %d" % proc.pid
