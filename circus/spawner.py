"""Children spawned by a small helper process, as circusd's own children.

A fork copies the descriptor table of the process that forks, and the
child's exec closes it again: the kernel's work per spawn grows with every
descriptor circusd holds, and circusd holds two pipe ends per child (their
output is kept). Measured: 0.9 ms a spawn from a process with ten
descriptors, 4.6 ms with ten thousand more; ten thousand processes took
56 s to start, and the loop, blocked in each spawn, answered commands late.

So circusd asks the spawner (`python -I -S .../circus/spawner.py FD SO`,
circusd's child, a dozen descriptors) to start each child. circusd sends
the spec over a SOCK_SEQPACKET socketpair with the child's descriptors
(SCM_RIGHTS: its output pipes, the watcher's sockets). The spawner clones
the child with CLONE_PARENT, so the child is circusd's: circusd gets its
SIGCHLD, reaps it and owns it exactly as if it had forked it; and with
CLONE_VM | CLONE_VFORK, so nothing of the spawner is copied. Between the
clone and the exec the child only makes system calls (circus/_spawn.c:
Python has no clone with CLONE_PARENT): it puts its descriptors at the
numbers they are to have, closes every other, sets its directory, process
group, groups, user and limits, and execs. The spawner answers once the
exec has happened or failed; circusd raises the OSError a Popen would.

Requests are answered in order, so several may be sent before the first
answer is read (submit(), then result()): a watcher's start sends a batch
before a loop turn and reads it after, and the spawner clones meanwhile;
answered() waits for an answer on the caller's loop, so that result()
then takes it without a wait.

Where the spawner cannot run (the extension was not built: no compiler at
install; not Linux; it died, or did not answer within REPLY_TIMEOUT, in
the last RESTART_DELAY seconds; CIRCUS_SPAWNER=0 in circusd's environment)
circusd spawns with subprocess.Popen itself: slower with many descriptors,
the same child otherwise. When a spawner is replaced, the children whose
answers had arrived but were not read are killed; one it was starting as it
was killed, whose answer never came, is not known to circusd (the same
window as a kill -9 of circusd between a fork and its bookkeeping).
"""
import errno
import marshal
import os
import socket
import struct
import sys

MAX_FDS = 250  # what one message carries (the kernel's SCM_MAX_FD is 253)
RESTART_DELAY = 10.0  # after the spawner failed, spawn in-process this long
REPLY_TIMEOUT = 10.0  # a spawner that does not answer (stopped) is replaced
# pid, failed, errno (0: an error without one), step; then the message
REPLY = struct.Struct("=iiii")
# what the child was doing when it failed (circus/_spawn.c's order)
STEPS = ("descriptors", "working_dir", "process group", "groups", "gid", "uid",
         "rlimits", "exec", "clone")
WORKING_DIR, EXEC, CLONE = 1, 7, 8


def _load_extension(path):
    # the spawner runs with -I -S, where circus is not importable: from its
    # directory, after the standard library's
    sys.path.append(os.path.dirname(path))
    import _spawn
    return _spawn


# --- the spawner process ------------------------------------------------------
def _spawn_one(native, spec, fds, devnull):
    placement = {0: devnull, 1: devnull, 2: devnull}
    placement.update(zip(spec["targets"], fds))
    targets = sorted(placement)
    env = spec["env"]
    envp = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    executable = spec["executable"]
    if os.path.dirname(executable):
        candidates = [os.fsencode(executable)]
    else:  # searched on the child's PATH, as Popen does
        candidates = [os.fsencode(os.path.join(d, executable))
                      for d in os.get_exec_path(env)]
    cwd = spec["cwd"]
    pid, code, step = native.spawn(
        candidates, [os.fsencode(a) for a in spec["argv"]], envp,
        None if cwd is None else os.fsencode(cwd),
        targets, [placement[t] for t in targets], spec["process_group"],
        spec["groups"], -1 if spec["gid"] is None else spec["gid"],
        -1 if spec["uid"] is None else spec["uid"],
        [ident for ident, _ in spec["rlimits"]],
        # RLIM_INFINITY is -1 in Python, all ones in C
        [value % (1 << 64) for _, value in spec["rlimits"]])
    if step < 0:
        return REPLY.pack(pid, 0, 0, 0)
    return REPLY.pack(pid, 1, code, step) + (os.strerror(code) if code else "failed").encode()


