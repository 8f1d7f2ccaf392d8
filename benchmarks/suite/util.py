"""Helpers shared by the scenarios: ports, processes, /proc, statistics."""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH_DIR)
WORK_DIR = os.path.join(BENCH_DIR, ".work")
# the project's own interpreter: the one running the suite
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"


def log(message, *args):
    text = message % args if args else message
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


def free_port():
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_open(port, host=LOOPBACK):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def http_ok(port, path="/"):
    """One GET over a fresh connection; True on a 200."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())
            head = sock.recv(64)
        return head.startswith(b"HTTP/1.") and head[9:12] == b"200"
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --- /proc -------------------------------------------------------------------
def children(pid):
    """Direct children of pid (from /proc, no psutil: cheap enough to poll)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(p) for p in handle.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def count_children(pid):
    """len(children(pid)) without making an int of each: a cheaper look."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid), "rb") as handle:
            return len(handle.read().split())
    except (FileNotFoundError, ProcessLookupError):
        return 0


def workers(pid):
    """The children of pid that serve or run a command: without circusd's
    spawner (circus/spawner.py), a part of circusd."""
    return [child for child in children(pid) if not is_spawner(child)]


def is_spawner(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return len(argv) > 3 and argv[3].endswith(b"circus/spawner.py")


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except OSError:
        return None


def descendants(pid):
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid):
    """utime + stime of pid itself (not its children), in seconds."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds_with_reaped(pid):
    """utime + stime of pid plus cutime + cstime: the CPU of the children it
    has reaped. Summed over a live process tree at two moments, this counts
    the CPU of workers that came and went in between, once each."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS


def rss_bytes(pid):
    with open("/proc/%d/statm" % pid) as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- processes ---------------------------------------------------------------
class Service:
    """A server process started in its own session and stopped for sure.

    stop() signals the process group, waits, then SIGKILLs whatever is left
    of the process and of every descendant it had (circusd puts each worker
    in its own process group, so the group alone is not enough)."""

    def __init__(self, name, argv, cwd=None, env=None, log_path=None, stop_signal=signal.SIGTERM):
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.proc = None
        self.started_at = None
        self._log = None

    def start(self):
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check(self):
        if not self.running():
            raise RuntimeError("%s exited with %s; log: %s\n%s" % (
                self.name, self.proc.returncode, self.log_path, self.tail()))

    def tail(self, size=3000):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace")

    def stop(self, timeout=20.0):
        if self.proc is None:
            return
        family = descendants(self.proc.pid)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s did not stop within %.0fs, killing it", self.name, timeout)
        family += descendants(self.proc.pid)
        for pid in [self.proc.pid] + family:
            _kill_quietly(pid)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        # give orphaned workers a moment to be reaped by init
        deadline = time.monotonic() + 5
        while any(alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self.proc = None


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Services:
    """Stop every service started through it, whatever happens (with-block)."""

    def __init__(self):
        self.items = []

    def add(self, service):
        self.items.append(service)
        return service

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for service in reversed(self.items):
            try:
                service.stop()
            except Exception as error:  # keep stopping the others
                log("could not stop %s: %s", service.name, error)
        self.items = []


# --- statistics --------------------------------------------------------------
def summary(values):
    """median, min, max of a list of numbers (None when empty)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def percentile(values, pct):
    values = sorted(values)
    if not values:
        return None
    rank = pct / 100.0 * (len(values) - 1)
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def run_quiet(argv, timeout=60, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kwargs)
