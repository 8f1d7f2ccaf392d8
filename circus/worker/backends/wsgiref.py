"""wsgiref: the standard library's server, one thread per connection, one
request per connection (wsgiref speaks HTTP/1.0 and closes after each
response). No dependency: the server of last resort."""
import os
import select
import socket
import threading
import time

from circus.sdnotify import STOPPING, notify
from circus.worker import EXIT_FORCED, EXIT_OK
from circus.worker.backends import IDLE_GRACE, Backend, logger


class WsgirefBackend(Backend):
    name = "wsgiref"
    requires = ()

    request_timeout = 60  # a silent or slow client cannot hold a thread forever

    def __init__(self, app, sock, args):
        super().__init__(app, sock, args)
        import socketserver
        from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

        backend = self
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
                pass  # the access log is the middleware's (Backend.with_access_log)

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
        server.set_app(self.app)
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
        notify(STOPPING)
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



BACKEND = WsgirefBackend
