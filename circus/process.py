"""One child process: how it is spawned, signalled and described.

Process knows nothing of watchers: whoever owns it reaps it and calls
reaped() with the wait status. Its lifecycle (circus.states.ProcessState)
changes only through its own methods; given a loop, it also owns the
futures and timers of that lifecycle (ready, exit, max_age...). It has no
event channel: its owner publishes what each change means.
"""
import os
import resource
import shlex
import signal
import subprocess
import time

from circus.states import PROCESS_TRANSITIONS, ProcessState, check_transition
from circus.util import bytes2human, env_variables, substitute, which

# Process.status, as the original Circus documents it (ProcessState is the
# lifecycle; these only say whether the OS process exists)
UNEXISTING = 0
RUNNING = 1
DEAD_OR_ZOMBIE = 2
OTHER = 3

_RLIMITS = {name[len("RLIMIT_"):].lower(): getattr(resource, name)
            for name in dir(resource) if name.startswith("RLIMIT_")}


def rlimit_id(name):
    try:
        return _RLIMITS[name.lower()]
    except KeyError:
        raise ValueError("unknown resource limit %r (one of %s)"
                         % (name, ", ".join(sorted(_RLIMITS)))) from None


def _set_rlimits(limits):
    def apply():
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

    def __init__(self, wid, cmd, args=None, working_dir=None, shell=False, uid=None,
                 gid=None, env=None, rlimits=None, executable=None, use_fds=False,
                 watcher=None, spawn=True, pass_fds=(), variables=None,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, new_process_group=True,
                 loop=None):
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
        self.started = None
        self.returncode = None
        # the lifetime drawn for max_age, once schedule_expiry() has armed it
        self.expires_in = None
        self._state = ProcessState.CREATED
        self._loop = loop
        self._ready = loop.create_future() if loop is not None else None
        self._exit = loop.create_future() if loop is not None else None
        self._timers = []
        self._popen = None
        self._psutil = None
        if spawn:
            self.spawn()

    # --- command line -----------------------------------------------------
    def _all_variables(self):
        if callable(self.variables):
            self.variables = self.variables()
        variables = env_variables(os.environ)
        if self.env:
            variables.update(env_variables(self.env))
        variables.update(self.variables)
        variables["wid"] = self.wid
        return variables

    def _has_variables(self):
        """Something to substitute: most commands have nothing, and then the
        mapping of every variable is not worth building at each spawn."""
        texts = [self.cmd]
        texts += [self.args] if isinstance(self.args, str) else list(self.args or ())
        if self.env:
            texts += self.env.values()
        return any("$" in str(text) for text in texts)

    def format_args(self, variables=None):
        """The argv (or shell string) with every variable substituted."""
        if variables is None:
            variables = self._all_variables()
        cmd = substitute(self.cmd, variables)
        if isinstance(self.args, str):
            extra = shlex.split(substitute(self.args, variables))
        else:
            extra = [substitute(str(a), variables) for a in (self.args or [])]
        if self.shell:
            return " ".join([cmd] + [shlex.quote(a) for a in extra])
        return shlex.split(cmd) + extra

    def spawn(self):
        variables = self._all_variables() if self._has_variables() else {}
        argv = self.format_args(variables)
        env = None
        if self.env is not None:
            env = {k: substitute(str(v), variables) for k, v in self.env.items()}
        executable = self.executable
        if not self.shell and executable is None and argv:
            # children may get a bare env; find the program with circusd's PATH
            executable = which(argv[0])
        kwargs = {}
        if self.rlimits:
            limits = [(rlimit_id(name), int(value)) for name, value in self.rlimits.items()]
            kwargs["preexec_fn"] = _set_rlimits(limits)
        if self.uid is not None:
            kwargs["user"] = self.uid
            if os.geteuid() == 0:
                kwargs["extra_groups"] = _groups_of(self.uid, self.gid)
        if self.gid is not None:
            kwargs["group"] = self.gid
        self._popen = subprocess.Popen(
            argv, executable=executable, shell=self.shell, cwd=self.working_dir, env=env,
            stdin=subprocess.DEVNULL, stdout=self.stdout_target, stderr=self.stderr_target,
            close_fds=True, pass_fds=self.pass_fds,
            # own process group: a Ctrl-C at circusd's terminal reaches circusd
            # only, which then stops children gracefully
            process_group=0 if self.new_process_group else None,
            **kwargs)
        self.started = time.time()
        self._set_state(ProcessState.STARTING)
        return self._popen

    # --- state ------------------------------------------------------------
    @property
    def pid(self):
        return self._popen.pid if self._popen is not None else None

    @property
    def stdout(self):
        return self._popen.stdout if self._popen is not None else None

    @property
    def stderr(self):
        return self._popen.stderr if self._popen is not None else None

    @property
    def state(self):
        return self._state

    def _set_state(self, new):
        """The only writer of the state; IllegalTransition on an edge that
        PROCESS_TRANSITIONS does not have."""
        check_transition(PROCESS_TRANSITIONS, self._state, new, "process %s" % self.pid)
        self._state = new

    @property
    def stopping(self):
        """Asked to stop and not gone yet: it no longer counts as one of its
        watcher's processes."""
        return self._state is ProcessState.STOPPING

    @property
    def alive(self):
        return self._state in (ProcessState.STARTING, ProcessState.READY,
                               ProcessState.STOPPING)

    @property
    def ready_future(self):
        return self._ready

    @property
    def exit_future(self):
        return self._exit

    def mark_ready(self):
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

    def readiness_failed(self):
        """It did not get ready in time: it will never count as ready, and
        is on its way out."""
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        if self._state is ProcessState.STARTING:
            self._set_state(ProcessState.STOPPING)

    def begin_stop(self):
        """From now on it is going: its stop signal is about to be sent."""
        self._set_state(ProcessState.STOPPING)

    def stop_refused(self):
        """The stop was refused (a hook vetoed the signal): it runs on, as
        ready as it was."""
        ready = self._ready is not None and self._ready.done() and self._ready.result()
        self._set_state(ProcessState.READY if ready else ProcessState.STARTING)

    def add_timer(self, delay, callback, *args):
        """callback(*args) after delay seconds, unless the process exits first."""
        self._timers.append(self._loop.call_later(delay, callback, *args))

    def schedule_expiry(self, lifetime, callback):
        """max_age: callback() after lifetime seconds (kept in expires_in)."""
        self.expires_in = lifetime
        self.add_timer(lifetime, callback)

    def reaped(self, wait_status):
        """Record the exit, given the raw status from waitpid."""
        self._exited(os.waitstatus_to_exitcode(wait_status))
        if self._popen is not None:
            # tell Popen too, so it never waits on a pid that may be reused
            self._popen.returncode = self.returncode

    def _exited(self, returncode):
        self.returncode = returncode
        self._set_state(ProcessState.EXITED)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(returncode)

    @property
    def status(self):
        if self._state is ProcessState.CREATED:
            return UNEXISTING
        if self.poll() is not None:
            return DEAD_OR_ZOMBIE
        return RUNNING

    def poll(self):
        """Non-blocking check for callers that own no reaper."""
        if self.returncode is None and self._popen is not None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.reaped(status)
        return self.returncode

    def age(self):
        return time.time() - self.started if self.started else 0.0

    # --- signals ----------------------------------------------------------
    def send_signal(self, signum):
        if self.alive:
            os.kill(self.pid, signum)

    def children(self, recursive=False):
        proc = self._ps()
        if proc is None:
            return []
        try:
            return [c.pid for c in proc.children(recursive=recursive)]
        except _psutil_errors():
            return []

    def is_child(self, pid):
        return pid in self.children(recursive=True)

    def send_signal_child(self, pid, signum):
        if not self.is_child(pid):
            raise ValueError("%d is not a child of process %d" % (pid, self.pid))
        os.kill(pid, signum)

    def send_signal_children(self, signum, recursive=True):
        for pid in self.children(recursive=recursive):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10.0):
        """Terminate and wait, for programs that use Process on its own."""
        if not self.alive:
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
    def _ps(self):
        if self._psutil is None and self.alive:
            import psutil
            try:
                self._psutil = psutil.Process(self.pid)
            except psutil.Error:
                return None
        return self._psutil

    def info(self):
        """The documented info mapping, from psutil."""
        proc = self._ps()
        if proc is None:
            return "No such process (stopped?)"
        return process_info(proc, self.started)

    def __repr__(self):
        return "<Process wid=%s pid=%s>" % (self.wid, self.pid)


def _psutil_errors():
    import psutil
    return psutil.Error


def _groups_of(uid, gid):
    import pwd
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return []
    return os.getgrouplist(entry.pw_name, gid if gid is not None else entry.pw_gid)


def process_info(proc, started=None):
    """Describe a psutil.Process the way the stats commands document it."""
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
        info["children"] = [c.pid for c in proc.children()]
        info["age"] = time.time() - (started or info["create_time"])
        return info
    except psutil.NoSuchProcess:
        return "No such process (stopped?)"
    except psutil.AccessDenied:
        return "Access denied to process %d" % proc.pid
