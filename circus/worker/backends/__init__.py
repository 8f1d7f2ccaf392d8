"""The servers a worker can run, each behind the one Backend contract.

One module per server (waitress, meinheld, wsgiref). cli.run drives every
backend the same way:

1. ``load(name)`` gives the class, once the modules in its ``requires`` are
   found installed;
2. ``Backend(app, sock, args)`` sets the server up on the listening socket
   (the access log included, when asked); nothing is served yet;
3. ``serve(on_ready)`` runs the server: it calls ``on_ready()`` once it
   accepts, and returns the exit status once stopped;
4. a stop signal calls ``on_signal``, which calls ``request_stop`` once:
   the backend stops accepting and drains, as circus/worker/__init__.py
   describes; ``serve`` returns when the drain is done or cut;
5. ``finish()`` (set by cli.run) runs the post-hook, once; a backend that
   has to exit before ``serve`` returns calls it first.
"""
import abc
import importlib
import importlib.util
import logging
import os
import signal

from circus.errors import WorkerStartError
from circus.worker import EXIT_FORCED, accesslog

logger = logging.getLogger("circus.worker")

NAMES = ("waitress", "meinheld", "wsgiref")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)

# During a stop, a connection idle for this long (nothing received, nothing
# being answered) is closed; a shorter idle time means the client may be
# about to send its next request on it.
IDLE_GRACE = 1.0
# how often a stopping worker looks for connections idle past the grace
SWEEP_INTERVAL = 0.1


class Backend(abc.ABC):
    """One server running one application on one listening socket."""

    #: the --backend name
    name = None
    #: the modules the server needs installed
    requires = ()
    #: the command that installs them, for the error that says they are not
    install = None

    def __init__(self, app, sock, args):
        self.app = self.with_access_log(app) if args.access_log else app
        self.sock = sock
        self.args = args
        self.stopping = False
        self.finish = lambda: None  # runs the post-hook, once; set by cli.run

    def with_access_log(self, app):
        """The application as this server should run it to log each
        request; servers with a hook of their own set it up instead."""
        return accesslog.middleware(app)

    @abc.abstractmethod
    def serve(self, on_ready):
        """Serve until stopped; call on_ready() once accepting. Returns
        the exit status."""

    @abc.abstractmethod
    def request_stop(self, signum):
        """Stop accepting and drain; called once, from the signal handler."""

    def install_signal_handlers(self):
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._signal_handler)

    def _signal_handler(self, signum, frame):
        self.on_signal(signum)

    def on_signal(self, signum):
        if self.stopping:
            if signum == signal.SIGINT:
                exit_now()
            return  # already stopping
        self.stopping = True
        logger.info("%s: stopping gracefully (up to %ss)", signal.Signals(signum).name,
                    self.args.graceful_timeout)
        self.request_stop(signum)


def load(name):
    """The Backend class of `name`; WorkerStartError when a module it needs
    is not installed."""
    module = importlib.import_module("%s.%s" % (__name__, name))
    cls = module.BACKEND
    missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise WorkerStartError(not_installed(cls, "no module %s" % ", ".join(missing)))
    return cls


def not_installed(cls, why):
    """The one line saying a backend is missing, and how to install it."""
    fix = "; install it with: %s" % cls.install if cls.install else ""
    other = " (or use --backend waitress)" if cls.name != "waitress" else ""
    return "backend %s is not installed: %s%s%s" % (cls.name, why, fix, other)


def exit_now(status=EXIT_FORCED, reason="second SIGINT: exiting now"):
    """Exit without waiting for the threads still inside the application."""
    if reason:
        logger.warning(reason)
    logger.info("stopped (exit status %d)", status)
    logging.shutdown()
    os._exit(status)
