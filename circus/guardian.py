"""A child dies with circusd, even when circusd is killed with SIGKILL.

Without this, `kill -9` of circusd leaves every child running: web workers
keep serving the socket they inherited with old code, and the next circusd
cannot bind the port.

The guardian is a small process circusd starts at its first guarded spawn
(`python -I -S .../circus/guardian.py <circusd pid>`, stdlib only), in a
session of its own and not as circusd's child (a shell starts it in the
background and exits: circusd's children stay its processes only; without
/bin/sh it is circusd's child). circusd tells it over a pipe which children
to guard (`+pid signum group`) and which have exited (`-pid`, written when
circusd reaps them). Only circusd holds the pipe's write end, so when
circusd dies, however it dies, the guardian reads end-of-file; it then
signals every child still guarded, and its process group when the child
still leads one (a shell's commands and a worker's own workers die too),
and exits. It opens a pidfd of each child as it reads its registration,
which circusd wrote before it could reap the child: the signal reaches
that very process, not a later one with the same pid. It ignores SIGINT,
SIGTERM and SIGHUP (a service manager may send SIGTERM to all of a
service's processes) and waits for circusd instead. As PID 1 (a container)
circusd starts none: the kernel kills the whole pid namespace with it.

Why not the kernel's parent-death signal (prctl PR_SET_PDEATHSIG), set in
the child between fork and exec: Popen cannot set it without a preexec_fn,
which forces fork instead of vfork and runs Python in the child (3-5 ms a
spawn), and the other way, an exec of util-linux's `setpriv --pdeathsig`
before the command, costs an exec more per child (about 0.6 ms: 1000
processes started in 1.5-2 s instead of 0.9). A registration here is one
write of a dozen bytes. The signal is SIGKILL; circusd's own processes
(plugins, circusd-stats) get SIGTERM, on which they stop cleanly.

If the guardian dies (someone killed it), circusd starts another at once
(a pidfd of the guardian tells it, on the loop of whoever registered last;
without a loop the next write does) and registers every guarded child with
it again. What is not covered: a child circusd spawned but had not
registered yet when it was killed (the microseconds between the spawn and
the write), lines a full pipe had not taken yet (the pipe holds tens of
thousands: only a stopped guardian lets it fill), and the processes a
child starts in a process group of their own. `die_with_circusd = false`
in a watcher opts out, for the rare process that must outlive circusd.
"""
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time

logger = logging.getLogger("circus")
RESTART_DELAY = 1.0
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_BYTES = 1 << 20  # Linux's default most for an unprivileged process
SHELL = "/bin/sh"
READ_PAUSE = 0.005


