"""Plugins: processes that listen to every circusd event and drive circusd.

A plugin subclasses CircusPlugin and implements handle_recv()::

    from circus.plugins import CircusPlugin

    class Logger(CircusPlugin):
        name = 'logger'

        def __init__(self, filename, **kwargs):
            super().__init__(**kwargs)
            self.filename = filename

        def handle_init(self):
            self.file = open(self.filename, 'a+')

        def handle_stop(self):
            self.file.close()

        def handle_recv(self, data):
            topic, msg = data
            self.file.write('%s::%s' % (topic, msg))

circusd runs it from a config section (every key but `use` reaches the
constructor; values are strings)::

    [plugin:logger]
    use = myproject.plugins.Logger
    filename = /var/myproject/circus.log

or from the library: ``get_arbiter(..., plugins=[{"use": "myproject.plugins.Logger",
"filename": "..."}])`` (an optional "name" key names the plugin; it defaults to
the class name in lower case). Each plugin runs in its own process under a
singleton watcher named ``plugin:NAME`` (list, status, stats, kill... treat it
like any watcher): started before, and stopped after, every other watcher;
respawned if it dies. Its stdout and stderr go to circusd's log.

By hand: ``circus-plugin --endpoint E --pubsub P [--check-delay N]
[--config key=value ...] myproject.plugins.Logger``.

In the plugin process there is one asyncio loop and no thread:

- ``handle_recv((topic, message))`` is called for every event, in order:
  topic is a str (``watcher.web.spawn``), message the decoded JSON mapping.
  An exception there is logged and the plugin goes on.
- ``handle_init()`` is called once the loop runs, before the first event;
  ``handle_stop()`` when the plugin stops (SIGTERM from circusd, Ctrl-C, or
  ``stop()``), after the last event.
- ``self.loop`` is that loop: schedule periodic or asynchronous work on it
  (``self.loop.call_later``, ``self.loop.create_task``).
- ``call(command, **props)`` sends a command and returns circusd's reply
  mapping. It blocks the loop for one round trip (up to ``call_timeout``
  seconds, then CallError), so it can be used straight from handle_recv.
  Coroutines running on the loop can ``await self.acall(...)`` instead, which
  lets events flow meanwhile.
- ``cast(command, **props)`` sends and does not wait.

circusd has no command to publish an arbitrary event; a plugin reports what
it does through the commands it sends (stop, start, restart... each produce
their usual events) and, for a state of its own, by setting a dotted option
of its choice on a watcher (``set`` -> a ``watcher.NAME.updated`` event, and
the value stays readable with ``get``/``options``). The built-in plugins do so
under their own prefix (``flapping.state``, ``http_observer.state``).
"""
import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import sys
import time

from circus.logs import LEVELS, configure_logging
from circus.tasks import BackgroundTasks
from circus.transport.endpoints import connectable
from circus.transport.subscriber import Subscriber, decode_event, decode_message

logger = logging.getLogger("circus.plugins")

# plugin watchers start before, and stop after, every ordinary watcher
PLUGIN_PRIORITY = 1000000
# the plugin's config mapping travels in the environment, base64'd JSON:
# nothing in it is then taken for a $(circus.X) variable, and it stays out
# of the process list
CONFIG_ENV = "CIRCUS_PLUGIN_CONFIG"
LOG_FORMAT = "[%(levelname)s] %(message)s"


