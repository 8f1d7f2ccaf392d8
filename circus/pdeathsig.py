"""A child dies with circusd, even when circusd is killed with SIGKILL.

Without this, `kill -9` of circusd leaves every child running: web workers
keep serving the socket they inherited with old code, and the next circusd
cannot bind the port. Linux's parent-death signal (prctl PR_SET_PDEATHSIG)
makes the kernel send SIGKILL to a child the moment its parent dies. It must
be set in the child, between fork and exec, and after any change of user or
group: prctl(2) clears it on a credential change.

Two ways to set it, the first preferred:

- util-linux's `setpriv --pdeathsig KILL -- cmd...`: Popen keeps its fast
  path (vfork, no Python in the child), and the extra exec happens in the
  child after Popen has returned. Measured: 1.0-1.3 ms a spawn, against
  0.65-1.6 ms without it (noise). Popen applies uid and gid before it
  executes setpriv, so the signal is set after them; the process keeps its
  pid (setpriv executes the command in place), and once it has, psutil and
  ps show the command's own command line.
- a preexec_fn calling prctl: it forces fork instead of vfork and runs
  Python in the child, 4.7-5.2 ms a spawn in a 60 MB circusd (1000
  processes: 5 s instead of 1). Used when setpriv is not installed (one
  warning says so), when a watcher sets `executable` (setpriv cannot run a
  program under another argv[0]), and when a preexec_fn runs anyway
  (rlimit_*). Popen runs it after the user and group change too.

The signal is SIGKILL; circusd's own processes (plugins, circusd-stats) get
SIGTERM, on which they stop cleanly (a plugin's handle_stop runs).

Only the direct child is covered: the parent-death signal is not inherited
by the processes a child forks (a `shell = true` command that is not a
single program, a worker's own workers). `die_with_circusd = false` in a
watcher opts out, for the rare process that must outlive circusd.
"""
import errno
import logging
import os
import shutil
import signal

logger = logging.getLogger("circus")

_PR_SET_PDEATHSIG = 1
_setpriv = []  # [path or None], once found
_warned = set()


def setpriv_path():
    """util-linux's setpriv, looked up once (None if it is not installed)."""
    if not _setpriv:
        path = shutil.which("setpriv") or next(
            (p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.access(p, os.X_OK)), None)
        _setpriv.append(path)
    return _setpriv[0]


def _warn_once(reason, message, *args):
    if reason not in _warned:
        _warned.add(reason)
        logger.warning(message, *args)


def popen_args(argv, shell, executable, env, cwd, preexec_fn, program_given,
               signum=signal.SIGKILL):
    """Popen's (args, executable, shell, preexec_fn) for a child that gets
    signum when circusd dies. argv and shell are the command as Popen would
    get it, executable what it would run (for a plain command: the program
    found on circusd's PATH), program_given whether the watcher set
    `executable`."""
    setpriv = None
    if preexec_fn is None and not program_given:
        setpriv = setpriv_path()
        if setpriv is None:
            _warn_once("setpriv", "setpriv (util-linux) is not installed: children get their "
                       "parent-death signal from a preexec_fn, which makes each spawn "
                       "several times slower (fork instead of vfork, Python in the child)")
    if setpriv is None:
        return argv, executable, shell, _with_pdeathsig(preexec_fn, signum)
    if shell:
        target = [executable or "/bin/sh", "-c", argv]
    else:
        target = [_exec_name(argv[0], executable, env, cwd)] + list(argv[1:])
    name = signal.Signals(signum).name[len("SIG"):]
    return [setpriv, "--pdeathsig", name, "--"] + target, setpriv, False, None


def _exec_name(name, found, env, cwd):
    """What setpriv should execute so that the child runs `found` (the
    program circusd's PATH finds, as Popen would run it): the name as given
    when the child's own PATH finds the same file (ps then shows the command
    as written), else the full path. A missing program is refused here, as
    Popen would refuse it, not by setpriv after the spawn."""
    if os.sep in name:
        path = name if os.path.isabs(name) else os.path.join(cwd or os.getcwd(), name)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        return name
    if not found or os.sep not in found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    # execvp in the child: its PATH, or the C library's default without one
    search = (env if env is not None else os.environ).get("PATH", "/bin:/usr/bin")
    theirs = shutil.which(name, path=search)
    try:
        if theirs and os.path.samefile(theirs, found):
            return name
    except OSError:
        pass
    return found


_libc = []


def _with_pdeathsig(preexec_fn, signum):
    if not _libc:
        import ctypes
        _libc.append(ctypes.CDLL(None, use_errno=True))
    libc = _libc[0]
    parent = os.getpid()

    def in_child():
        if preexec_fn is not None:
            preexec_fn()
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # circusd died before the signal was set
    return in_child