def serve(sock, extension):
    """Spawn what circusd asks until it hangs up."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is circusd's to handle
    native = _load_extension(extension)
    # whatever the child does not place, its exec closes
    sock.set_inheritable(False)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    while True:
        try:
            message, fds, flags, _ = socket.recv_fds(sock, 1 << 20, MAX_FDS,
                                                     socket.MSG_CMSG_CLOEXEC)
        except ConnectionError:
            return
        if not message:
            return
        try:
            spec = marshal.loads(message)
            if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(fds) != len(spec["targets"]):
                raise OSError(errno.EMFILE, "the spawner could not receive every descriptor")
            reply = _spawn_one(native, spec, fds, devnull)
        except Exception as exc:  # the clone itself failed (EAGAIN: out of pids)
            code = getattr(exc, "errno", None) or 0
            reply = REPLY.pack(0, 1, code, CLONE) + str(exc).encode()
        finally:
            for fd in fds:
                os.close(fd)
        try:
            sock.send(reply)
        except OSError:
            return


if __name__ == "__main__":
    # the spawner process ends here: what follows is circusd's side, whose
    # imports would only slow the spawner's start
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2])
    sys.exit(0)


# --- circusd's side --------------------------------------------------------
import asyncio  # noqa: E402
import importlib.util  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

logger = logging.getLogger("circus")


def _extension_path():
    """The file of circus._spawn, wherever the install put it, or None."""
    spec = importlib.util.find_spec("circus._spawn")
    return spec.origin if spec is not None else None


class Child:
    """What circusd keeps of a child the spawner started: a Popen's pid,
    returncode and wait()."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def wait(self):
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.returncode = 255  # reaped elsewhere: the status is lost
        return self.returncode


