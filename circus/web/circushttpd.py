"""circushttpd: run the web console with waitress.

    circushttpd --endpoint tcp://127.0.0.1:5555 [--pubsub P] [--stats-endpoint S]
                [--host 127.0.0.1] [--port 8080] [--fd N] [--url-prefix /console]
                [--auth-file users.htpasswd] [--curve-key K --server-key K]
                [--insecure] [--read-only] [--logs-role ROLE] [--trust-forwarded [ADDRS]]
                [--threads 32] [--max-streams 24]

Every setting can also come from a CIRCUSHTTPD_* environment variable
(circus.web.settings); the command line wins. circusd passes the users of
its [circus] httpd_users option that way, never on a command line.

Waitress is threaded: each live page holds a thread for its event stream,
so the pool is sized for them (--threads, 32 by default) and the number of
streams is bounded below it (--max-streams, 24: the other threads keep
serving pages and actions). meinheld is refused: an open stream stalls a
whole meinheld worker.

Safe by default: without users (--auth-file or CIRCUSHTTPD_USERS) the
console answers only on a loopback address, to loopback clients, and only
to a Host header naming this machine; --insecure lifts that (behind a proxy
that authenticates, say).

Exit status: 0 stopped by a signal; 1 could not start; 2 bad settings.
"""
import argparse
import logging
import signal
import socket
import sys

from circus.logs import LEVELS, configure_logging
from circus.web.app import MEINHELD_REFUSAL, Console
from circus.web.settings import (
    DEFAULT_MAX_STREAMS,
    DEFAULT_THREADS,
    FIELDS,
    Settings,
    SettingsError,
    is_loopback,
)
from circus.web.users import UsersError

logger = logging.getLogger("circus.web")
LOG_FORMAT = "%(asctime)s circushttpd[%(process)d] [%(levelname)s] %(message)s"


def build_parser():
    p = argparse.ArgumentParser(prog="circushttpd", description="The circus web console.")
    p.add_argument("--endpoint", action="append", dest="endpoints", metavar="ENDPOINT",
                   help="a circusd command endpoint to connect to (repeat for several)")
    p.add_argument("--pubsub", help="the first endpoint's events (default: asked to circusd)")
    p.add_argument("--stats-endpoint", dest="stats_endpoint",
                   help="the first endpoint's circusd-stats stream (default: asked to circusd)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (%(default)s)")
    p.add_argument("--fd", type=int, default=None,
                   help="serve on this inherited listening socket (a circus socket)")
    p.add_argument("--url-prefix", dest="url_prefix", help="serve under this path, e.g. /console")
    p.add_argument("--auth-file", dest="auth_file",
                   help="htpasswd-format users file (bcrypt or {SHA}; user:hash[:role])")
    p.add_argument("--secret-file", dest="secret_file",
                   help="key signing the session cookies (default: random at each start)")
    p.add_argument("--curve-key", dest="curve_key", help="CURVE secret key file of this client")
    p.add_argument("--server-key", dest="server_key", help="circusd's CURVE public key file")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="allow anonymous access from anywhere (nobody logs in!)")
    p.add_argument("--read-only", dest="read_only", action="store_true", default=None,
                   help="nobody can change anything through this console")
    p.add_argument("--logs-role", dest="logs_role",
                   choices=("viewer", "operator", "admin", "none"),
                   help="the least role that sees what the processes write (default: viewer; "
                        "none: nobody)")
    p.add_argument("--trust-forwarded", dest="trust_forwarded", nargs="?",
                   const="127.0.0.1,::1", metavar="ADDRS",
                   help="believe X-Forwarded-For/-Proto/-Host from these proxy addresses "
                        "(default when given without a value: 127.0.0.1,::1)")
    p.add_argument("--allow-endpoint", dest="allowed_endpoints", action="append",
                   metavar="GLOB", help="endpoints an admin may connect to (repeat; default: "
                                        "loopback tcp and ipc only)")
    p.add_argument("--allowed-host", dest="allowed_hosts", action="append", metavar="HOST",
                   help="Host header accepted by an unauthenticated console besides localhost")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help="waitress threads (%(default)s)")
    p.add_argument("--max-streams", dest="max_streams", type=int, default=None,
                   help="live streams open at once (default %d)" % DEFAULT_MAX_STREAMS)
    p.add_argument("--backend", default="waitress",
                   help="the WSGI server: waitress (the only one that fits, see --help)")
    p.add_argument("--log-level", dest="loglevel", default="info", choices=LEVELS)
    p.add_argument("--log-output", dest="logoutput", default="stderr",
                   help="stderr (default), stdout or a file")
    return p


