"""circus-worker: the built-in WSGI worker.

Serves one WSGI application on a listening socket inherited from circusd
(``--fd N``) or bound by itself (``--host``/``--port``), with waitress
(default), meinheld or wsgiref. It takes chaussette's flags, so it can
replace ``chaussette`` in a watcher's cmd unchanged::

    [watcher:web]
    cmd = circus-worker --fd $(circus.sockets.web) --backend meinheld app.application
    use_sockets = True
    numprocesses = 4

Readiness: once the application is loaded and the server accepts, it sends
``READY=1`` to $NOTIFY_SOCKET (sd_notify), and ``STOPPING=1`` when a stop
begins.

Stopping: SIGTERM, SIGQUIT and SIGINT all stop gracefully. The worker stops
accepting (it only closes its own copy of the listening fd: the socket is
shared with circusd and the sibling workers, which keep accepting), lets the
requests in flight finish, runs the post-hook and exits once no connection
is left. A second SIGINT exits at once.

Zero downtime with keep-alive: a client that reuses a connection sends its
next request the moment it has read a response; if the server closes that
connection in between, the request meets an EOF or a reset and fails (wrk
counts a read error; nginx retries it only if it is idempotent). So during a
stop the worker never closes a connection a client may be about to use:

- every response that starts after the stop (meinheld: to a request read
  after the stop) carries ``Connection: close``, so the client closes the
  connection itself and reconnects (to a sibling: this worker no longer
  accepts). Under load every connection gets one or two more requests and
  leaves that way, within a round trip or two;
- a connection is closed from the server side only when it has been idle
  (nothing received, nothing being answered) for IDLE_GRACE seconds: a
  client that idle is not in the middle of anything, and closing an idle
  keep-alive connection is what its keep-alive timeout does anyway;
- at --graceful-timeout, whatever is left is cut (exit status 3).

With circusd this only holds if the replacement workers accept before the
old ones stop: ``ready = notify`` (the worker sends READY=1 once it accepts)
makes reload and max_age recycling wait for that.

Latency during a reload is bounded by CPU, not by this stop. With meinheld,
READY=1 goes out from the loop's first turn, after the listener is in its
epoll set (a connection arriving in between waits in the backlog and is
accepted on the first poll), and under load an old worker exits within tens
of milliseconds of SIGTERM: meinheld's one-second timer wheel and the idle
sweep are not reached (an idle meinheld worker notices the signal within
about a second: see MeinheldBackend). But a keep-alive connection stays with the worker
that accepted it: a worker the kernel leaves runnable but unscheduled (on 2
busy cores, measured up to 0.7 s) stalls every connection it holds, and a
reload adds the new workers' start to the CPU demand at that very moment.
recipes/pyramid/README.rst has the measurements.

Exit status: 0 stopped cleanly; 1 could not start (application, hook or
socket error); 2 bad command line; 3 --graceful-timeout expired and the
remaining requests or connections were cut.
"""
import argparse
import importlib
import logging
import os
import select
import signal
import socket
import sys
import threading
import time

from circus.sdnotify import notify
from circus.sockets import stackhole

logger = logging.getLogger("circus.worker")
access_logger = logging.getLogger("circus.worker.access")

BACKENDS = ("waitress", "meinheld", "wsgiref")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_USAGE = 2
EXIT_FORCED = 3

# During a stop, a connection idle for this long (nothing received, nothing
# being answered) is closed; a shorter idle time means the client may be
# about to send its next request on it.
IDLE_GRACE = 1.0
# how often a stopping worker looks for connections idle past the grace
SWEEP_INTERVAL = 0.1

# meinheld (picoev) keeps timeouts on a 128-slot wheel of one second.
MEINHELD_MAX_TIMEOUT = 127


class StartError(Exception):
    """The worker cannot start; the message says why."""


