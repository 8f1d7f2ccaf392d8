"""circusd-metrics: the HTTP listener of `[circus] prometheus = HOST:PORT`.

A process of its own (circusd runs it as the watcher circusd-metrics), so
that a scrape never runs on circusd's loop: circusd only answers one
`metrics` command per scrape from counters it keeps as events happen.
Threads serve the requests (one per connection); scrapes are serialised.

- /metrics: the Prometheus text format, or OpenMetrics when the scraper's
  Accept header asks for it (prometheus_client's content negotiation, gzip
  included); any path other than the two below serves it too;
- /healthz (and /livez): 200 while circusd answers within --health-timeout,
  else 503 with the reason;
- /readyz: 200 when circusd is active and every autostart watcher has its
  wanted number of ready processes, else 503 naming those that have not
  (circus.metrics.health).
"""
import argparse
import logging
import os
import select
import signal
import socket
import socketserver
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from circus.client import CircusClient
from circus.errors import CallError
from circus.logs import LEVELS, configure_logging
from circus.metrics.collector import CircusCollector
from circus.metrics.health import liveness, readiness
from circus.util import DEFAULT_ENDPOINT, parse_listen_address

logger = logging.getLogger("circus")

LOG_FORMAT = "%(asctime)s circusd-metrics[%(process)d] [%(levelname)s] %(message)s"


class Circusd:
    """Calls to circusd: one persistent client for the scrapes (they are
    serialised), a fresh one for each probe, so that a probe never waits
    behind a scrape."""

    def __init__(self, endpoint, timeout=5.0, health_timeout=2.0, curve_key=None,
                 server_key=None):
        self.endpoint = endpoint
        self.timeout = timeout
        self.health_timeout = health_timeout
        self._keys = {"curve_key": curve_key, "server_key": server_key}
        self._client = None

    def _new(self, timeout):
        return CircusClient(endpoint=self.endpoint, timeout=timeout, **self._keys)

    def scrape_call(self, command, **props):
        try:
            if self._client is None:
                self._client = self._new(self.timeout)
            return self._client.call({"command": command, "properties": props})
        except CallError:
            self.close()  # a late reply must not wait on a reused socket
            raise

    def probe_call(self, command, **props):
        client = self._new(self.health_timeout)
        try:
            return client.call({"command": command, "properties": props})
        finally:
            client.stop()

    def close(self):
        if self._client is not None:
            self._client.stop()
            self._client = None


class Exporter:
    """The WSGI application: /metrics, /healthz, /readyz."""

    def __init__(self, circusd, per_process=False):
        self.circusd = circusd
        self.collector = CircusCollector(circusd.scrape_call, per_process=per_process)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.metrics_app = make_wsgi_app(self.registry)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            check = readiness if path == "/readyz" else liveness
            ok, text = check(self.circusd.probe_call)
            if not ok:
                logger.debug("%s: %s", path, text.strip())
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8"),
                            ("Cache-Control", "no-store")])
            return [text.encode()]
        return self.metrics_app(environ, start_response)

    def close(self):
        self.collector.close()
        self.circusd.close()


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # probes and scrapes arriving together wait, not fail


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        logger.debug("%s %s", self.address_string(), fmt % args)


def serve(host, port, app):
    """A threaded WSGI server bound to host:port (OSError when it cannot be)."""
    server_class = _Server6 if ":" in host else _Server
    return make_server(host, port, app, server_class=server_class,
                       handler_class=_QuietHandler)


def follow(pid, stop):
    """Set stop when process pid exits (circusd, which started us)."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return

    def wait():
        select.select([fd], [], [])
        logger.info("circusd %d exited, stopping", pid)
        stop.set()
    threading.Thread(target=wait, name="follow-circusd", daemon=True).start()


def build_parser():
    parser = argparse.ArgumentParser(
        prog="circus-metrics",
        description="Serve a running circusd's metrics to Prometheus, and /healthz and "
                    "/readyz for probes.")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                        help="circusd's command endpoint (default: %(default)s)")
    parser.add_argument("--listen", default="127.0.0.1:9102",
                        help="HOST:PORT to serve on (default: %(default)s)")
    parser.add_argument("--per-process", action="store_true",
                        help="also CPU and memory per process (a series per pid)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds a scrape waits for circusd (default: %(default)s)")
    parser.add_argument("--health-timeout", type=float, default=2.0,
                        help="seconds /healthz and /readyz wait for circusd "
                             "(default: %(default)s)")
    parser.add_argument("--circusd-pid", type=int, default=None,
                        help="exit when this process (circusd) exits")
    parser.add_argument("--curve-key", help="CURVE: this client's secret key file")
    parser.add_argument("--server-key", help="CURVE: circusd's public key file")
    parser.add_argument("--log-level", dest="loglevel", default="info", choices=LEVELS,
                        type=str.lower)
    parser.add_argument("--log-output", dest="logoutput", default="stderr",
                        help="log file, - for stdout, or stderr (default: %(default)s)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    configure_logging(args.loglevel, args.logoutput, LOG_FORMAT)
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        logger.error("--listen: %s", exc)
        return 2
    circusd = Circusd(args.endpoint, args.timeout, args.health_timeout, args.curve_key,
                      args.server_key)
    exporter = Exporter(circusd, per_process=args.per_process)
    try:
        server = serve(host, port, exporter)
    except OSError as exc:
        logger.error("cannot listen on %s: %s", args.listen, exc)
        exporter.close()
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda *_: stop.set())
    if args.circusd_pid:
        follow(args.circusd_pid, stop)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    logger.info("serving /metrics, /healthz and /readyz on http://%s/ for circusd at %s",
                args.listen, args.endpoint)
    stop.wait()
    server.shutdown()
    server.server_close()
    exporter.close()
    logger.info("circusd-metrics stopped")
    return 0