def settings_from(args, environ=None):
    base = Settings.from_environ(environ)
    values = {key: getattr(base, key) for key in FIELDS}
    for key in FIELDS:
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    return Settings.from_mapping(values)


def open_listener(args):
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        sock.setblocking(False)
        return sock
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def listening_on_loopback(sock):
    if sock.family == socket.AF_UNIX:
        return True
    return is_loopback(sock.getsockname()[0])


def main(argv=None):
    args = build_parser().parse_args(argv)
    # every logger (waitress's too), to stderr: circusd reads it into its log
    # when it runs the console (circus.system_watchers.ChildLog)
    configure_logging(args.loglevel, args.logoutput, LOG_FORMAT, logger_name=None)
    if args.backend != "waitress":
        if args.backend == "meinheld":
            print("circushttpd: %s" % MEINHELD_REFUSAL, file=sys.stderr)
        else:
            print("circushttpd: unknown backend %r: waitress is the one" % args.backend,
                  file=sys.stderr)
        return 2
    try:
        settings = settings_from(args)
        console = Console(settings, connect=False)
    except (SettingsError, UsersError, OSError) as exc:
        print("circushttpd: %s" % exc, file=sys.stderr)
        return 2
    unsafe = not console.users and not settings.insecure
    if unsafe and args.fd is None and not is_loopback(args.host):
        return refuse_unsafe(args.host)
    try:
        sock = open_listener(args)
    except OSError as exc:
        print("circushttpd: cannot listen: %s" % exc, file=sys.stderr)
        return 1
    if unsafe and not listening_on_loopback(sock):
        sock.close()
        return refuse_unsafe(sock.getsockname()[0])
    if settings.max_streams > args.threads - 4:
        logger.warning("--max-streams %d leaves fewer than 4 of %d threads for pages",
                       settings.max_streams, args.threads)
    return serve(console, sock, args.threads, settings)


def refuse_unsafe(where):
    print("circushttpd: refusing to listen on %s without authentication: anyone who "
          "reaches it could run any command on this machine. Give users (--auth-file) "
          "or, if something in front of it authenticates, --insecure." % where,
          file=sys.stderr)
    return 2


def serve(console, sock, threads, settings):
    from waitress.server import create_server
    server = create_server(
        console, sockets=[sock], threads=threads, ident="circushttpd",
        # a live stream's thread learns at once that its browser has gone
        channel_request_lookahead=1,
        # a slow browser stops its own stream early, not after 16 MB
        outbuf_high_watermark=2 * 1024 * 1024,
        connection_limit=max(100, 4 * threads),
        # X-Forwarded-* are judged by the console itself (--trust-forwarded)
        clear_untrusted_proxy_headers=False)

    def stop(signum, frame):
        console.closing.set()  # the streams end, so their threads are free
        raise SystemExit(0)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, stop)
    for endpoint in settings.endpoints:
        logger.info("following circusd at %s", endpoint)
    for index, endpoint in enumerate(settings.endpoints):
        first = index == 0
        console.hub.add(endpoint, settings.pubsub if first else None,
                        settings.stats_endpoint if first else None)
    where = sock.getsockname()
    logger.info("listening on %s%s (%s, %d threads)", where if isinstance(where, str)
                else "http://%s:%s" % where[:2], settings.url_prefix or "",
                "%d users" % len(console.users) if console.users else "no authentication",
                threads)
    try:
        server.run()  # returns (having closed) on SystemExit
    except SystemExit:
        pass
    finally:
        console.close()
        try:
            server.close()
        except Exception:
            pass
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