class Guardian:
    """circusd's side: the children guarded, and the pipe to the guardian
    process, started at the first registration (and again if it dies).
    Thread-safe: arbiters may run on loops of their own threads. Never
    raises: a child it cannot guard still runs, and is still tracked."""

    def __init__(self):
        self._guarded = {}  # pid -> b"+pid signum group\n"
        self._lock = threading.RLock()
        self._fd = None
        self._pid = None
        self._direct = None  # the guardian's Popen when it is our child (no /bin/sh)
        self._generation = 0  # of the guardian running: tells stale callbacks apart
        self._pending = bytearray()  # what the full pipe did not take yet
        self._watch = None  # (loop, pidfd of the guardian) telling us of its death
        self._started_at = 0.0
        self._failures = 0  # guardians in a row that did not start or died young
        self._next_start = 0.0  # monotonic time before which none starts
        self._retry = None  # (loop, timer) of a start put off

    @property
    def pid(self):
        """The guardian process's pid; None when none runs."""
        return self._pid if self._fd is not None else None

    def __len__(self):
        return len(self._guarded)

    def register(self, pid, signum=signal.SIGKILL, group=False):
        """Guard pid: it gets signum (its process group too with group,
        while it leads it) when circusd dies."""
        if os.getpid() == 1:
            return  # the kernel kills the whole pid namespace with its PID 1
        line = b"+%d %d %d\n" % (pid, int(signum), 1 if group else 0)
        with self._lock:
            self._guarded[pid] = line
            self._safely(self._send, line)

    def forget(self, pid):
        """pid has exited (and been reaped): nothing to guard any more."""
        with self._lock:
            if self._guarded.pop(pid, None) is not None:
                self._safely(self._send, b"-%d\n" % pid)

    def start(self):
        """Start the guardian now if none runs (the first registration
        would): its start-up then does not compete with the first spawns."""
        if os.getpid() == 1:
            return
        with self._lock:
            if self._fd is None:
                self._safely(self._start)

    def close_if_idle(self):
        """Let the guardian exit if nothing is guarded (checked and done at
        once: another arbiter's thread may be registering)."""
        with self._lock:
            if not self._guarded:
                self._safely(self._shut)

    def close(self):
        """Stop guarding: the guardian is told to forget every child, then
        reads end of file and exits without signalling anyone."""
        with self._lock:
            forgets = b"".join(b"-%d\n" % pid for pid in self._guarded)
            self._guarded.clear()
            self._safely(self._send, forgets)
            self._safely(self._shut)

    def _safely(self, action, *args):
        try:
            action(*args)
        except Exception:  # a spawn or a reap must never fail for it
            logger.exception("the guardian that kills circusd's children when circusd dies "
                             "failed")

    # --- the guardian process -----------------------------------------------
    def _start(self):
        """Start a guardian. It is not circusd's child: a shell starts it in
        the background, says its pid and exits (so circusd's children stay
        its processes only, as ps and the tools counting them expect)."""
        now = time.monotonic()
        if now < self._next_start:
            self._start_later(self._next_start - now)
            return
        self._started_at = now
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(write_end, False)  # the guardian's end blocks
        try:
            # room for tens of thousands of registrations while it starts
            fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass
        # what it must guard is in the pipe before it runs: if circusd dies
        # while it starts, it reads it all, then end of file
        self._pending[:] = b"".join(self._guarded.values())
        self._fd = write_end
        self._flush()
        argv = [sys.executable or "python3", "-I", "-S", os.path.abspath(__file__),
                str(os.getpid())]
        try:
            # not in circusd's session: a Ctrl-C or a hang-up at circusd's
            # terminal is not for it
            if os.path.exists(SHELL):
                # the pipe is the shell's stdin; a background command's stdin
                # is /dev/null unless redirected, so it goes through fd 3
                launcher = subprocess.Popen(
                    [SHELL, "-c", 'exec 3<&0; "$@" 0<&3 3<&- >/dev/null & echo $!', "sh"]
                    + argv, stdin=read_end, stdout=subprocess.PIPE, close_fds=True, cwd="/",
                    start_new_session=True)
                printed = launcher.communicate()[0]
                if launcher.returncode != 0 or not printed.strip().isdigit():
                    raise OSError("the shell starting it said %r" % printed)
                self._pid, self._direct = int(printed), None
            else:  # no shell (a distroless image): our child, then
                self._direct = subprocess.Popen(
                    argv, stdin=read_end, stdout=subprocess.DEVNULL, close_fds=True, cwd="/",
                    start_new_session=True)
                self._pid = self._direct.pid
        except (OSError, subprocess.SubprocessError) as exc:
            self._fd = None
            os.close(write_end)
            self._failed("cannot start the guardian that kills circusd's children when "
                         "circusd dies (%s): they would outlive a crash of circusd" % exc)
            return
        finally:
            os.close(read_end)
        self._generation += 1
        self._watch_exit()

    def _failed(self, message):
        """One more guardian that did not start or died young: after two in
        a row, wait before the next start, longer each time (1 s, 2 s, ...
        a minute at most): one that cannot run must not become a storm of
        processes, nor of log lines."""
        self._failures += 1
        if self._failures >= 2:
            delay = min(60.0, RESTART_DELAY * 2 ** (self._failures - 2))
            self._next_start = time.monotonic() + delay
            message += "; next try in %.0f s" % delay
        logger.error("%s", message)

    def _start_later(self, delay):
        loop = _running_loop()
        if loop is None or (self._retry is not None and not self._retry[0].is_closed()):
            return  # the next registration tries again
        self._retry = (loop, loop.call_later(delay, self._retry_now))

    def _retry_now(self):
        with self._lock:
            self._retry = None
            if self._fd is None and self._guarded:
                self._safely(self._start)

    def _watch_exit(self):
        """Learn of the guardian's death at once, on the running loop if
        there is one (without, the next write finds out). The watch moves to
        the loop of the caller when the loop holding it no longer runs."""
        loop = _running_loop()
        if loop is None or self._pid is None:
            return
        if self._watch is not None:
            if self._watch[0] is loop or self._watch[0].is_running():
                return
            self._unwatch_exit()
        try:
            pidfd = os.pidfd_open(self._pid)
        except ProcessLookupError:  # gone already
            loop.call_soon(self._exited, self._generation)
            return
        except OSError:  # no pidfd here: the next write finds out
            return
        loop.add_reader(pidfd, self._exited, self._generation)
        self._watch = (loop, pidfd)

    def _unwatch_exit(self):
        if self._watch is None:
            return
        loop, pidfd = self._watch
        self._watch = None

        def stop():
            if not loop.is_closed():
                loop.remove_reader(pidfd)
            os.close(pidfd)
        if loop.is_closed() or not loop.is_running() or loop is _running_loop():
            stop()
            return
        try:  # another thread's running loop: its own thread unregisters it
            loop.call_soon_threadsafe(stop)
        except RuntimeError:  # closed meanwhile
            stop()

    def _exited(self, generation):
        with self._lock:
            if generation == self._generation and self._fd is not None:
                self._safely(self._died)

    def _died(self):
        lived = time.monotonic() - self._started_at
        pid = self._pid
        self._shut()
        if lived < RESTART_DELAY:
            self._failed("the guardian (pid %s) died after %.1f s" % (pid, lived))
        else:
            self._failures = 0
            logger.warning("the guardian (pid %s) died; starting another", pid)
        if self._guarded:
            self._start()

    def _shut(self):
        self._unwatch_exit()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._pending.clear()
        if self._direct is not None:
            direct, self._direct = self._direct, None
            try:
                direct.wait(0.5)  # it exits on end of file: reap it
            except subprocess.TimeoutExpired:
                pass

    # --- the pipe -----------------------------------------------------------
    def _send(self, data):
        if self._fd is None:
            if self._guarded:
                self._start()  # sends every registration
            return
        self._pending += data
        self._flush()
        self._watch_exit()

    def _flush(self):
        """Write what the pipe takes; the rest waits for the next write (the
        pipe holds tens of thousands of lines: it is full only when the
        guardian is stopped). Never blocks."""
        while self._pending and self._fd is not None:
            try:
                written = os.write(self._fd, self._pending)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self._died()
                return
            del self._pending[:written]


