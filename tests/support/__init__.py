"""What the tests share: ports, deadlines, process checks and a real circusd
subprocess (Circusd). Fixtures stay in conftest.py."""
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports are taken below the kernel's ephemeral range: a port bind(0) chose
# is free only until some client's connect() takes it as its own source
# port (a CI run failed with circusd's endpoint "already in use" so), and
# connect() never takes one below that range. None is handed out twice.
_PORTS_FROM = 20000
_PORTS_TO = max(_PORTS_FROM + 1000, _ephemeral_low())
_handed_out = set()


def free_port():
    for _ in range(1000):
        port = random.randrange(_PORTS_FROM, _PORTS_TO)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # someone else's
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port left in %d-%d" % (_PORTS_FROM, _PORTS_TO))


def wait_for(predicate, timeout=10.0, interval=0.02, message="condition", pause=None):
    """Call predicate until it returns something truthy, and return that;
    AssertionError once timeout seconds have passed.

    Between two calls: sleep interval seconds, or call pause(seconds left)
    to block on what is awaited (a socket, a queue) for at most that long.
    message names what is awaited; a callable one is called at the timeout,
    to say what was seen. support.aio.until is the same on an asyncio loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out(timeout, message)
        if pause is None:
            time.sleep(interval)
        else:
            pause(remaining)


def timed_out(timeout, message):
    if callable(message):
        message = message()
    return AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def children_of(pid):
    """The live children of pid but circusd's spawner (circus.spawner), a
    part of circusd rather than a process it manages."""
    import psutil
    try:
        return [c for c in psutil.Process(pid).children()
                if c.status() != psutil.STATUS_ZOMBIE and not is_spawner(c)]
    except psutil.NoSuchProcess:
        return []


def is_spawner(process):
    import psutil
    try:
        return is_spawner_argv(process.cmdline())
    except psutil.Error:
        return False


def is_spawner_argv(argv):
    """argv (str or bytes items) is the spawner's: a child it cloned shows
    it until its exec."""
    return len(argv) > 3 and os.fsdecode(argv[3]).endswith(os.path.join("circus", "spawner.py"))


def port_is_free(port):
    """Nothing listens on 127.0.0.1:port (a bind with SO_REUSEADDR works)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run_until_exit(argv, timeout, cwd=None):
    """Run a command that must exit by itself (a circusd refusing its
    config): (returncode, stdout, stderr, pids of every descendant seen
    while it ran, looked at every 5 ms)."""
    import psutil
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    seen = set()
    try:
        ps = psutil.Process(proc.pid)

        def exited():
            try:
                seen.update(c.pid for c in ps.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
            return proc.poll() is not None
        wait_for(exited, timeout=timeout, interval=0.005, message="%s to exit" % argv[0])
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err, seen


class LogRecords(logging.Handler):
    """The records of the circus logger while in use (caplog depends on
    propagation, which circusd's logging setup may turn off)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        logger = logging.getLogger("circus")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger("circus")
        logger.removeHandler(self)
        logger.setLevel(self._level)
def wait_exec(pids, timeout=10.0):
    """Wait until each of pids runs its own command: a vfork parent may
    resume before the exec has filled in the argv, and a child forked
    without vfork (a preexec_fn) shows circusd's command line until its
    exec, one the spawner cloned the spawner's."""
    def started(pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
            with open("/proc/%d/stat" % pid, "rb") as handle:
                ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
            with open("/proc/%d/cmdline" % ppid, "rb") as handle:
                parents = handle.read().split(b"\0")
        except OSError:
            return True  # gone: nothing to wait for
        return bool(argv[0]) and argv != parents and not is_spawner_argv(argv)
    wait_for(lambda: all(started(pid) for pid in pids), timeout=timeout,
             message="the commands' own exec")
    return pids


class Circusd:
    """A circusd subprocess running a config written from a template."""

    def __init__(self, tmp_path, config, extra_args=(), env=None, cwd=None):
        self.tmp_path = tmp_path
        self.cwd = str(cwd or tmp_path)
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.pubsub = "tcp://127.0.0.1:%d" % free_port()
        header = "[circus]\nendpoint = %s\npubsub_endpoint = %s\n" % (self.endpoint, self.pubsub)
        config = textwrap.dedent(config)
        if "[circus]" in config:
            config = config.replace("[circus]\n", header, 1)
        else:
            config = header + config
        self.config_path = tmp_path / "circus.ini"
        self.config_path.write_text(config)
        self.log_path = tmp_path / "circusd.log"
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        self.preexec_fn = None  # e.g. to start it under resource limits
        self.proc = None

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "circus.circusd", str(self.config_path), "--log-level", "debug"]
            + self.extra_args,
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
            preexec_fn=self.preexec_fn)
        if wait:
            wait_for(lambda: b"Arbiter now waiting" in self.read_log() or self.proc.poll() is not None,
                     timeout=20, message="circusd to start")
            assert self.proc.poll() is None, self.read_log().decode()
        return self

    def read_log(self):
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def call(self, command, timeout=10, **props):
        from circus.client import CircusClient
        client = CircusClient(endpoint=self.endpoint, timeout=timeout)
        try:
            return client.call({"command": command, "properties": props})
        finally:
            client.stop()

    def children(self):
        return children_of(self.proc.pid)

    def stop(self, timeout=30):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            # never leave a worker behind, even when circusd misbehaved
            import psutil
            for child in psutil.Process().children(recursive=True):
                try:
                    if child.pid != self.proc.pid and _descends_from(child, self.proc.pid):
                        child.kill()
                except psutil.Error:
                    pass
            self.log.close()


def _descends_from(proc, ancestor):
    try:
        return any(p.pid == ancestor for p in proc.parents())
    except Exception:
        return False


def http_get(port, path="/", host="127.0.0.1", timeout=5.0):
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw_call(daemon, payload, socket_type=None, timeout=5.0):
    """Send one frame (bytes, or a mapping as JSON) to daemon's ROUTER with a
    plain pyzmq socket and return the decoded reply (None if none came)."""
    import json

    import zmq
    sock = zmq.Context.instance().socket(socket_type or zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(daemon.endpoint)
        sock.send(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        if not sock.poll(timeout * 1000):
            return None
        return json.loads(sock.recv())
    finally:
        sock.close()
