"""circus-worker: the built-in WSGI worker, driven the way circusd drives it.

The test plays circusd: it binds the listening socket, starts workers that
inherit the fd, waits for their READY=1 on a NOTIFY_SOCKET it owns (the
kernel tells which pid sent it), then talks HTTP to them.
"""
import http.client
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from circus.errors import WorkerStartError
from circus.sdnotify import notify
from circus.worker import backends
from circus.worker.app import load_callable
from support import wait_for
from support.framestack import needs_chunk_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
MEINHELD = pytest.param("meinheld", marks=pytest.mark.needs("meinheld"))
BACKENDS = ["waitress", MEINHELD, "wsgiref"]
KEEPALIVE = ("waitress", "meinheld")  # wsgiref closes after each response
KEEPALIVE_BACKENDS = ["waitress", MEINHELD]
HELLO = "tests.apps.hello:application"
SLOW = "tests.apps.slow:application"
CREDS = struct.Struct("3i")

pytestmark = pytest.mark.timeout(120)


# -- the circusd side ------------------------------------------------------------

class Notifications:
    """The NOTIFY_SOCKET end: a datagram socket that learns the sender's pid."""

    def __init__(self, address):
        self.address = address  # as put in NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.seen = []  # (pid, message)

    def _receive(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(CREDS.size))
        except TimeoutError:
            return
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = CREDS.unpack(payload[:CREDS.size])[0]
        self.seen.append((pid, data.decode()))

    def wait(self, worker, message, timeout=15.0):
        def received():
            if (worker.pid, message) in self.seen:
                return True
            code = worker.proc.poll()
            if code is not None:
                # a datagram may still be queued: read what is there first
                self._receive(0.05)
                if (worker.pid, message) in self.seen:
                    return True
                raise AssertionError("worker exited (%s) before %s:\n%s"
                                     % (code, message, worker.log()))
            return False
        wait_for(received, timeout, pause=lambda remaining: self._receive(min(remaining, 0.1)),
                 message=lambda: "%s from pid %d:\n%s" % (message, worker.pid, worker.log()))

    def close(self):
        self.sock.close()


class Worker:
    def __init__(self, proc, log_path):
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@pytest.fixture
def shortdir():
    # unix socket paths must stay under ~108 bytes: pytest's tmp_path may not
    path = tempfile.mkdtemp(prefix="cw-", dir="/tmp")
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


@pytest.fixture
def notifications():
    box = Notifications("@circus-worker-test-%s" % uuid.uuid4().hex)
    yield box
    box.close()


@pytest.fixture
def tcp_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)  # as circusd leaves its sockets
    yield sock
    sock.close()


@pytest.fixture
def spawn(tmp_path, notifications):
    """spawn(args, fds=(), ready=True, cwd=ROOT, env=None, python_args=()) -> Worker.
    Every process started is killed at teardown if still running."""
    started = []

    def start(args, fds=(), ready=True, cwd=ROOT, env=None, python_args=()):
        log_path = tmp_path / ("worker-%d.log" % len(started))
        full_env = dict(os.environ, NOTIFY_SOCKET=notifications.address, PYTHONPATH=ROOT)
        full_env.update(env or {})
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [PYTHON, *python_args, "-m", "circus.worker", *args],
                pass_fds=list(fds), cwd=cwd, env=full_env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        worker = Worker(proc, log_path)
        started.append(worker)
        if ready:
            notifications.wait(worker, "READY=1")
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.proc.wait()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10.0):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def connect(where, timeout=10.0):
    if isinstance(where, str):
        return UnixHTTPConnection(where, timeout=timeout)
    return http.client.HTTPConnection("127.0.0.1", where, timeout=timeout)


def get(where, path="/"):
    """One request on a fresh connection: (status, headers, body)."""
    conn = connect(where)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def pid_of(body):
    return int(body.split()[0].split("=")[1])


def fd_args(sock, backend, *extra):
    return ["--fd", str(sock.fileno()), "--backend", backend, *extra]


# -- serving -----------------------------------------------------------------------

