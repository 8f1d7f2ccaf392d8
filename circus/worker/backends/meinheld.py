"""meinheld: its C event loop, one greenlet per request (the fastest
backend; the frame-stack chunk cache of circus/worker/framestack makes each
request's greenlet cheaper still)."""
import importlib
import socket
import threading

from circus.sdnotify import STOPPING, notify
from circus.worker import EXIT_FORCED, EXIT_OK, EXIT_START_FAILED, accesslog, framestack
from circus.worker.backends import IDLE_GRACE, SWEEP_INTERVAL, Backend, exit_now, logger
from circus.worker.listener import accepted_connections, tcp_idle_seconds

# meinheld (picoev) keeps timeouts on a 128-slot wheel of one second.
MEINHELD_MAX_TIMEOUT = 127


class MeinheldBackend(Backend):
    """meinheld's C loop runs Python code only for requests and, when
    asked, for a watchdog once a second: Python signal handlers run then.
    So under load a stop is seen at the next request, and an idle worker
    sees it within about a second. (A helper thread reading the signal
    wake-up fd saw it at once, but a second thread made every request cost
    3% more CPU: without the chunk cache, meinheld maps and unmaps memory per
    request, and munmap in a multi-threaded process costs more.)"""

    name = "meinheld"
    requires = ("meinheld", "greenlet")
    # meinheld 1.0.2 pins greenlet<0.5, which does not build on Python 3.11:
    # greenlet 3 first, then meinheld without its pins
    install = "pip install 'greenlet>=3' && pip install --no-deps meinheld==1.0.2"

    def __init__(self, app, sock, args):
        import meinheld.server as ms
        self.ms = ms
        ms.set_access_logger(None)  # unless with_access_log sets one
        super().__init__(app, sock, args)
        # meinheld imports greenlet at its first request; a worker busy
        # importing then leaves its siblings every connection of a burst
        # (measured: 49 of wrk's 50 on the other worker)
        importlib.import_module("greenlet")
        self.family = sock.family
        self.local = sock.getsockname()
        timeout = int(round(args.graceful_timeout)) or 1
        if timeout > MEINHELD_MAX_TIMEOUT:
            logger.warning("meinheld: --graceful-timeout capped at %ds", MEINHELD_MAX_TIMEOUT)
            timeout = MEINHELD_MAX_TIMEOUT
        self.timeout = timeout
        self.returned = threading.Event()

        ms.set_keepalive(max(0, args.keep_alive))
        ms.set_error_logger(_MeinheldErrorLog())
        # On TCP, the application itself, not wrapped: one Python call more
        # per request cost 7-10% of requests/s against gunicorn's meinheld
        # worker in the benchmark. So, as there, SERVER_NAME and SERVER_PORT
        # are meinheld's defaults (127.0.0.1, 8000) on an inherited socket:
        # URLs are rebuilt from HTTP_HOST, which every HTTP/1.1 request has.
        if sock.family == socket.AF_UNIX:
            # meinheld decodes every peer as IPv4: give the app sane values
            self.app = _with_environ(self.app, {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0",
                                                "SERVER_NAME": "localhost", "SERVER_PORT": "0"})
        # meinheld closes the listener's fd when run() returns: hand it over
        # (a list: set_listen_socket mishandles the reference of a bare int)
        ms.set_listen_socket([sock.detach()])

    def with_access_log(self, app):
        # meinheld's own hook: no wrapper around the application
        self.ms.set_access_logger(accesslog.MeinheldAccessLog())
        return app

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
        exit_now(status=EXIT_FORCED, reason=None)

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
        notify(STOPPING)
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
            self.install_signal_handlers()
            on_ready()

        ms.schedule_call(0, started)
        framestack.prepare()
        # calling any Python function runs the pending signal handlers
        ms.set_watchdog(_run_pending_signal_handlers)
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


class _MeinheldErrorLog:
    def error(self, exc, val, tb):
        logger.error("application error", exc_info=(exc, val, tb))


BACKEND = MeinheldBackend