class Spawner:
    """circusd's side of the spawner process: started at the first spawn,
    again after it died (not sooner than RESTART_DELAY after a failure).
    Thread-safe. spawn() returns a Child, or None when the spawner cannot
    serve (the caller then spawns in-process)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sock = None
        self._process = None
        self._owner = None  # pid that started it: a fork's copy is not ours
        self._retry_at = 0.0
        # requests are answered in order: numbered from 1 for each spawner
        self._generation = 0
        self._sent = self._received = 0
        self._replies = {}  # number -> a reply read before its turn
        # (loop, future) of each answered() waiting: woken whenever replies
        # are read, whoever reads them, since then the socket shows nothing
        self._waiters = []

    _built = None  # whether circus/_spawn was compiled (looked up once)

    @classmethod
    def available(cls):
        if cls._built is None:
            cls._built = (sys.platform.startswith("linux") and bool(sys.executable)
                          and _extension_path() is not None)
        return cls._built and os.environ.get("CIRCUS_SPAWNER", "1") != "0"

    def _start(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__),
                 str(theirs.fileno()), _extension_path()],
                stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()], close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        self._sock = ours
        self._owner = os.getpid()

    def _stop(self, kill=False):
        """Close (or kill) the spawner and wait for it; a child it started
        but nobody will hear of (its reply still buffered, or never sent)
        must not live on untracked: those whose replies are here are
        killed and reaped."""
        sock, process = self._sock, self._process
        unclaimed = list(self._replies.values())
        self._forget()
        if process is not None:
            if kill:
                process.kill()
            elif sock is not None:
                try:
                    sock.shutdown(socket.SHUT_WR)  # it reads end of file, and exits
                except OSError:
                    process.kill()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if sock is not None:
            sock.setblocking(False)
            while True:
                try:
                    unclaimed.append(sock.recv(4096))
                except OSError:
                    break
                if not unclaimed[-1]:
                    break
            sock.close()
        for reply in unclaimed:
            if len(reply) >= REPLY.size:
                pid, failed = REPLY.unpack_from(reply)[:2]
                if pid and not failed:
                    _kill_and_reap(pid)

    def reap_if_mine(self, pid):
        """circusd's reaper found pid exited and owned by no watcher: True
        when it was the spawner (collected; the next spawn starts another)."""
        with self._lock:
            if self._process is None or self._process.pid != pid:
                return False
            logger.warning("the spawner (pid %d) exited: another one starts at the next "
                           "spawn", pid)
            self._stop()
            return True

    def _forget(self):
        """No spawner any more (stopped, or a fork's copy of the parent's):
        what was sent to it will never be answered."""
        self._sock = self._process = None
        self._generation += 1
        self._sent = self._received = 0
        self._replies.clear()
        self._wake_waiters()

    def close(self):
        with self._lock:
            if self._owner == os.getpid():
                self._stop()
            else:
                self._forget()

    def start(self):
        """Start it now (its Python's start overlaps the caller's work);
        False when it cannot serve."""
        with self._lock:
            return self._ready()

    def _ready(self):
        if self._owner != os.getpid() and self._sock is not None:
            self._forget()  # a fork's copy of the parent's: not ours
        if self._sock is None:
            if time.monotonic() < self._retry_at or not self.available():
                return False
            try:
                self._start()
            except OSError:
                self._retry_at = time.monotonic() + RESTART_DELAY
                return False
        return True

    def submit(self, spec, fds):
        """Send a request to start the child spec describes (argv,
        executable, env, cwd, uid, gid, groups, rlimits, process_group);
        fds: {target number: descriptor}. A ticket for result(), or None
        when the spawner cannot serve (spawn in-process then). Several may
        be sent before their results are asked for: the spawner works on
        them while the caller prepares more."""
        if len(fds) > MAX_FDS:
            return None
        message = marshal.dumps(dict(spec, targets=list(fds)))
        with self._lock:
            if not self._ready():
                return None
            try:
                socket.send_fds(self._sock, [message], list(fds.values()))
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN) or \
                        isinstance(exc, TimeoutError):
                    self._failed()
                # else not its fault (a huge environment: EMSGSIZE, a closed
                # descriptor to pass: EBADF): Popen in circusd tells
                return None
            self._sent += 1
            return (self._generation, self._sent)

    async def answered(self, ticket):
        """Wait until the answer to ticket has arrived, or never will, with
        the caller's loop free meanwhile: result() then takes no wait. The
        spawner may be slow to answer (the machine busy with the children
        it starts), and a loop blocked on it answers no command. (Another
        thread's result() holds the lock while it waits, as it did.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_TIMEOUT
        generation, number = ticket
        received = None
        while True:
            woken = loop.create_future()
            with self._lock:
                if self._settled(generation, number, block=False):
                    return
                if self._received != received:  # silent for REPLY_TIMEOUT: failed
                    received, deadline = self._received, loop.time() + REPLY_TIMEOUT
                elif loop.time() >= deadline:
                    self._failed()
                    return
                # a descriptor of this waiter's own: a loop has one reader
                # per descriptor, and watchers starting together all wait
                try:
                    fd = os.dup(self._sock.fileno())
                except OSError:
                    return  # none to spare: result() waits for the answer
                self._waiters.append((loop, woken))
            try:
                loop.add_reader(fd, _set_pending, woken)
                await asyncio.wait_for(woken, deadline - loop.time())
            except TimeoutError:
                pass
            finally:
                loop.remove_reader(fd)
                os.close(fd)
                with self._lock:
                    if (loop, woken) in self._waiters:
                        self._waiters.remove((loop, woken))

    def _wake_waiters(self):
        """Under the lock: replies were read, or the spawner is gone."""
        waiters, self._waiters = self._waiters, []
        if self._owner == os.getpid():  # not a fork's copy of another's loops
            for loop, woken in waiters:
                try:
                    loop.call_soon_threadsafe(_set_pending, woken)
                except RuntimeError:
                    pass  # its loop is closed: nobody waits any more

    def _settled(self, generation, number, block):
        """Under the lock: read replies until request number's is here (or,
        without block, until none is waiting); True once it is here or can
        never come (that spawner is gone)."""
        while generation == self._generation and number not in self._replies:
            try:
                # the socket is in timeout mode, non-blocking at the system
                # level: os.read takes only what has arrived
                reply = self._sock.recv(4096) if block else os.read(self._sock.fileno(), 4096)
            except BlockingIOError:
                return False
            except OSError:  # a stopped spawner times out
                reply = b""
            if len(reply) < REPLY.size:
                self._failed()
                break
            self._received += 1
            self._replies[self._received] = reply
            if self._waiters:
                self._wake_waiters()
        return True

    def result(self, ticket, spec):
        """The Child of a submitted request; None when the spawner died
        before it answered (spawn in-process); OSError (or SubprocessError)
        as a Popen would raise when the child could not be started."""
        generation, number = ticket
        with self._lock:
            self._settled(generation, number, block=True)
            reply = self._replies.pop(number, None) if generation == self._generation else None
        if reply is None:
            return None
        pid, failed, code, step = REPLY.unpack_from(reply)
        if not failed:
            return Child(pid)
        reason = reply[REPLY.size:].decode("utf-8", "replace")
        if pid:
            Child(pid).wait()  # the failed child is ours to reap
        if step == EXEC:
            raise OSError(code, reason, spec["executable"])
        if step == WORKING_DIR:
            raise OSError(code, reason, spec["cwd"])
        if code:
            raise OSError(code, "%s: %s" % (STEPS[step], reason))
        raise subprocess.SubprocessError("%s failed: %s" % (STEPS[step], reason))

    def _failed(self):
        logger.warning("the spawner (pid %s) stopped answering: processes are spawned "
                       "by circusd itself for %.0f s",
                       self._process.pid if self._process else "?", RESTART_DELAY)
        self._stop(kill=True)
        self._retry_at = time.monotonic() + RESTART_DELAY


def _set_pending(future):
    if not future.done():
        future.set_result(None)


def _kill_and_reap(pid):
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except OSError:
        pass  # gone, or reaped by circusd's reaper already


_SPAWNER = Spawner()


def spawner():
    return _SPAWNER


def _after_fork_in_child():
    # the copy of circusd's socket is not a connection of this process
    _SPAWNER._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

