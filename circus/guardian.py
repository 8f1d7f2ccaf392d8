"""A child dies with circusd, even when circusd is killed with SIGKILL.

Without this, `kill -9` of circusd leaves every child running: web workers
keep serving the socket they inherited with old code, and the next circusd
cannot bind the port.

The guardian is a small process circusd starts at its first guarded spawn
(`python -I -S .../circus/guardian.py <circusd pid>`, stdlib only), in a
session of its own and not as circusd's child (a shell starts it in the
background and exits: circusd's children stay its processes only). circusd
tells it over a pipe which children to guard (`+pid signum group`) and which
have exited (`-pid`, written when circusd reaps them). Only circusd holds
the pipe's write end, so when circusd dies, however it dies, the guardian
reads end-of-file; it then signals every child still guarded, and its
process group when the child leads one (a shell's commands and a worker's
own workers die too), and exits. It holds a pidfd of each child: the signal
reaches that very process, never a later one with the same pid. It ignores
SIGINT, SIGTERM and SIGHUP (a service manager may send SIGTERM to all of a
service's processes) and waits for circusd instead.

Why not the kernel's parent-death signal (prctl PR_SET_PDEATHSIG), set in
the child between fork and exec: Popen cannot set it without a preexec_fn,
which forces fork instead of vfork and runs Python in the child (3-5 ms a
spawn), and the other way, an exec of util-linux's `setpriv --pdeathsig`
before the command, costs an exec more per child (about 0.6 ms: 1000
processes started in 1.5-2 s instead of 0.9). A registration here is one
write of a dozen bytes. The signal is SIGKILL; circusd's own processes
(plugins, circusd-stats) get SIGTERM, on which they stop cleanly.

If the guardian dies (someone killed it), circusd starts another at once
(its end of the pipe tells it, on its loop; elsewhere the next write does)
and registers every guarded child with it again. What is not covered: a child
circusd spawned but had not registered yet when it was killed (the few
microseconds between the spawn and the write), and the processes a child
starts in a process group of their own. `die_with_circusd = false` in a
watcher opts out, for the rare process that must outlive circusd.
"""
import logging
import os
import signal
import subprocess
import sys
import threading
import time

logger = logging.getLogger("circus")
RESTART_DELAY = 1.0


class Guardian:
    """circusd's side: the children guarded, and the pipe to the guardian
    process, started at the first registration (and again if it dies)."""

    def __init__(self):
        self._guarded = {}  # pid -> b"+pid signum group\n"
        self._lock = threading.RLock()
        self._fd = None
        self._pid = None
        self._pending = bytearray()
        self._loop = None  # the loop watching the pipe, if any
        self._writing = False
        self._started_at = 0.0
        self._young_deaths = 0
        self._next_start = 0.0  # monotonic time before which none starts
        self._retrying = False

    @property
    def pid(self):
        """The guardian process's pid; None when none runs."""
        return self._pid if self._fd is not None else None

    def __len__(self):
        return len(self._guarded)

    def register(self, pid, signum=signal.SIGKILL, group=False):
        """Guard pid: it gets signum (its process group too with group)
        when circusd dies."""
        line = b"+%d %d %d\n" % (pid, int(signum), 1 if group else 0)
        with self._lock:
            self._guarded[pid] = line
            if self._fd is None:
                self._start()  # sends every registration, this one included
            else:
                self._send(line)

    def forget(self, pid):
        """pid has exited (and been reaped): nothing to guard any more."""
        with self._lock:
            if self._guarded.pop(pid, None) is not None and self._fd is not None:
                self._send(b"-%d\n" % pid)

    def close(self):
        """Stop guarding: the guardian reads end of file with nothing
        guarded and exits (a clean exit of circusd)."""
        with self._lock:
            self._guarded.clear()
            self._pending.clear()
            self._shut()

    # --- the guardian process -----------------------------------------------
    def _start(self):
        """Start a guardian. It is not circusd's child: a shell started here
        starts it in the background and exits at once (circusd's children
        stay its processes only, as ps and the tools counting them expect),
        and says its pid."""
        now = time.monotonic()
        if now < self._next_start:
            loop = _running_loop()
            if loop is not None and not self._retrying:
                self._retrying = True
                loop.call_later(self._next_start - now, self._retry)
            return
        self._started_at = now
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            # the pipe is the shell's stdin; a background command's stdin is
            # /dev/null unless redirected, so it goes through fd 3
            launcher = subprocess.Popen(
                ["/bin/sh", "-c", 'exec 3<&0; "$@" 0<&3 3<&- >/dev/null & echo $!', "sh",
                 sys.executable or "python3", "-I", "-S", os.path.abspath(__file__),
                 str(os.getpid())],
                stdin=read_end, stdout=subprocess.PIPE, close_fds=True, cwd="/",
                # not in circusd's session: a Ctrl-C or a hang-up at circusd's
                # terminal is not for it
                start_new_session=True)
        except OSError as exc:
            os.close(write_end)
            logger.error("cannot start the guardian that kills circusd's children when "
                         "circusd dies (%s): they would outlive a crash of circusd", exc)
            return
        finally:
            os.close(read_end)
        printed = launcher.communicate()[0]
        if launcher.returncode != 0 or not printed.strip().isdigit():
            os.close(write_end)
            logger.error("cannot start the guardian that kills circusd's children when "
                         "circusd dies (the shell said %r): they would outlive a crash of "
                         "circusd", printed)
            return
        self._fd, self._pid = write_end, int(printed)
        os.set_blocking(write_end, False)
        self._pending[:] = b"".join(self._guarded.values())
        self._loop = _running_loop()
        if self._loop is not None:
            # on a pipe's write end, "readable" means its reader is gone
            self._loop.add_reader(write_end, self._died, write_end)
        self._flush()

    def _retry(self):
        with self._lock:
            self._retrying = False
            if self._fd is None and self._guarded:
                self._start()

    def _died(self, fd):
        with self._lock:
            if fd != self._fd:
                return
            logger.warning("the guardian (pid %s) died; starting another", self.pid)
            now = time.monotonic()
            # one that cannot run must not become a storm of processes: after
            # two in a row that died young, one start a second at most
            self._young_deaths = (self._young_deaths + 1
                                  if now - self._started_at < RESTART_DELAY else 0)
            if self._young_deaths >= 2:
                self._next_start = now + RESTART_DELAY
            self._shut()
            if self._guarded:
                self._start()

    def _shut(self):
        if self._fd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        self._loop, self._writing = None, False
        os.close(self._fd)
        self._fd = None

    # --- the pipe -----------------------------------------------------------
    def _send(self, data):
        self._pending += data
        if not self._writing:
            self._flush()

    def _flush(self):
        while self._pending and self._fd is not None:
            try:
                written = os.write(self._fd, self._pending)
            except BlockingIOError:
                # the pipe is full (the guardian is slow, or stopped): never
                # block circusd's loop; write the rest when the pipe takes it
                if not self._writing and self._loop is _running_loop() is not None:
                    self._loop.add_writer(self._fd, self._writable)
                    self._writing = True
                return  # without a loop, the next registration tries again
            except BrokenPipeError:
                self._died(self._fd)
                return
            del self._pending[:written]
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _writable(self):
        with self._lock:
            self._flush()


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
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"+"):
                pid, signum, group = (int(word) for word in line[1:].split())
                try:
                    pidfd = os.pidfd_open(pid)
                except OSError:
                    pidfd = None  # gone already, or no pidfd (old kernel, no fds left)
                old = guarded.pop(pid, None)
                if old is not None and old[0] is not None:
                    os.close(old[0])
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