@pytest.mark.parametrize("app", [HELLO, "tests.apps.hello.application"],
                         ids=["colon", "dotted"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_serves_on_inherited_fd(spawn, tcp_listener, backend, app):
    worker = spawn(fd_args(tcp_listener, backend, app), fds=[tcp_listener.fileno()])
    port = tcp_listener.getsockname()[1]
    for path in ("/", "/a/b"):
        status, _, body = get(port, path)
        assert status == 200
        assert body == "pid=%d path=%s\n" % (worker.pid, path)
    assert worker.stop() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_keeps_connection_alive(spawn, tcp_listener, backend):
    worker = spawn(fd_args(tcp_listener, backend, HELLO), fds=[tcp_listener.fileno()])
    conn = connect(tcp_listener.getsockname()[1])
    try:
        for i in range(3):
            conn.request("GET", "/%d" % i)
            response = conn.getresponse()
            assert response.status == 200
            assert response.read().decode() == "pid=%d path=/%d\n" % (worker.pid, i)
    finally:
        conn.close()
    assert worker.stop() == 0


def frame_stack_lines(worker):
    return [line for line in worker.log().splitlines() if "frame stack:" in line]


@needs_chunk_cache
@pytest.mark.needs("meinheld")
def test_meinheld_requests_reuse_one_frame_stack_chunk(spawn, tcp_listener):
    # each meinheld request runs in a new greenlet, whose frame stack starts
    # with a fresh chunk: with the chunk cache built, the first request's
    # chunk serves every later one
    worker = spawn(fd_args(tcp_listener, "meinheld", "tests.apps.framestack:application"),
                   fds=[tcp_listener.fileno()])
    port = tcp_listener.getsockname()[1]
    reused = []
    for _ in range(3):
        status, _, body = get(port)
        assert status == 200 and body.startswith("reused="), body
        reused.append(int(body.split("=")[1]))
    assert reused[1] == reused[0] + 1 and reused[2] == reused[1] + 1
    assert worker.stop() == 0
    [mode] = frame_stack_lines(worker)  # logged once
    assert mode.endswith("frame stack: chunk cache (up to 4 chunks of 16384 bytes kept "
                         "for reuse)")


@pytest.mark.needs("meinheld")
def test_meinheld_without_the_chunk_cache_says_so_once(spawn, tcp_listener):
    worker = spawn(fd_args(tcp_listener, "meinheld", "tests.apps.framestack:application"),
                   fds=[tcp_listener.fileno()], env={"CIRCUS_WORKER_CHUNK_CACHE": "0"})
    port = tcp_listener.getsockname()[1]
    for _ in range(3):
        assert get(port)[:3:2] == (200, "none")
    assert worker.stop() == 0
    [mode] = frame_stack_lines(worker)
    assert mode.endswith("frame stack: none (CIRCUS_WORKER_CHUNK_CACHE=0)")


@pytest.mark.parametrize("backend", ["waitress", "wsgiref"])
def test_threaded_backends_have_no_frame_stack_mode(spawn, tcp_listener, backend):
    # threads keep their frame stacks: the chunk cache is meinheld's alone
    worker = spawn(fd_args(tcp_listener, backend, HELLO), fds=[tcp_listener.fileno()])
    assert get(tcp_listener.getsockname()[1])[0] == 200
    assert worker.stop() == 0
    assert frame_stack_lines(worker) == []
    assert "circus.worker.framestack._chunkcache" not in worker.log()


@pytest.mark.parametrize("backend", BACKENDS)
def test_unix_socket_fd(spawn, shortdir, backend):
    path = os.path.join(shortdir, "web.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(128)
        worker = spawn(fd_args(listener, backend, HELLO), fds=[listener.fileno()])
        status, _, body = get(path, "/unix")
        assert (status, body) == (200, "pid=%d path=/unix\n" % worker.pid)
        assert worker.stop() == 0
        assert os.path.exists(path), "the worker must not remove circusd's socket"
    finally:
        listener.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_workers_share_one_fd(spawn, tcp_listener, backend):
    fd = tcp_listener.fileno()
    port = tcp_listener.getsockname()[1]
    workers = {w.pid: w for w in (spawn(fd_args(tcp_listener, backend, HELLO), fds=[fd])
                                  for _ in range(2))}
    first = pid_of(get(port)[2])
    assert first in workers
    # freeze whoever answered: the next connection can only be the other's
    os.kill(first, signal.SIGSTOP)
    try:
        other = pid_of(get(port)[2])
    finally:
        os.kill(first, signal.SIGCONT)
    assert other in workers and other != first
    for worker in workers.values():
        assert worker.stop() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_binds_host_and_port(spawn, backend):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = spawn(["--host", "127.0.0.1", "--port", str(port), "--backend", backend, HELLO])
    status, _, body = get(port, "/bound")
    assert (status, body) == (200, "pid=%d path=/bound\n" % worker.pid)
    assert worker.stop() == 0


def test_binds_unix_path(spawn, shortdir):
    path = os.path.join(shortdir, "own.sock")
    worker = spawn(["--host", "unix:" + path, HELLO])
    assert get(path)[0] == 200
    assert worker.stop() == 0
    assert not os.path.exists(path), "a socket the worker bound is removed at exit"


def test_default_backend_is_waitress(spawn, tcp_listener):
    worker = spawn(["--fd", str(tcp_listener.fileno()), HELLO], fds=[tcp_listener.fileno()])
    _, headers, _ = get(tcp_listener.getsockname()[1])
    assert headers.get("Server") == "waitress"
    assert worker.stop() == 0


def test_hooks_and_python_path(spawn, tcp_listener, tmp_path):
    appdir = tmp_path / "elsewhere"
    appdir.mkdir()
    (appdir / "otherapp.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'other']\n")
    hook_log = tmp_path / "hooks.log"
    worker = spawn(fd_args(tcp_listener, "waitress",
                           "--python-path", str(appdir),
                           "--pre-hook", "tests.apps.hooks.pre",
                           "--post-hook", "tests.apps.hooks:post",
                           "otherapp.application"),
                   fds=[tcp_listener.fileno()], env={"HOOK_LOG": str(hook_log)})
    assert hook_log.read_text() == "pre backend=waitress app=otherapp.application\n"
    assert get(tcp_listener.getsockname()[1])[2] == "other"
    assert worker.stop() == 0
    assert hook_log.read_text().splitlines() == [
        "pre backend=waitress app=otherapp.application", "post backend=waitress"]


def test_current_directory_is_importable(spawn, tcp_listener, tmp_path):
    # like chaussette: `app.application` finds ./app.py. python -P keeps
    # Python itself from putting the cwd on sys.path, as a console script would
    (tmp_path / "app.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'from cwd']\n")
    worker = spawn(fd_args(tcp_listener, "wsgiref", "app.application"),
                   fds=[tcp_listener.fileno()], cwd=str(tmp_path), python_args=["-P"])
    assert get(tcp_listener.getsockname()[1])[2] == "from cwd"
    assert worker.stop() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_access_log_only_on_request(spawn, tcp_listener, backend):
    fd = tcp_listener.fileno()
    port = tcp_listener.getsockname()[1]
    quiet = spawn(fd_args(tcp_listener, backend, HELLO), fds=[fd])
    get(port, "/quiet-path")
    assert quiet.stop() == 0
    assert "/quiet-path" not in quiet.log()

    loud = spawn(fd_args(tcp_listener, backend, "--access-log", HELLO), fds=[fd])
    get(port, "/loud-path?x=1")
    assert loud.stop() == 0
    assert "/loud-path" in loud.log() and " 200 " in loud.log()
    # one line per request, the same for every backend (meinheld used to add
    # one for the connection closing after it)
    [line] = [line for line in loud.log().splitlines() if "circus.worker.access:" in line]
    assert re.search(r'circus\.worker\.access: 127\.0\.0\.1 "GET /loud-path\?x=1 HTTP/1\.[01]" '
                     r'200 \d+ \d+\.\dms$', line), line


@pytest.mark.parametrize("args, message", [
    (["tests.apps.nosuchmodule:application"], "cannot load application"),
    (["tests.apps.hello:nosuchname"], "cannot load application"),
    (["--fd", "987", HELLO], "--fd 987 is not an open socket"),
    (["--pre-hook", "tests.apps.hello.broken", HELLO], "pre-hook"),
])
def test_start_errors_exit_1(spawn, args, message):
    worker = spawn(args, ready=False)
    assert worker.proc.wait(15) == 1
    assert message in worker.log()


# -- stopping ------------------------------------------------------------------------

def start_slow_request(port, started_file, seconds=1):
    """Send a request to the slow app and return the connection once the
    application is running it (the app writes started_file)."""
    conn = connect(port, timeout=30)
    conn.request("GET", "/?%s" % seconds)
    wait_for(lambda: os.path.exists(started_file) and open(started_file).read(),
             message="the slow request to start")
    return conn


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT, signal.SIGINT],
                         ids=["TERM", "QUIT", "INT"])
def test_stop_finishes_request_in_flight(spawn, tcp_listener, tmp_path, backend, sig):
    started = str(tmp_path / "started")
    worker = spawn(fd_args(tcp_listener, backend, "--graceful-timeout", "10", SLOW),
                   fds=[tcp_listener.fileno()], env={"SLOW_APP_STARTED": started})
    conn = start_slow_request(tcp_listener.getsockname()[1], started)
    worker.proc.send_signal(sig)
    response = conn.getresponse()
    assert response.status == 200
    assert response.read().decode() == "pid=%d slept=1.0\n" % worker.pid
    if backend == "waitress":
        # the response started after the stop: it tells the client to go
        assert "close" in response.getheader("Connection").lower().split(", ")
    elif backend == "meinheld":
        # meinheld chose keep-alive when it read the request, before the stop:
        # the next request on the connection is served, and told to go
        conn.request("GET", "/?0")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read().decode() == "pid=%d slept=0.0\n" % worker.pid
        assert response.getheader("Connection").lower() == "close"
    assert worker.proc.wait(10) == 0
    conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", KEEPALIVE_BACKENDS)
def test_stop_closes_idle_keepalive_connection_cleanly(spawn, tcp_listener, backend):
    # keep-alive far longer than the test: only the stop can close it
    worker = spawn(fd_args(tcp_listener, backend, "--keep-alive", "60", HELLO),
                   fds=[tcp_listener.fileno()])
    conn = connect(tcp_listener.getsockname()[1])
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Connection", "").lower() != "close"
    response.read()
    began = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    conn.sock.settimeout(10)
    try:
        data = conn.sock.recv(100)
    except ConnectionResetError:
        pytest.fail("the idle keep-alive connection was reset")
    assert data == b""  # FIN, not RST
    assert worker.proc.wait(10) == 0
    assert time.monotonic() - began < 5
    conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_serves_next_request_on_open_connection(spawn, tcp_listener, notifications,
                                                     backend):
    # A client sends its next request on a keep-alive connection as soon as it
    # has read a response (wsgiref: its request right after connecting). A
    # stop in between must not close the connection under it: the request is
    # served, with Connection: close, and the client is the one to close.
    worker = spawn(fd_args(tcp_listener, backend, "--keep-alive", "60", HELLO),
                   fds=[tcp_listener.fileno()])
    conn = connect(tcp_listener.getsockname()[1])
    if backend in KEEPALIVE:
        conn.request("GET", "/")
        first = conn.getresponse()
        first.read()
    else:
        import psutil
        conn.connect()
        local = conn.sock.getsockname()
        wait_for(lambda: any(c.raddr and tuple(c.raddr) == local
                             for c in psutil.Process(worker.pid).net_connections()),
                 message="the worker to accept the connection")
    worker.proc.send_signal(signal.SIGTERM)
    if backend == "meinheld":
        # an idle meinheld worker sees a signal only when it next runs Python
        # (a request, or its watchdog within a second): another client's
        # request makes it see this one now, as any request under load does
        other = connect(tcp_listener.getsockname()[1])
        other.request("GET", "/")
        assert other.getresponse().status == 200
        other.close()
    notifications.wait(worker, "STOPPING=1")
    time.sleep(0.3)  # a slow client, still well within the idle grace
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200
    assert pid_of(response.read().decode()) == worker.pid
    if backend in KEEPALIVE:
        assert "close" in response.getheader("Connection").lower().split(", ")
    conn.close()
    assert worker.proc.wait(10) == 0


@pytest.mark.slow
def test_stop_closes_silent_connection_cleanly_wsgiref(spawn, tcp_listener):
    # wsgiref has no keep-alive: its idle connection is one that sent nothing yet
    import psutil
    worker = spawn(fd_args(tcp_listener, "wsgiref", HELLO), fds=[tcp_listener.fileno()])
    port = tcp_listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    try:
        local = client.getsockname()
        wait_for(lambda: any(c.raddr and tuple(c.raddr) == local
                             for c in psutil.Process(worker.pid).net_connections()),
                 message="the worker to accept the connection")
        worker.proc.send_signal(signal.SIGTERM)
        client.settimeout(10)
        assert client.recv(100) == b""
        assert worker.proc.wait(10) == 0
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_stopped_worker_hands_over_to_sibling(spawn, tcp_listener, notifications, tmp_path,
                                              backend):
    fd = tcp_listener.fileno()
    port = tcp_listener.getsockname()[1]
    started = str(tmp_path / "started")
    args = fd_args(tcp_listener, backend, "--graceful-timeout", "20", SLOW)
    env = {"SLOW_APP_STARTED": started}
    leaving = spawn(args, fds=[fd], env=env)
    staying = spawn(args, fds=[fd], env=env)

    # the slow request must land on `leaving`: freeze the other meanwhile
    os.kill(staying.pid, signal.SIGSTOP)
    try:
        conn = start_slow_request(port, started, seconds=2)
    finally:
        os.kill(staying.pid, signal.SIGCONT)
    assert open(started).read() == "%d\n" % leaving.pid

    leaving.proc.send_signal(signal.SIGTERM)
    notifications.wait(leaving, "STOPPING=1")
    # `leaving` no longer accepts; its request is still running
    for _ in range(5):
        status, _, body = get(port, "/?0")
        assert status == 200 and pid_of(body) == staying.pid
    assert leaving.proc.poll() is None

    response = conn.getresponse()
    assert response.status == 200
    assert pid_of(response.read().decode()) == leaving.pid
    conn.close()
    assert leaving.proc.wait(10) == 0
    assert get(port, "/?0")[0] == 200  # the socket is still fine for the sibling
    assert staying.stop() == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_graceful_timeout_expires(spawn, tcp_listener, tmp_path, backend):
    started = str(tmp_path / "started")
    worker = spawn(fd_args(tcp_listener, backend, "--graceful-timeout", "1", SLOW),
                   fds=[tcp_listener.fileno()], env={"SLOW_APP_STARTED": started})
    conn = start_slow_request(tcp_listener.getsockname()[1], started, seconds=30)
    began = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 3  # documented: requests were cut
    assert time.monotonic() - began < 5
    conn.close()


@pytest.mark.slow
def test_second_sigint_exits_at_once(spawn, tcp_listener, tmp_path):
    started = str(tmp_path / "started")
    worker = spawn(fd_args(tcp_listener, "waitress", "--graceful-timeout", "60", SLOW),
                   fds=[tcp_listener.fileno()], env={"SLOW_APP_STARTED": started})
    conn = start_slow_request(tcp_listener.getsockname()[1], started, seconds=30)
    worker.proc.send_signal(signal.SIGINT)
    wait_for(lambda: "stopping gracefully" in worker.log(), message="the first SIGINT")
    worker.proc.send_signal(signal.SIGINT)
    assert worker.proc.wait(10) == 3
    conn.close()


# -- notify ---------------------------------------------------------------------------

def test_notify_without_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_to_missing_socket(monkeypatch, shortdir):
    monkeypatch.setenv("NOTIFY_SOCKET", os.path.join(shortdir, "nobody"))
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "@circus-nobody-%s" % uuid.uuid4().hex)
    assert notify("READY=1") is False


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_notify_sends_datagram(monkeypatch, shortdir, kind):
    if kind == "path":
        address = os.path.join(shortdir, "notify")
    else:
        address = "@circus-notify-test-%s" % uuid.uuid4().hex
    box = Notifications(address)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert notify("READY=1") is True
        box._receive(5)
        assert box.seen == [(os.getpid(), "READY=1")]
    finally:
        box.close()


