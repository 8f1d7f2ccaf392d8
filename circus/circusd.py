"""circusd: run the watchers and sockets of a configuration file."""
import argparse
import logging
import os
import sys

LOG_FORMAT = "%(asctime)s circus[%(process)d] [%(levelname)s] %(message)s"


def default_config():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.ini")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="circusd", description="Run the watchers and sockets of a circus config file.")
    parser.add_argument("config", nargs="?", default=None,
                        help="configuration file (default: the built-in demo, "
                             "a WSGI app on 127.0.0.1:8080)")
    parser.add_argument("--daemon", action="store_true", help="detach and run in the background")
    parser.add_argument("--pidfile", help="write circusd's pid to this file")
    parser.add_argument("--log-level", dest="loglevel", default=None,
                        choices=["debug", "info", "warning", "error", "critical"],
                        type=str.lower, help="log level (default: info)")
    parser.add_argument("--log-output", dest="logoutput", default=None,
                        help="log file, or - for stdout (default: -)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def configure_logging(level, output):
    handler = logging.StreamHandler(sys.stdout) if output in (None, "-", "stdout") else \
        logging.StreamHandler(sys.stderr) if output == "stderr" else \
        logging.FileHandler(output)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("circus")
    logger.handlers[:] = [handler]
    logger.setLevel(getattr(logging, (level or "info").upper()))
    logger.propagate = False


def daemonize():
    """Double fork: no controlling terminal, not a process group leader."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        from circus import __version__
        print(__version__)
        return 0

    from circus.arbiter import Arbiter
    from circus.config import ConfigError
    from circus.sockets import SocketError

    config_file = args.config or default_config()
    try:
        arbiter = Arbiter.load_from_config(config_file)
    except ConfigError as exc:
        print("circusd: configuration error: %s" % exc, file=sys.stderr)
        return 2
    options = arbiter.options
    pidfile = args.pidfile or options.get("pidfile")
    logoutput = args.logoutput or options.get("logoutput")
    if args.daemon and logoutput in (None, "-", "stdout", "stderr"):
        logoutput = None
    configure_logging(args.loglevel or options.get("loglevel"), logoutput)

    if args.daemon:
        if pidfile:
            pidfile = os.path.abspath(pidfile)
        daemonize()
        if logoutput is None:
            logging.getLogger("circus").handlers[:] = [logging.NullHandler()]
    arbiter.pid = os.getpid()
    if pidfile:
        with open(pidfile, "w") as handle:
            handle.write("%d\n" % os.getpid())
    try:
        arbiter.start()
    except SocketError as exc:
        logging.getLogger("circus").error("%s", exc)
        print("circusd: %s" % exc, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    finally:
        if pidfile:
            try:
                os.unlink(pidfile)
            except FileNotFoundError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
