"""circusd: run the watchers and sockets of a configuration file.

Exit status: 0 after a stop by SIGTERM, SIGINT or SIGQUIT; 1 when the
pidfile names a circusd still running; 2 for a configuration error (one
line on stderr naming the file, the section and the option; nothing is
started nor bound); 3 when a socket or a ZeroMQ endpoint cannot be bound.
"""
import argparse
import logging
import os
import sys

from circus import fdtable
from circus.logs import LEVELS, configure_logging

LOG_FORMAT = "%(asctime)s circus[%(process)d] [%(levelname)s] %(message)s"


def default_config():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.ini")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="circusd", description="Run the watchers and sockets of a circus config file.")
    parser.add_argument("config", nargs="?", default=None,
                        help="configuration file (default: the built-in demo, "
                             "a WSGI app served on http://127.0.0.1:8080)")
    parser.add_argument("--daemon", action="store_true",
                        help="detach and run in the background; this command exits once the "
                             "daemon runs (status 0) or could not start (status 3)")
    parser.add_argument("--pidfile", help="write circusd's pid to this file")
    parser.add_argument("--log-level", dest="loglevel", default=None, choices=LEVELS,
                        type=str.lower, help="log level (default: info)")
    parser.add_argument("--log-output", dest="logoutput", default=None,
                        help="log file, - for stdout, or stderr (default: -)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def daemonize():
    """Double fork: no controlling terminal, not a process group leader.

    The working directory is kept: relative paths of the config (stream
    files, working_dir, includes) must mean the same after a SIGHUP reload
    as they did at start.

    The launching process waits until the daemon reports that it runs (or
    why it could not start) and exits with a status that says so. Returns,
    in the daemon, report(error=None) to call once started or failed."""
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        os._exit(_wait_for_daemon(read_end))
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)

    def report(error=None):
        nonlocal write_end
        if write_end is None:
            return
        try:
            os.write(write_end, ("ok\n" if error is None else "error %s\n" % error).encode())
        except OSError:
            pass  # the launcher is gone: nobody to tell
        os.close(write_end)
        write_end = None
    return report


def _wait_for_daemon(read_end):
    data = b""
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        data += chunk
    text = data.decode(errors="replace").strip()
    if text == "ok":
        return 0
    reason = text[len("error "):] if text.startswith("error ") else "exited during its start"
    print("circusd: the daemon could not start: %s" % reason, file=sys.stderr)
    return 3


def running_pid(pidfile):
    """The pid of a circusd still running according to pidfile, if any."""
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return None  # stale: that process is gone
    # a recycled pid that is not a circusd does not count
    return pid if b"circus" in cmdline else None


def remove_pidfile(pidfile):
    """Remove pidfile if it is still ours."""
    try:
        with open(pidfile) as handle:
            if handle.read().strip() != str(os.getpid()):
                return
        os.unlink(pidfile)
    except (OSError, ValueError):
        pass


def announce_built_in(arbiter):
    """The built-in config serves HTTP on its TCP sockets: once started, say
    where (or that nothing does, when its workers could not start). Of other
    configs circusd knows only the socket's address, logged at its bind."""
    import socket

    def started(topic, msg):
        if topic != "arbiter.start":
            return
        from circus.states import ProcessState
        log = logging.getLogger("circus")
        serving = any(p.state is ProcessState.READY for w in arbiter.iter_watchers()
                      if w.use_sockets for p in w.live_processes())
        for sock in arbiter.sockets.values():
            if sock.family == socket.AF_UNIX:
                continue
            if serving:
                log.info("serving http://%s (socket %s)", sock.location, sock.name)
            else:
                log.error("not serving http://%s (socket %s): its workers could not start "
                          "(see above)", sock.location, sock.name)
    arbiter.subscribe(started)


def raise_open_files_limit():
    """circusd holds two pipes per process (what is kept of their output,
    circus.watcher.output): take every file descriptor the hard limit
    allows. Children inherit the raised soft limit: giving them back the
    old one would take a preexec_fn, which leaves subprocess's fast spawn
    path; a watcher's rlimit_nofile sets its processes' own."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        logging.getLogger("circus").debug("open files limit kept at %d: %s", soft, exc)
    else:
        logging.getLogger("circus").debug("open files limit raised from %d to %d", soft, hard)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        from circus import __version__
        print(__version__)
        return 0

    import zmq

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
    if pidfile:
        pidfile = os.path.abspath(pidfile)
        other = running_pid(pidfile)
        if other:
            print("circusd: already running with pid %d (pidfile %s)" % (other, pidfile),
                  file=sys.stderr)
            return 1
    logoutput = args.logoutput or options.get("logoutput")
    if args.daemon and logoutput in (None, "-", "stdout", "stderr"):
        logoutput = None
    try:
        configure_logging(args.loglevel or options.get("loglevel"), logoutput, LOG_FORMAT)
    except OSError as exc:
        print("circusd: cannot open the log output: %s" % exc, file=sys.stderr)
        return 2

    report = None
    if args.daemon:
        report = daemonize()
        if logoutput is None:
            logging.getLogger("circus").handlers[:] = [logging.NullHandler()]
        arbiter.subscribe(lambda topic, msg: topic == "arbiter.start" and report())
    raise_open_files_limit()
    # while circusd has no thread yet, growing its descriptor table is free
    fdtable.reserve(fdtable.PER_PROCESS * sum(w.numprocesses for w in arbiter.watchers))
    if args.config is None:
        announce_built_in(arbiter)
    arbiter.pid = os.getpid()
    if pidfile:
        with open(pidfile, "w") as handle:
            handle.write("%d\n" % os.getpid())
    failure = None
    try:
        arbiter.start()
    except (SocketError, zmq.ZMQError) as exc:
        failure = str(exc)
        if isinstance(exc, zmq.ZMQError):
            failure = "cannot bind a ZeroMQ endpoint: %s" % exc
        logging.getLogger("circus").error("%s", failure)
        print("circusd: %s" % failure, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    finally:
        if pidfile:
            remove_pidfile(pidfile)
        if report is not None:
            # last, so that the launcher finds everything cleaned up;
            # a no-op when the start was reported already
            report(failure or "stopped before it started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