def test_worker_warns_when_notify_socket_is_dead(spawn, tcp_listener, shortdir):
    worker = spawn(fd_args(tcp_listener, "waitress", HELLO), fds=[tcp_listener.fileno()],
                   env={"NOTIFY_SOCKET": os.path.join(shortdir, "gone")}, ready=False)
    wait_for(lambda: "could not send READY=1" in worker.log(), message="the warning")
    assert get(tcp_listener.getsockname()[1])[0] == 200
    assert worker.stop() == 0


# -- the package --------------------------------------------------------------------

# what a worker process may import of circus: leaves, and its own package
WORKER_MAY_IMPORT = ("circus", "circus.util", "circus.errors", "circus.logs", "circus.sdnotify")


@pytest.mark.needs("meinheld")
def test_the_worker_imports_no_daemon_module():
    # every module of the worker, as a worker process imports them
    script = (
        "import sys, circus.worker.cli, circus.worker.framestack\n"
        "from circus.worker import backends\n"
        "for name in backends.NAMES: backends.load(name)\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] == 'circus')))\n")
    out = subprocess.run([PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    imported = out.stdout.split()
    assert "circus.worker.backends.meinheld" in imported
    assert [m for m in imported if m not in WORKER_MAY_IMPORT
            and not m.startswith("circus.worker")] == []


@pytest.mark.needs("meinheld")
def test_every_backend_keeps_the_contract():
    for name in backends.NAMES:
        cls = backends.load(name)
        assert issubclass(cls, backends.Backend) and cls.name == name
        assert cls.__module__ == "circus.worker.backends." + name


@pytest.mark.needs("meinheld")
def test_a_backend_whose_server_is_missing_cannot_start(monkeypatch):
    cls = backends.load("meinheld")
    monkeypatch.setattr(cls, "requires", ("meinheld", "circus_no_such_server"))
    with pytest.raises(WorkerStartError) as raised:
        backends.load("meinheld")
    # one line that says what is missing and the commands that install it
    assert str(raised.value) == (
        "backend meinheld is not installed: no module circus_no_such_server; install it with: "
        "pip install 'greenlet>=3' && pip install --no-deps meinheld==1.0.2 "
        "(or use --backend waitress)")


def run_worker(code_before, args, cwd=ROOT):
    """circus-worker's main in a fresh interpreter, after code_before."""
    script = "import sys\n%s\nfrom circus.worker.cli import main\nsys.exit(main(sys.argv[1:]))" \
        % code_before
    return subprocess.run([PYTHON, "-c", script] + list(args), cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))


def test_meinheld_missing_says_how_to_install_it_in_one_line():
    # sys.modules[name] = None: find_spec answers "not installed"
    result = run_worker("sys.modules['meinheld'] = None",
                        ["--backend", "meinheld", "--port", "0", HELLO])
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.endswith("[ERROR] circus.worker: backend meinheld is not installed: no module "
                         "meinheld; install it with: pip install 'greenlet>=3' && "
                         "pip install --no-deps meinheld==1.0.2 (or use --backend waitress)")


def test_an_application_that_cannot_be_imported_says_why_in_one_line(tmp_path):
    (tmp_path / "needs_dep.py").write_text("import circus_no_such_dependency\n")
    (tmp_path / "raises.py").write_text("\n\nraise RuntimeError('DATABASE_URL is not set')\n")
    cases = {
        # not where Python looks: where to run it, or --python-path
        "myapp:application": "cannot load application 'myapp:application': no module named "
        "'myapp' in %s nor elsewhere on sys.path; run the worker in the directory that holds "
        "it (the watcher's working_dir) or name that directory with --python-path" % tmp_path,
        # found, but what it imports is not installed
        "needs_dep:application": "cannot load application 'needs_dep:application': "
        "ModuleNotFoundError: No module named 'circus_no_such_dependency' (imported at "
        "%s:1); install it for %s" % (tmp_path / "needs_dep.py", PYTHON),
        # found, and failing: the error and where
        "raises:application": "cannot load application 'raises:application': RuntimeError: "
        "DATABASE_URL is not set at %s:3" % (tmp_path / "raises.py"),
    }
    for app, message in cases.items():
        result = run_worker("", ["--port", "0", app], cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.endswith("[ERROR] circus.worker: " + message)


def test_load_callable_takes_both_spellings_and_attribute_paths():
    import tests.apps.hello as hello
    assert load_callable("tests.apps.hello:application", "application") is hello.application
    assert load_callable("tests.apps.hello.application", "application") is hello.application
    # without a colon, the longest importable prefix is the module
    assert load_callable("collections.OrderedDict.fromkeys", "x") == \
        __import__("collections").OrderedDict.fromkeys
    with pytest.raises(WorkerStartError, match="cannot load application 'tests.apps.nosuch.app': "
                                               "no module named 'tests.apps.nosuch' in "):
        load_callable("tests.apps.nosuch.app", "application")
    with pytest.raises(WorkerStartError, match="'tests.apps.hello' is not callable"):
        load_callable("tests.apps:hello", "application")