class CircusPlugin:
    """Base class to write plugins.

    endpoint and pubsub_endpoint are circusd's command and event endpoints,
    check_delay the configured check delay, ssh_server an optional
    user@host[:port] to reach them through, config the free mapping of the
    plugin's options (a "context" key, if given, is the zmq context to use;
    "curve_key" and "server_key", the CURVE key files when circusd requires
    CURVE: circusd passes its own).
    """

    name = ""
    # seconds call() and acall() wait for circusd's answer
    call_timeout = 5.0

    def __init__(self, endpoint, pubsub_endpoint, check_delay, ssh_server=None, **config):
        self.context = config.pop("context", None)
        self.curve_key = config.pop("curve_key", None)
        self.server_key = config.pop("server_key", None)
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.check_delay = float(check_delay)
        self.ssh_server = ssh_server
        self.config = config
        # "plugin:NAME" when circusd runs this plugin, else None (set by the runner)
        self.watcher_name = None
        self.loop = asyncio.new_event_loop()
        self.running = False
        self._stopping = asyncio.Event()
        self._client = None
        self._aclient = None
        self._subscriber = None
        self._sub = None
        self._killed = False
        self._tasks = BackgroundTasks(self._label)

    # --- to override ----------------------------------------------------------
    def handle_recv(self, data):
        """Receives every event published by circusd: data is (topic, message)."""
        raise NotImplementedError

    def handle_init(self):
        """Called right before the plugin starts receiving events."""

    def handle_stop(self):
        """Called right before the plugin is stopped."""

    # --- talking to circusd ------------------------------------------------------
    def call(self, command, **props):
        """Send a command to circusd; returns the reply mapping (CallError
        when there is none within call_timeout)."""
        from circus.client import make_message
        return self._sync_client().call(make_message(command, **props))

    def cast(self, command, **props):
        """Fire-and-forget a command to circusd."""
        from circus.client import make_message
        self._sync_client().cast(make_message(command, **props))

    async def acall(self, command, **props):
        """call() for coroutines on self.loop: other events flow while waiting."""
        from circus.client import make_message
        return await self._async_client().call(make_message(command, **props))

    def _sync_client(self):
        if self._client is None:
            import zmq
            from circus.client import CircusClient
            # one zmq context (one I/O thread) for both clients and the SUB
            context = zmq.Context.shadow(self._zmq_context().underlying)
            self._client = CircusClient(context=context, endpoint=self.endpoint,
                                        timeout=self.call_timeout, ssh_server=self.ssh_server,
                                        curve_key=self.curve_key, server_key=self.server_key)
        return self._client

    def _async_client(self):
        if self._aclient is None:
            from circus.client import AsyncCircusClient
            # through the same ssh tunnel as the synchronous client, if any
            self._aclient = AsyncCircusClient(context=self._zmq_context(),
                                              endpoint=self._sync_client().endpoint,
                                              timeout=self.call_timeout,
                                              curve_key=self.curve_key,
                                              server_key=self.server_key)
        return self._aclient

    def _zmq_context(self):
        import zmq.asyncio
        if self.context is None:
            self.context = zmq.asyncio.Context.instance()
        elif not isinstance(self.context, zmq.asyncio.Context):
            self.context = zmq.asyncio.Context.shadow(self.context)
        return self.context

    # --- scheduling helpers ------------------------------------------------------
    def spawn(self, coro):
        """Run coro as a task on self.loop; its failure is logged, not lost."""
        return self._tasks.spawn(coro, self.loop)

    def every(self, seconds, coro_function):
        """Call coro_function() every `seconds` (one run at a time) until the
        plugin stops; returns the task."""
        async def repeat():
            while True:
                started = time.monotonic()
                try:
                    await coro_function()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("%s: periodic task failed", self._label())
                await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
        return self.spawn(repeat())

    def _label(self):
        return self.watcher_name or self.name or type(self).__name__

    # --- running -----------------------------------------------------------------
    def start(self):
        """Run the plugin until stop(), SIGTERM or SIGINT."""
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._run())
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            asyncio.set_event_loop(None)

    def stop(self):
        """Ask the plugin to stop: handle_stop() runs, then start() returns."""
        self._stopping.set()

    async def _run(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop)
        self._connect()
        try:
            self.handle_init()
            self.running = True
            self.spawn(self._announce_ready())
            await self._receive()
            self.running = False
            self._tasks.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.handle_stop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.loop.remove_signal_handler(signum)
            self._close()

    def _connect(self):
        import zmq
        # the handshake tells when the subscription can reach circusd
        self._subscriber = Subscriber(self._zmq_context(), self.pubsub_endpoint,
                                      curve_key=self.curve_key, server_key=self.server_key,
                                      ssh_server=self.ssh_server,
                                      monitor_events=zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._sub = self._subscriber.socket

    def _close(self):
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = self._sub = None
        for client in (self._aclient, self._client):
            if client is not None:
                client.stop()
        self._aclient = self._client = None

    async def _receive(self):
        """Hand every event to handle_recv until stop() is asked for."""
        stopping = self.loop.create_task(self._stopping.wait())
        try:
            while not stopping.done():
                readable = asyncio.ensure_future(self._sub.poll())
                await asyncio.wait([readable, stopping], return_when=asyncio.FIRST_COMPLETED)
                readable.cancel()
                await self._read_available()
                await asyncio.sleep(0)
        finally:
            stopping.cancel()
        # circusd signals a plugin right after publishing its `kill` event,
        # and the signal overtakes the events still on their way: read up to
        # that event, so handle_recv sees everything that came before the stop
        if self.watcher_name:
            deadline = self.loop.time() + 1.0
            while not self._killed:
                remaining = deadline - self.loop.time()
                if remaining <= 0 or not await self._sub.poll(remaining * 1000):
                    break
                await self._read_available()
        else:
            await self._read_available()

    async def _read_available(self, limit=256):
        """Handle the events already received, up to limit at a time: a flood
        of events must not starve the plugin's other work on the loop."""
        import zmq
        for _ in range(limit):
            if not self._sub.get(zmq.EVENTS) & zmq.POLLIN:
                return
            topic, message = decode_event(await self._sub.recv_multipart())
            if topic == "watcher.%s.kill" % self.watcher_name and \
                    message.get("process_pid") == os.getpid():
                self._killed = True
            try:
                self.handle_recv((topic, message))
            except Exception:
                logger.exception("%s: handle_recv failed on %s", self._label(), topic)

    async def _announce_ready(self):
        """Once subscribed and answered by circusd, tell circusd (sd_notify)
        this plugin is ready: circusd starts the other watchers only then,
        so the plugin sees their first events."""
        await self._subscriber.monitor.recv_multipart()
        while True:
            try:
                await self.acall("numwatchers")
                break
            except Exception as exc:
                logger.debug("%s: circusd not answering yet: %s", self._label(), exc)
        from circus.sockets.notify import notify
        notify("READY=1")

    # --- helpers for handle_recv -------------------------------------------------
    @staticmethod
    def load_message(msg):
        """A message as a mapping, whether given as a mapping, str or bytes."""
        return decode_message(msg)

    @classmethod
    def split_data(cls, data):
        """(topic, message) -> (watcher name, event, message mapping);
        the watcher name is None for topics that are not watcher.NAME.EVENT."""
        topic, msg = data
        if isinstance(topic, bytes):
            topic = topic.decode("utf-8", "replace")
        msg = cls.load_message(msg)
        if topic.startswith("watcher.") and topic.count(".") >= 2:
            name, _, event = topic[len("watcher."):].rpartition(".")
            return name, event, msg
        return None, topic.rpartition(".")[2], msg


# --- circusd side -----------------------------------------------------------------
def make_plugin_watcher(conf, arbiter):
    """The Watcher that runs one plugin mapping ({"use": ..., "name": ..., ...})
    of arbiter.plugins."""
    from circus.watcher import Watcher
    conf = dict(conf)
    use = str(conf.pop("use", "") or "").strip()
    if not use:
        raise ValueError("plugin %r: 'use' (the plugin's dotted class name) is mandatory"
                         % (conf.get("name") or conf))
    name = str(conf.pop("name", "") or use.rpartition(".")[2].lower())
    if not arbiter.endpoint or not arbiter.pubsub_endpoint:
        raise ValueError("plugin %s needs circusd's endpoint and pubsub_endpoint, "
                         "but the arbiter has endpoint=%r, pubsub_endpoint=%r"
                         % (name, arbiter.endpoint, arbiter.pubsub_endpoint))
    level = logging.getLevelName(logging.getLogger("circus").getEffectiveLevel())
    args = ["-m", "circus.plugins",
            "--endpoint", connectable(arbiter.endpoint),
            "--pubsub", connectable(arbiter.pubsub_endpoint),
            "--check-delay", str(arbiter.check_delay),
            "--name", name,
            "--circusd-pid", str(os.getpid()),
            "--log-level", str(level).lower(),
            use]
    if arbiter.ssh_server:
        args[-1:-1] = ["--ssh", arbiter.ssh_server]
    secret = (getattr(arbiter, "options", None) or {}).get("curve_secret_key")
    if secret:
        # circusd's own key pair: circusd always admits its public key
        args[-1:-1] = ["--curve-key", secret, "--server-key", secret]
    watcher_name = "plugin:" + name
    output = {"class": "circus.plugins.PluginOutput", "name": watcher_name}
    return Watcher(
        watcher_name, _quote(sys.executable), args=args,
        env={CONFIG_ENV: encode_config(conf)}, copy_env=True, copy_path=True,
        singleton=True, numprocesses=1, priority=PLUGIN_PRIORITY, respawn=True,
        ready="notify", ready_timeout=10.0, graceful_timeout=10.0,
        stdout_stream=output, stderr_stream=dict(output))


def _quote(path):
    import shlex
    return shlex.quote(path)


def encode_config(config):
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()


def decode_config(text):
    return json.loads(base64.urlsafe_b64decode(text.encode()))


_LEVELS = {"[DEBUG]": logging.DEBUG, "[INFO]": logging.INFO, "[WARNING]": logging.WARNING,
           "[ERROR]": logging.ERROR, "[CRITICAL]": logging.CRITICAL}


class PluginOutput:
    """Stream class for plugin watchers: each line a plugin writes goes to
    circusd's log, at the level its "[LEVEL]" prefix names; a line without
    one (a traceback's) keeps the level of the line before it."""

    MAX_LINE = 65536

    def __init__(self, name="plugin", **kw):
        self.name = name
        self._partial = {}
        self._level = {}
        self._log = logging.getLogger("circus")

    def __call__(self, data):
        pid = data["pid"]
        lines = (self._partial.pop(pid, b"") + data["data"]).split(b"\n")
        rest = lines.pop()
        if len(rest) > self.MAX_LINE:
            lines.append(rest)
        elif rest:
            self._partial[pid] = rest
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if not text:
                continue
            prefix = text.split(" ", 1)[0]
            if prefix in _LEVELS:
                self._level[pid] = _LEVELS[prefix]
                text = text[len(prefix):].lstrip()
            self._log.log(self._level.get(pid, logging.INFO), "%s[%d]: %s", self.name, pid, text)

    def close(self):
        self._partial.clear()
        self._level.clear()


# --- circus-plugin -----------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(prog="circus-plugin",
                                     description="Run a circus plugin.")
    parser.add_argument("--endpoint", default=None,
                        help="circusd's command endpoint (default: tcp://127.0.0.1:5555)")
    parser.add_argument("--pubsub", default=None,
                        help="circusd's pub/sub endpoint (default: tcp://127.0.0.1:5556)")
    parser.add_argument("--check-delay", type=float, default=5.0, help="the check delay")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="an option for the plugin (repeat for several)")
    parser.add_argument("--ssh", default=None, metavar="USER@HOST[:PORT]",
                        help="reach circusd through an ssh tunnel to this host")
    parser.add_argument("--curve-key", default=None, metavar="FILE",
                        help="CURVE: this client's secret key file")
    parser.add_argument("--server-key", default=None, metavar="FILE",
                        help="CURVE: circusd's public key file")
    parser.add_argument("--log-level", default="info", choices=LEVELS, type=str.lower)
    parser.add_argument("--log-output", default="stderr",
                        help="log file, - for stdout, or stderr (default: %(default)s)")
    parser.add_argument("--name", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--circusd-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("plugin", help="the plugin's fully qualified class name")
    return parser


def _stop_when_gone(plugin, circusd_pid):
    from circus.pidfd import call_when_gone

    def gone():
        logger.info("circusd (pid %d) is gone, stopping", circusd_pid)
        plugin.stop()
    call_when_gone(plugin.loop, circusd_pid, gone)


def main(argv=None):
    from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB, resolve_name
    args = build_parser().parse_args(argv)
    try:
        # every logger: the plugin's own code logs under names of its choice
        configure_logging(args.log_level, args.log_output, LOG_FORMAT, logger_name=None)
    except OSError as exc:
        print("circus-plugin: cannot open the log output: %s" % exc, file=sys.stderr)
        return 2
    config = {}
    if os.environ.get(CONFIG_ENV):
        try:
            config.update(decode_config(os.environ[CONFIG_ENV]))
        except ValueError as exc:
            logger.error("invalid %s: %s", CONFIG_ENV, exc)
            return 2
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            logger.error("--config %r is not KEY=VALUE", item)
            return 2
        config[key.strip()] = value.strip()
    # only when given: a plugin's own __init__ need not know about CURVE
    if args.curve_key:
        config["curve_key"] = args.curve_key
    if args.server_key:
        config["server_key"] = args.server_key
    endpoint = args.endpoint or DEFAULT_ENDPOINT
    pubsub = args.pubsub or DEFAULT_PUBSUB

    logger.info("Loading the plugin...")
    logger.info("Endpoint: %r", endpoint)
    logger.info("Pub/sub: %r", pubsub)
    try:
        factory = resolve_name(args.plugin)
    except (ImportError, ValueError) as exc:
        logger.error("cannot load the plugin %s: %s", args.plugin, exc)
        return 1
    try:
        plugin = factory(endpoint=endpoint, pubsub_endpoint=pubsub,
                         check_delay=args.check_delay, ssh_server=args.ssh, **config)
    except Exception as exc:
        logger.exception("cannot create the plugin %s with %s: %s", args.plugin,
                         sorted(config), exc)
        return 1
    if args.name:
        plugin.watcher_name = "plugin:" + args.name
    if args.circusd_pid:
        _stop_when_gone(plugin, args.circusd_pid)
    logger.info("Starting")
    try:
        plugin.start()
    except KeyboardInterrupt:
        pass
    except Exception:
        logger.exception("the plugin %s failed", args.plugin)
        return 1
    logger.info("Stopped")
    return 0