# -- command line -------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(
        prog="circus-worker",
        description="Serve a WSGI application on an inherited or bound socket.")
    p.add_argument("application",
                   help="the WSGI application, module:callable or module.callable")
    p.add_argument("arguments", nargs="*", default=[],
                   help=argparse.SUPPRESS)  # chaussette accepts (and ignores) them
    p.add_argument("--fd", type=int, default=-1,
                   help="serve on this inherited, listening socket fd (TCP or unix)")
    p.add_argument("--host", default="127.0.0.1",
                   help="bind this address when no --fd is given; unix:PATH for a "
                        "unix socket (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080,
                   help="port to bind when no --fd is given (default: %(default)s)")
    p.add_argument("--backend", default="waitress", choices=BACKENDS,
                   help="server implementation (default: %(default)s)")
    p.add_argument("--backlog", type=int, default=2048,
                   help="listen() backlog; only for a socket the worker binds "
                        "itself (an inherited listening socket keeps circusd's)")
    p.add_argument("--threads", type=int, default=4,
                   help="waitress worker threads (default: %(default)s)")
    p.add_argument("--keep-alive", type=int, default=5, metavar="SECONDS",
                   help="close keep-alive connections idle this long; 0 disables "
                        "keep-alive (waitress, meinheld; default: %(default)s)")
    p.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM/SIGQUIT/SIGINT, wait this long for requests in "
                        "flight before exiting anyway with status 3 "
                        "(default: %(default)s)")
    p.add_argument("--pre-hook", default=None,
                   help="dotted path of a callable called with the parsed arguments "
                        "before the application is loaded")
    p.add_argument("--post-hook", default=None,
                   help="dotted path of a callable called with the parsed arguments "
                        "after the server stopped")
    p.add_argument("--python-path", default=None,
                   help="directories (%s-separated) put first on sys.path" % os.pathsep)
    p.add_argument("--access-log", action="store_true",
                   help="log one line per request (off by default: it costs)")
    p.add_argument("--log-level", dest="loglevel", default="info",
                   type=str.lower,
                   choices=("debug", "info", "warning", "error", "critical"))
    p.add_argument("--log-output", dest="logoutput", default="-",
                   help="log file, '-' for stderr (default)")
    # chaussette flags kept so its command lines keep working
    p.add_argument("--address-family", default="AF_INET",
                   choices=("AF_INET", "AF_INET6", "AF_UNIX"),
                   help="with AF_UNIX, --host is a socket path")
    p.add_argument("--socket-type", default="SOCK_STREAM", choices=("SOCK_STREAM",),
                   help=argparse.SUPPRESS)
    p.add_argument("--spawn", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--use-reloader", action="store_true", help=argparse.SUPPRESS)
    return p


def configure_logging(args):
    if args.logoutput in ("-", "", None):
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(args.logoutput)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(args.loglevel.upper())
    if args.loglevel != "debug":
        # waitress warns on every request queued behind busy threads: under
        # load that is a log line per request.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)


# -- loading ------------------------------------------------------------------

def import_object(path):
    """Resolve 'pkg.mod:attr.sub' or 'pkg.mod.attr'."""
    if ":" in path:
        modname, _, attrs = path.partition(":")
        module = importlib.import_module(modname)
        names = attrs.split(".") if attrs else []
    else:
        parts = path.split(".")
        module = None
        # longest importable prefix wins; an ImportError raised *inside* the
        # module must surface, not be taken for "not a module"
        for i in range(len(parts) - 1, 0, -1):
            modname = ".".join(parts[:i])
            try:
                module = importlib.import_module(modname)
            except ModuleNotFoundError as exc:
                if exc.name and (modname == exc.name or modname.startswith(exc.name + ".")):
                    continue
                raise
            names = parts[i:]
            break
        if module is None:
            raise ImportError("%r is not module:callable nor module.callable" % path)
    obj = module
    for name in names:
        obj = getattr(obj, name)
    return obj


def load_callable(path, what):
    try:
        obj = import_object(path)
    except Exception as exc:
        raise StartError("cannot load %s %r: %s: %s"
                         % (what, path, type(exc).__name__, exc)) from exc
    if not callable(obj):
        raise StartError("%s %r is not callable" % (what, path))
    return obj


def setup_sys_path(args):
    # like `python -m`: ./app.py must be importable as `app`, whatever
    # script started us
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    if args.python_path:
        for entry in reversed(args.python_path.split(os.pathsep)):
            if entry:
                sys.path.insert(0, os.path.abspath(entry))


# -- the listening socket ------------------------------------------------------

def describe(sock):
    if sock.family == socket.AF_UNIX:
        return "unix:%s" % sock.getsockname()
    addr = sock.getsockname()
    host = "[%s]" % addr[0] if sock.family == socket.AF_INET6 else addr[0]
    return "%s:%s" % (host, addr[1])


def open_listener(args):
    """Return (socket, path to unlink at exit or None)."""
    if args.fd is not None and args.fd >= 0:
        try:
            sock = socket.socket(fileno=args.fd)
        except OSError as exc:
            raise StartError("--fd %d is not an open socket: %s" % (args.fd, exc)) from exc
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise StartError("--fd %d is not a stream socket" % args.fd)
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            # bound but not listening yet; an already listening socket is left
            # alone: listen() again would change the backlog for every sibling
            sock.listen(args.backlog)
        # close-on-exec is per fd, not shared: keeps the app's subprocesses
        # from holding the port open, without touching siblings
        sock.set_inheritable(False)
        return sock, None

    host = args.host
    if host.startswith("fd://"):  # chaussette's own spelling
        args.fd = int(host[5:])
        return open_listener(args)
    if host.startswith("unix:") or args.address_family == "AF_UNIX":
        path = host[5:] if host.startswith("unix:") else host
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.exists(path):
                import stat
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # stale socket of an earlier run
            sock.bind(path)
            sock.listen(args.backlog)
        except OSError as exc:
            sock.close()
            raise StartError("cannot bind unix:%s: %s" % (path, exc)) from exc
        return sock, path

    host = host.strip("[]")
    family = socket.AF_INET6 if args.address_family == "AF_INET6" else socket.AF_UNSPEC
    try:
        infos = socket.getaddrinfo(host, args.port, family, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE)
        af, kind, proto, _, addr = infos[0]
        sock = socket.socket(af, kind, proto)
    except OSError as exc:
        raise StartError("cannot bind %s:%s: %s" % (host, args.port, exc)) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(args.backlog)
    except OSError as exc:
        sock.close()
        raise StartError("cannot bind %s:%s: %s" % (host, args.port, exc)) from exc
    return sock, None


def same_listener(conn, family, local):
    """True when `conn` is a connection accepted on the listener whose family
    and getsockname() are given (accepted sockets carry the listener's local
    address; the app's own client sockets have an ephemeral one)."""
    if conn.family != family:
        return False
    try:
        if conn.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return False
        mine = conn.getsockname()
    except OSError:
        return False
    if family == socket.AF_UNIX:
        return bool(mine) and mine == local
    return mine[1] == local[1] and (local[0] in ("0.0.0.0", "::") or mine[0] == local[0])


def accepted_connections(family, local):
    """Yield a socket object for each connection of this process accepted on
    the listener. The fds belong to the server: each object is detached
    (never closed) once the caller is done with it."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    import stat
    for name in names:
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            conn = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if same_listener(conn, family, local):
                yield conn
        finally:
            conn.detach()


def tcp_idle_seconds(conn):
    """How long a TCP connection has been idle, from the kernel's own
    counters: 0 while something is unread, unsent, or received and not yet
    answered (data came in after the last data went out); otherwise the
    time since data last went out (the answer, or the accept)."""
    import fcntl
    import struct
    import termios
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # struct tcp_info: tcpi_last_data_sent at byte 44, tcpi_last_data_recv
    # at byte 52, in milliseconds ago
    sent_ago, received_ago = struct.unpack_from("I4xI", info, 44)
    if received_ago < sent_ago:
        return 0.0  # a request is being read or answered
    for request in (termios.FIONREAD, termios.TIOCOUTQ):  # SIOCINQ, SIOCOUTQ
        if struct.unpack("i", fcntl.ioctl(conn.fileno(), request, b"\0" * 4))[0]:
            return 0.0
    return sent_ago / 1000.0


# -- access log ------------------------------------------------------------------

def access_log_middleware(app):
    """One line per request, written when the application returns."""
    log = access_logger.info
    clock = time.perf_counter

    def logged(environ, start_response):
        started = clock()
        seen = []

        def recording_start_response(status, headers, exc_info=None):
            seen.append(status)
            seen.append(headers)
            return start_response(status, headers, exc_info)

        try:
            return app(environ, recording_start_response)
        finally:
            status = seen[-2].split(" ", 1)[0] if seen else "-"
            size = "-"
            for name, value in seen[-1] if seen else ():
                if name.lower() == "content-length":
                    size = value
            query = environ.get("QUERY_STRING")
            log('%s "%s %s%s %s" %s %s %.1fms', environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", ""),
                "?" + query if query else "", environ.get("SERVER_PROTOCOL"),
                status, size, (clock() - started) * 1000)
    return logged


# -- backends ---------------------------------------------------------------------

class Backend:
    """serve(on_ready) runs until stopped and returns an exit status;
    on_signal(signum) is called from the signal handler, request_stop(signum)
    once per stop."""

    def __init__(self, app, sock, args):
        self.app = app
        self.sock = sock
        self.args = args
        self.stopping = False
        self.finish = lambda: None  # runs the post-hook, once; set by run()

    def on_signal(self, signum):
        if self.stopping:
            if signum == signal.SIGINT:
                _exit_now()
            return  # already stopping
        self.stopping = True
        logger.info("%s: stopping gracefully (up to %ss)", signal.Signals(signum).name,
                    self.args.graceful_timeout)
        self.request_stop(signum)

    def request_stop(self, signum):
        raise NotImplementedError

    def serve(self, on_ready):
        raise NotImplementedError


class WaitressBackend(Backend):
    """waitress's channels and thread pool, driven by our own loop so that a
    stop can drop the listener without closing anything shared."""

    def __init__(self, app, sock, args):
        super().__init__(app, sock, args)
        from waitress import wasyncore
        from waitress.adjustments import Adjustments
        from waitress.channel import HTTPChannel
        from waitress.server import TcpWSGIServer, UnixWSGIServer
        from waitress.task import ThreadedTaskDispatcher, WSGITask

        self.wasyncore = wasyncore
        keep_alive = args.keep_alive

        class Task(WSGITask):
            def build_response_header(self):
                # checked when the headers go out, so a request already in
                # flight when the stop began still answers Connection: close
                if self.channel.server.draining or not keep_alive:
                    self.set_close_on_finish()
                return super().build_response_header()

        class Channel(HTTPChannel):
            task_class = Task

        base = UnixWSGIServer if sock.family == socket.AF_UNIX else TcpWSGIServer

        class Server(base):
            channel_class = Channel
            draining = False

            def set_reuse_addr(self):
                pass  # the socket is shared: leave its options alone

            def accept_connections(self):
                # already listening (see open_listener); no listen() call,
                # which would reset the backlog shared with the siblings
                self.accepting = True

        unix = sock.family == socket.AF_UNIX
        adj = Adjustments(
            sockets=[sock], threads=args.threads, backlog=args.backlog,
            server_name="localhost" if unix else sock.getsockname()[0],
            # poll(): select() fails on fds >= 1024
            asyncore_use_poll=True,
            channel_timeout=keep_alive or 120,
            cleanup_interval=max(1, min(30, keep_alive or 30)))
        self.map = {}
        self.dispatcher = ThreadedTaskDispatcher()
        self.dispatcher.set_thread_count(adj.threads)
        self.server = Server(app, map=self.map, _sock=sock, dispatcher=self.dispatcher,
                             adj=adj, bind_socket=False,
                             sockinfo=(sock.family, sock.type, sock.proto,
                                       sock.getsockname()))
        if unix:
            self.server.effective_port = 0  # SERVER_PORT, as the other backends say
        self.timeout = adj.asyncore_loop_timeout

    def request_stop(self, signum):
        # responses not started yet say Connection: close from now on
        self.server.draining = True
        self.server.pull_trigger()  # wake the poll() now

    def serve(self, on_ready):
        poll = self.wasyncore.poll2
        socket_map = self.map
        timeout = self.timeout
        on_ready()
        while not self.stopping:
            poll(timeout, socket_map)
        return self._drain(poll)

    def _drain(self, poll):
        server = self.server
        server.draining = True
        # Stop accepting: drop the listener from the map and close our copy of
        # the fd. Never shutdown(): that would stop circusd and the siblings.
        self.wasyncore.dispatcher.close(server)
        notify("STOPPING=1")  # after: from now on, siblings get every connection
        deadline = time.monotonic() + self.args.graceful_timeout
        grace = min(IDLE_GRACE, self.args.graceful_timeout)
        channels = server.active_channels
        while True:
            self._close_idle(channels, grace)
            if not channels:
                break
            if time.monotonic() >= deadline:
                logger.warning("graceful timeout: closing %d connection(s)", len(channels))
                for channel in list(channels.values()):
                    channel.handle_close()
                self.dispatcher.shutdown(cancel_pending=True, timeout=0.5)
                return EXIT_FORCED
            # tasks pull the trigger when done and channels closed by their
            # client wake poll(): the timeout only paces the idle sweep
            poll(SWEEP_INTERVAL, self.map)
        self.dispatcher.shutdown(timeout=5)
        server.trigger.close()
        return EXIT_OK

    @staticmethod
    def _close_idle(channels, grace):
        """Close the channels idle for `grace` seconds. The others are
        served: their next response says Connection: close (see Task) and
        the client closes them."""
        idle_since = time.time() - grace  # waitress stamps last_activity with time()
        for channel in list(channels.values()):
            if (channel.requests or channel.request is not None or channel.total_outbufs_len
                    or channel.will_close or channel.close_when_flushed
                    or channel.last_activity > idle_since):
                continue  # being read, answered or sent, or idle for too short a time
            try:
                if channel.socket.recv(1, socket.MSG_PEEK):
                    continue  # a request just arrived: the loop reads it next
            except BlockingIOError:
                pass
            except OSError:
                pass  # reset by the client: close it all the same
            channel.handle_close()


class WsgirefBackend(Backend):
    """The standard library's server, one thread per connection, one request
    per connection (wsgiref speaks HTTP/1.0 and closes after each response)."""

    request_timeout = 60  # a silent or slow client cannot hold a thread forever

    def __init__(self, app, sock, args):
        super().__init__(app, sock, args)
        import socketserver
        from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

        backend = self
        access_log = args.access_log
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.active = 0
        self.idle = threading.Condition()

        class Handler(WSGIRequestHandler):
            timeout = self.request_timeout

            def handle(self):
                if not backend.wait_request(self.connection):
                    return
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline:
                    return
                if len(self.raw_requestline) > 65536:
                    self.requestline = self.request_version = self.command = ""
                    self.send_error(414)
                    return
                if not self.parse_request():
                    return
                handler = ServerHandler(self.rfile, self.wfile, self.get_stderr(),
                                        self.get_environ(), multithread=True)
                handler.request_handler = self
                handler.run(self.server.get_app())

            def log_request(self, code="-", size="-"):
                if access_log:
                    access_logger.info('%s "%s" %s %s', self.client_address[0],
                                       self.requestline, getattr(code, "value", code), size)

            def log_message(self, format, *args):
                logger.info("%s %s", self.client_address[0], format % args)

        class Server(socketserver.ThreadingMixIn, WSGIServer):
            daemon_threads = True
            block_on_close = False

            def process_request_thread(self, request, client_address):
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    with backend.idle:
                        backend.active -= 1
                        backend.idle.notify_all()

        self.server = server = Server(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()  # the placeholder socketserver made; ours replaces it
        server.socket = sock
        if sock.family == socket.AF_UNIX:
            server.server_name, server.server_port = "localhost", 0
        else:
            server.server_name, server.server_port = sock.getsockname()[:2]
        server.setup_environ()
        server.set_app(app)
        # A blocking accept() would hang when a sibling takes the connection
        # first. (O_NONBLOCK lives on the shared file description; circusd
        # creates its sockets non-blocking already, and every other backend
        # sets it too.)
        sock.setblocking(False)
        self.unix = sock.family == socket.AF_UNIX

    def request_stop(self, signum):
        try:
            os.write(self.wake_w, b"x")  # never read: stays readable for every waiter
        except BlockingIOError:
            pass

    def wait_request(self, conn):
        """Wait for the request's first bytes. False when there is none to
        serve: the client stayed silent, or a stop began and the connection
        has now been silent for IDLE_GRACE since it was accepted (a client
        that has just connected is about to send its request)."""
        accepted = time.monotonic()
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        events = poller.poll(self.request_timeout * 1000)
        if any(fd == conn.fileno() for fd, _ in events):
            return True
        if events:  # woken by the stop
            poller.unregister(self.wake_r)
            grace = min(IDLE_GRACE, self.args.graceful_timeout)
            left = accepted + grace - time.monotonic()
            if left > 0 and poller.poll(left * 1000):
                return True
        return False  # socketserver closes the connection

    def serve(self, on_ready):
        server = self.server
        sock = self.sock
        listen_fd = sock.fileno()
        poller = select.poll()
        poller.register(listen_fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        unix_addr = ("127.0.0.1", 0)
        on_ready()
        while not self.stopping:
            for fd, _ in poller.poll():
                if fd != listen_fd or self.stopping:
                    continue
                try:
                    conn, addr = sock.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # a sibling was faster, or the client gave up
                if self.unix:
                    addr = unix_addr
                with self.idle:
                    self.active += 1
                try:
                    server.process_request(conn, addr)
                except Exception:
                    with self.idle:
                        self.active -= 1
                    server.handle_error(conn, addr)
                    server.shutdown_request(conn)
        poller.unregister(listen_fd)
        sock.close()  # our copy only; never shutdown() the shared listener
        notify("STOPPING=1")
        deadline = time.monotonic() + self.args.graceful_timeout
        with self.idle:
            while self.active:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("graceful timeout: %d connection(s) still open",
                                   self.active)
                    return EXIT_FORCED
                self.idle.wait(left)
        return EXIT_OK


class MeinheldBackend(Backend):
    """meinheld's C loop. It runs Python code only for requests and, when
    asked, for a watchdog once a second: Python signal handlers run then.
    So under load a stop is seen at the next request, and an idle worker
    sees it within about a second. (A helper thread reading the signal
    wake-up fd saw it at once, but a second thread made every request cost
    3% more CPU: without the chunk cache, meinheld maps and unmaps memory per
    request, and munmap in a multi-threaded process costs more.) Each
    request's greenlet gets its frame stack from the arrangements of
    circus/sockets/stackhole.py."""

    def __init__(self, app, sock, args):
        super().__init__(app, sock, args)
        import meinheld.server as ms
        try:
            # meinheld imports greenlet at its first request; a worker busy
            # importing then leaves its siblings every connection of a burst
            # (measured: 49 of wrk's 50 on the other worker)
            import greenlet  # noqa: F401
        except ImportError:
            pass
        self.ms = ms
        self.family = sock.family
        self.local = sock.getsockname()
        timeout = int(round(args.graceful_timeout)) or 1
        if timeout > MEINHELD_MAX_TIMEOUT:
            logger.warning("meinheld: --graceful-timeout capped at %ds", MEINHELD_MAX_TIMEOUT)
            timeout = MEINHELD_MAX_TIMEOUT
        self.timeout = timeout
        self.returned = threading.Event()

        ms.set_keepalive(max(0, args.keep_alive))
        ms.set_access_logger(_MeinheldAccessLog() if args.access_log else None)
        ms.set_error_logger(_MeinheldErrorLog())
        if sock.family == socket.AF_UNIX:
            # meinheld decodes every peer as IPv4: give the app sane values
            self.app = _with_environ(app, {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0",
                                           "SERVER_NAME": "localhost", "SERVER_PORT": "0"})
        else:
            # The application itself, not wrapped: one Python call more per
            # request cost 7-10% of requests/s against gunicorn's meinheld
            # worker in the benchmark. So, as there, SERVER_NAME and
            # SERVER_PORT are meinheld's defaults (127.0.0.1, 8000) on an
            # inherited socket: URLs are rebuilt from HTTP_HOST, which every
            # HTTP/1.1 request has.
            self.app = app
        # meinheld closes the listener's fd when run() returns: hand it over
        # (a list: set_listen_socket mishandles the reference of a bare int)
        ms.set_listen_socket([sock.detach()])

    def on_signal(self, signum):
        first = not self.stopping
        super().on_signal(signum)
        if first and self.stopping:
            threading.Thread(target=self._enforce_deadline, name="deadline",
                             daemon=True).start()

    def _enforce_deadline(self):
        # meinheld's own deadline is a timer of its loop, and the loop does not
        # turn while the application blocks in a request: enforce it from here
        if self.returned.wait(self.timeout + 1.5):
            return
        logger.warning("graceful timeout: the application is still busy, exiting")
        self.finish()
        _exit_now(status=EXIT_FORCED, reason=None)

    def request_stop(self, signum):
        ms = self.ms
        # requests read from now on are answered with Connection: close (and
        # their connection closed by meinheld once the response is sent);
        # meinheld chose keep-alive for those in flight when it read them:
        # their clients send one more request, read after this
        ms.set_keepalive(0)
        # stop accepting (the listener leaves the loop; nothing is closed) and
        # arm meinheld's own deadline. Never call stop() twice: each call
        # decrements meinheld's count of live events again. run() returns
        # once no connection is left.
        ms.stop(self.timeout)
        notify("STOPPING=1")
        if self.family != socket.AF_UNIX:
            threading.Thread(target=self._close_idle, name="idle", daemon=True).start()

    def _close_idle(self):
        """Until run() returns, SHUT_RD the connections idle for the grace:
        meinheld's next read() on them sees EOF and it closes them (left
        alone, it would wait for their keep-alive timeout). Only TCP tells how
        long a connection has been idle; on a unix socket, meinheld's own
        keep-alive timeout closes the idle connections.

        The fds are meinheld's: one could be closed and its number reused
        between the check and the shutdown. Nothing is accepted any more, so
        only a socket the application opens right then could be hit."""
        grace = min(IDLE_GRACE, self.args.graceful_timeout)
        while not self.returned.wait(SWEEP_INTERVAL):
            for conn in accepted_connections(self.family, self.local):
                try:
                    if tcp_idle_seconds(conn) >= grace:
                        conn.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    def serve(self, on_ready):
        ms = self.ms

        def started():
            # run() installs meinheld's own SIGINT/SIGTERM handler (a stop
            # with a 1 s deadline); put ours back, now that the loop runs
            for signum in STOP_SIGNALS:
                signal.signal(signum, _signal_handler)
            on_ready()

        ms.schedule_call(0, started)
        # last, once everything is imported: see circus/sockets/stackhole.py.
        # Calling any Python function runs the pending signal handlers.
        ms.set_watchdog(stackhole.prepare(_run_pending_signal_handlers))
        try:
            ms.run(self.app)
        except KeyboardInterrupt:
            pass
        finally:
            self.returned.set()
        if not self.stopping:
            logger.error("meinheld stopped on its own")
            return EXIT_START_FAILED
        left = sum(1 for _ in accepted_connections(self.family, self.local))
        if left:
            logger.warning("graceful timeout: %d connection(s) still open", left)
            return EXIT_FORCED
        return EXIT_OK


def _run_pending_signal_handlers():
    pass


def _with_environ(app, fixed):
    def app_with_environ(environ, start_response):
        environ.update(fixed)
        return app(environ, start_response)
    return app_with_environ


class _MeinheldAccessLog:
    """meinheld calls access(environ) after each response when set."""

    def access(self, environ):
        query = environ.get("QUERY_STRING")
        access_logger.info('%s "%s %s%s %s" %s %s %sms', environ.get("REMOTE_ADDR", "-"),
                           environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", ""),
                           "?" + query if query else "", environ.get("SERVER_PROTOCOL"),
                           environ.get("STATUS_CODE", "-"), environ.get("SEND_BYTES", "-"),
                           environ.get("REQUEST_TIME", "-"))


class _MeinheldErrorLog:
    def error(self, exc, val, tb):
        logger.error("application error", exc_info=(exc, val, tb))


BACKEND_CLASSES = {
    "waitress": WaitressBackend,
    "meinheld": MeinheldBackend,
    "wsgiref": WsgirefBackend,
}


# -- signals ----------------------------------------------------------------------

_backend = None


def _exit_now(status=EXIT_FORCED, reason="second SIGINT: exiting now"):
    if reason:
        logger.warning(reason)
    logger.info("stopped (exit status %d)", status)
    logging.shutdown()
    os._exit(status)


def _signal_handler(signum, frame):
    if _backend is not None:
        _backend.on_signal(signum)


# -- main ---------------------------------------------------------------------------

def run(args):
    global _backend
    setup_sys_path(args)
    if args.spawn is not None or args.use_reloader:
        logger.warning("--spawn and --use-reloader are chaussette options this worker ignores")

    post_hook = None
    if args.post_hook:
        post_hook = load_callable(args.post_hook, "post-hook")
    if args.pre_hook:
        pre_hook = load_callable(args.pre_hook, "pre-hook")
        try:
            pre_hook(args)
        except Exception as exc:
            raise StartError("pre-hook %r failed: %s: %s"
                             % (args.pre_hook, type(exc).__name__, exc)) from exc

    app = load_callable(args.application, "application")
    if args.access_log and args.backend == "waitress":
        app = access_log_middleware(app)

    sock, unix_path = open_listener(args)
    where = describe(sock)
    try:
        try:
            backend = BACKEND_CLASSES[args.backend](app, sock, args)
        except ImportError as exc:
            raise StartError("backend %s is not installed: %s" % (args.backend, exc)) from exc

        def on_ready():
            logger.info("serving %s on %s%s with %s", args.application, where,
                        " (fd %d)" % args.fd if args.fd >= 0 else "", args.backend)
            if os.environ.get("NOTIFY_SOCKET") and not notify("READY=1"):
                logger.warning("could not send READY=1 to NOTIFY_SOCKET=%s",
                               os.environ["NOTIFY_SOCKET"])

        once = threading.Lock()

        def finish():
            # once, whether the main thread or meinheld's deadline gets here first
            if post_hook is None or not once.acquire(blocking=False):
                return
            try:
                post_hook(args)
            except Exception:
                logger.exception("post-hook %r failed", args.post_hook)

        backend.finish = finish
        _backend = backend
        for signum in STOP_SIGNALS:
            signal.signal(signum, _signal_handler)
        try:
            status = backend.serve(on_ready)
        finally:
            finish()
    finally:
        if unix_path:
            try:
                os.unlink(unix_path)
            except OSError:
                pass
    return status


def main(argv=None):
    args = build_parser().parse_args(argv)
    configure_logging(args)
    try:
        status = run(args)
    except StartError as exc:
        logger.error("%s", exc)
        return EXIT_START_FAILED
    logger.info("stopped (exit status %d)", status)
    if status != EXIT_OK:
        # threads may still be inside the application: do not wait for them
        logging.shutdown()
        sys.stdout.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
