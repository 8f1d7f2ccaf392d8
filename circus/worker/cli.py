"""circus-worker's command line (chaussette's flags included) and main().
``python -m circus.worker`` runs the same."""
import argparse
import logging
import os
import sys
import threading

from circus.errors import WorkerStartError
from circus.logs import configure_logging as configure
from circus.sdnotify import ENV, READY, notify
from circus.worker import EXIT_OK, EXIT_START_FAILED, backends
from circus.worker.app import load_callable, setup_sys_path
from circus.worker.listener import describe, open_listener

logger = logging.getLogger("circus.worker")


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
    p.add_argument("--backend", default="waitress", choices=backends.NAMES,
                   help="server implementation (default: %(default)s)")
    p.add_argument("--backlog", type=int, default=2048,
                   help="listen() backlog; only for a socket the worker binds "
                        "itself (an inherited listening socket keeps circusd's)")
    p.add_argument("--threads", type=int, default=4,
                   help="waitress worker threads: requests one worker serves at once "
                        "(default: %(default)s). Raise it (16, 32) for an application "
                        "that mostly waits (database, HTTP calls, streaming); for one "
                        "that mostly computes, more threads only queue on the GIL: add "
                        "worker processes instead")
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
    p.add_argument("--log-output", dest="logoutput", default="stderr",
                   help="stderr (default), stdout (or -), or a log file: as circusd's")
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
    configure(args.loglevel, args.logoutput,
              "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
              logger_name=None)
    if args.loglevel != "debug":
        # waitress warns on every request queued behind busy threads: under
        # load that is a log line per request.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def run(args):
    """Load, bind, serve until stopped; returns the exit status."""
    setup_sys_path(args.python_path)
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
            raise WorkerStartError("pre-hook %r failed: %s: %s"
                                   % (args.pre_hook, type(exc).__name__, exc)) from exc

    app = load_callable(args.application, "application")
    sock, unix_path = open_listener(args)
    where = describe(sock)
    try:
        backend_class = backends.load(args.backend)
        try:
            backend = backend_class(app, sock, args)
        except ImportError as exc:
            raise WorkerStartError(backends.not_installed(backend_class, exc)) from exc

        def on_ready():
            logger.info("serving %s on %s%s with %s", args.application, where,
                        " (fd %d)" % args.fd if args.fd >= 0 else "", args.backend)
            if os.environ.get(ENV) and not notify(READY):
                logger.warning("could not send %s to %s=%s", READY, ENV, os.environ[ENV])

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
        backend.install_signal_handlers()
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
    except WorkerStartError as exc:
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