def _running_loop():
    asyncio = sys.modules.get("asyncio")  # not imported: no loop runs
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_guardian = Guardian()


def guardian():
    """This process's Guardian (one per process: it is about this process's
    death)."""
    return _guardian


def _after_fork_in_child():
    # a forked copy of circusd must not hold the pipe open (the guardian
    # would miss circusd's death), nor guard circusd's children
    global _guardian
    if _guardian._fd is not None:
        os.close(_guardian._fd)
    _guardian = Guardian()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --- the guardian process ---------------------------------------------------
def _signal(pidfd, pid, signum):
    """True when the process was still there."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _guard(stdin_fd=0):
    guarded = {}  # pid -> (pidfd or None, signum, group)
    rest = b""
    while True:
        chunk = os.read(stdin_fd, 65536)
        if not chunk:
            break
        # registrations come in bursts (a start spawns hundreds): reading
        # them a few milliseconds apart spares circusd a wake-up of this
        # process per write; its death is seen as late, at most
        time.sleep(READ_PAUSE)
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"+"):
                pid, signum, group = (int(word) for word in line[1:].split())
                if pid <= 0:
                    continue  # never a group or everyone: circusd writes real pids
                old = guarded.pop(pid, None)
                if old is not None and old[0] is not None:
                    os.close(old[0])
                try:
                    pidfd = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue  # gone already: its pid may be someone else's soon
                except OSError:
                    pidfd = None  # no pidfd (an old kernel, no descriptor left): by pid
                guarded[pid] = (pidfd, signum, group)
            elif line.startswith(b"-"):
                old = guarded.pop(int(line[1:]), None)
                if old is not None and old[0] is not None:
                    os.close(old[0])
    # circusd is gone: so go its children
    for pid, (pidfd, signum, group) in guarded.items():
        if group and _signal(pidfd, pid, 0):
            # it leads its group and is still there, so the group id is its
            try:
                os.killpg(pid, signum)
            except OSError:
                pass
        else:
            _signal(pidfd, pid, signum)


def _main():
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a pidfd a child
        except (ValueError, OSError):
            pass
    _guard()


if __name__ == "__main__":
    _main()
