"""The Arbiter owns the sockets and watchers of one circusd and its loop."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

from circus.counters import DaemonCounters
from circus.errors import ArbiterError, ConfigError, LimitError
from circus.guardian import guardian
from circus.options import (
    arbiter_kwargs,
    arbiter_options,
    check_variables,
    load,
    option_error,
    watcher_kwargs,
    watcher_section,
)
from circus.options.limits import DEFAULT_MAX_NUMPROCESSES, DEFAULT_MAX_PROCESSES, check_counts
from circus.reaper import Reaper, quiet_wakeups
from circus.running import Running
from circus.sockets import CircusSocket, CircusSockets, SocketError
from circus.spawner import spawner
from circus.states import ArbiterState, WatcherState
from circus.tasks import BackgroundTasks
from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB, DEFAULT_STATS
from circus.watcher import Watcher

if TYPE_CHECKING:
    import zmq

    from circus.controller import Controller
    from circus.procstats import Snapshot
    from circus.sdnotify import NotifyListener

# listener(topic, message): what subscribe() takes, and a watcher's publish
Listener = Callable[[str, dict[str, Any]], object]
logger = logging.getLogger("circus")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class Arbiter(Running):
    """Class used to control a list of watchers."""

    def __init__(self, watchers: Iterable[Watcher] | None,
                 endpoint: str | None = DEFAULT_ENDPOINT,
                 pubsub_endpoint: str | None = DEFAULT_PUBSUB, check_delay: float = 1.0,
                 prereload_fn: Callable[[Arbiter], object] | None = None,
                 context: zmq.Context[Any] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None,
                 stats_endpoint: str | None = None,
                 plugins: Iterable[Mapping[str, Any]] | None = None,
                 sockets: Iterable[CircusSocket] | dict[str, CircusSocket] | None = None,
                 warmup_delay: float = 0, httpd: bool = False, httpd_host: str = "localhost",
                 httpd_port: int = 8080, debug: bool = False, stream_backend: str = "thread",
                 ssh_server: str | None = None, config_file: str | None = None,
                 max_processes: int = DEFAULT_MAX_PROCESSES,
                 max_numprocesses: int = DEFAULT_MAX_NUMPROCESSES,
                 **options: Any) -> None:
        self.max_processes = int(max_processes)
        self.max_numprocesses = int(max_numprocesses)
        self.watchers: list[Watcher] = []
        self._by_name: dict[str, Watcher] = {}
        for watcher in watchers or ():
            # the counts of the watchers it starts with are checked too
            self.check_numprocesses(watcher.name, watcher.numprocesses,
                                    watcher.max_numprocesses)
            self._register(watcher)
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        # statsd = true: run circusd-stats, on the default stats endpoint
        # unless stats_endpoint names another one
        self.stats_endpoint = stats_endpoint or (DEFAULT_STATS if options.get("statsd")
                                                 else None)
        # HOST:PORT of circusd-metrics (Prometheus, /healthz, /readyz), or None
        self.prometheus = options.get("prometheus")
        self.prometheus_per_process = bool(options.get("prometheus_per_process"))
        self.check_delay = check_delay
        self.prereload_fn = prereload_fn
        self.context = context
        self.plugins = list(plugins or [])
        if isinstance(sockets, dict):
            sockets = sockets.values()
        self.sockets = CircusSockets(sockets or ())
        self.warmup_delay = float(warmup_delay)
        self.httpd = httpd
        self.httpd_host = httpd_host
        self.httpd_port = httpd_port
        self.debug = debug
        self.stream_backend = stream_backend
        self.ssh_server = ssh_server
        self.config_file = config_file
        self.options = options
        self.pid = os.getpid()
        self.started_at: float | None = None
        self.status = ArbiterState.STOPPED
        self.loop = loop
        self.reaper: Reaper | None = None
        self.controller: Controller | None = None
        self._stopping: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._notify: NotifyListener | None = None
        self._socket_configs: dict[str, Mapping[str, Any]] = {}
        # the [circus] section last applied
        self._circus_config: dict[str, Any] | None = None
        self._listeners: list[Listener] = []
        # what the `metrics` command reports, counted from the events
        self.counters = DaemonCounters()
        self.subscribe(self.counters.on_event)
        self._loop_thread: threading.Thread | None = None
        self._quitting = False
        self._reload_lock: asyncio.Lock | None = None
        # a reload on SIGHUP, the rest of a command answered before it is done
        self.background = BackgroundTasks("circusd")
        # how the run under way began (None: not running); one run at a time
        self._run_by = None
        self._run_lock = threading.Lock()
        # get_arbiter(..., background=True) started it: the documented start()
        # that follows returns at once (see start)
        self._start_pending = False

    # --- construction -----------------------------------------------------
    @classmethod
    def load_from_config(cls, config_file: str) -> Self:
        """Build an arbiter from an ini file; ConfigError if it is invalid."""
        cfg = load(config_file)
        kwargs = arbiter_kwargs(cfg)
        watchers = [build_watcher(w) for w in cfg["watchers"]]
        sockets = [CircusSocket(**s) for s in cfg["sockets"]]
        try:
            arbiter = cls(watchers, sockets=sockets, plugins=cfg["plugins"],
                          config_file=cfg["filename"], **kwargs)
        except LimitError as exc:
            raise count_error(exc, cfg["watchers"]) from None
        arbiter._socket_configs = {s["name"]: s for s in cfg["sockets"]}
        arbiter._circus_config = dict(cfg["circus"])
        return arbiter

    def _register(self, watcher: Watcher) -> None:
        key = watcher.name.lower()
        if key in self._by_name:
            raise ArbiterError("watcher %r already exists" % watcher.name)
        self._by_name[key] = watcher
        self.watchers.append(watcher)

    def _attach(self, watcher: Watcher) -> None:
        assert self.loop is not None and self.reaper is not None, "the arbiter runs"
        watcher.debug = watcher.debug or self.debug
        watcher.attach(self.loop, self.reaper, self.publish, self.sockets, self)
        if self._notify is not None:
            watcher.notify_socket = self._notify.address

    # --- events -----------------------------------------------------------
    def publish(self, topic: str, msg: dict[str, Any]) -> None:
        if self.controller is not None:
            self.controller.publish(topic, msg)
        for listener in self._listeners:
            listener(topic, msg)

    def subscribe(self, listener: Listener) -> None:
        """listener(topic, msg) is called in-process for every event."""
        self._listeners.append(listener)

    # --- running (start, start_background, stop: circus.running) ----------
    async def run(self, how: str = "run()") -> None:
        self._claim_run(how)
        try:
            await self._run()
        finally:
            self._run_by = None

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.current_thread()
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._quitting = False
        self.reaper = Reaper(self.loop, reap_strangers=os.getpid() == 1)
        self.reaper.start()
        in_main = threading.current_thread() is threading.main_thread()
        try:
            try:
                self.sockets.bind_and_listen_all()
            except SocketError as exc:
                raise self._socket_error(exc) from exc.__cause__
            for sock in self.sockets.values():
                logger.info("socket %s listening on %s (fd %d)", sock.name, sock.location,
                            sock.fileno())
            await self._start_controller()
            if self.watchers:
                # every bind went well: its Python starts while circusd
                # finishes its own start
                spawner().start()
            self._start_notify()
            if in_main:
                for signum in _STOP_SIGNALS:
                    self.loop.add_signal_handler(signum, self._on_stop_signal, signum)
                self.loop.add_signal_handler(signal.SIGHUP, self._on_hup)
                quiet_wakeups()
            for watcher in self._system_watchers():
                self._register(watcher)
            self.started_at = time.time()
            self.status = ArbiterState.STARTING
            logger.info("Starting master on pid %d", self.pid)
            for watcher in self.watchers:
                self._attach(watcher)
            if any(w.die_with_circusd for w in self.watchers):
                # its own start (a Python's) is over before the first spawns
                guardian().start()
            await self.start_watchers(autostart_only=True)
            self.status = ArbiterState.ACTIVE
            self.publish("arbiter.start", {"time": time.time()})
            logger.info("Arbiter now waiting for commands")
            await self._stopping.wait()
        finally:
            await self._shutdown(in_main)

    async def _shutdown(self, in_main: bool) -> None:
        assert self.loop is not None and self.reaper is not None and self._done is not None
        self.status = ArbiterState.STOPPING
        try:
            await self.stop_watchers(skip_stopped=True)
        finally:
            self.publish("arbiter.stop", {"time": time.time()})
            if in_main:
                for signum in _STOP_SIGNALS + (signal.SIGHUP,):
                    self.loop.remove_signal_handler(signum)
            if self.controller is not None:
                await self.controller.stop()
                self.controller = None
            if self._notify is not None:
                self._notify.close()
                self._notify = None
            self.sockets.close_all()
            self.reaper.close()
            # nothing left to guard (another arbiter of this process may
            # still have processes): the guardian exits
            guardian().close_if_idle()
            spawner().close()  # started again by the next spawn, if any
            self.status = ArbiterState.STOPPED
            self._quitting = False
            self._done.set()
            logger.info("Arbiter exiting")

    def _socket_error(self, exc: SocketError) -> SocketError:
        """exc, naming the file, section and option of the socket's config."""
        sock = getattr(exc, "socket", None)
        conf = self._socket_configs.get(getattr(sock, "name", None) or "")
        if conf is None or not getattr(conf, "from_file", False):
            return exc
        where = conf.where_of("path" if sock.path else "port")  # type: ignore
        return SocketError("%s: %s" % (where, exc))

    async def _start_controller(self) -> None:
        if self.endpoint is None and self.pubsub_endpoint is None:
            return
        from circus.controller import Controller
        self.controller = Controller(self, self.endpoint, self.pubsub_endpoint,
                                     context=self.context, **_curve_options(self.options))
        await self.controller.start()

    def _system_watchers(self) -> list[Watcher]:
        """Plugins, circusd-stats, circusd-metrics and the web console run as
        watchers of their own (named plugin:NAME, circusd-stats,
        circusd-metrics and circushttpd), visible to every command."""
        watchers = []
        if self.plugins:
            from circus.system_watchers import make_plugin_watcher
            watchers += [make_plugin_watcher(conf, self) for conf in self.plugins]
        if self.stats_endpoint:
            from circus.system_watchers import make_stats_watcher
            watchers.append(make_stats_watcher(self))
        if self.httpd and "circushttpd" not in self._by_name:
            from circus.system_watchers import make_httpd_watcher
            watchers.append(make_httpd_watcher(self))
        if self.prometheus:
            from circus.system_watchers import make_metrics_watcher
            watchers.append(make_metrics_watcher(self))
        return [w for w in watchers if w.name.lower() not in self._by_name]

    def _start_notify(self) -> None:
        if any(w.ready == "notify" for w in self.watchers) or self._notify_wanted():
            from circus.sdnotify import NotifyListener
            self._notify = NotifyListener(self.loop, self._on_notify)

    def _notify_wanted(self) -> bool:
        # add_watcher may bring notify watchers later: open the socket anyway
        # when a controller exists; it costs one idle fd
        return self.controller is not None

    def _on_notify(self, pid: int, message: Mapping[str, str]) -> None:
        for watcher in self.watchers:
            if pid in watcher.processes:
                if message.get("READY") == "1":
                    watcher.process_ready(pid)
                return
        logger.debug("notify message from unknown pid %d: %r", pid, message)

    def _on_stop_signal(self, signum: int) -> None:
        logger.info("Got signal %s, stopping", signal.Signals(signum).name)
        self._begin_stop()

    def _on_hup(self) -> None:
        logger.info("Got SIGHUP, reloading the configuration")
        self.background.spawn(self._reload_on_hup(), self.loop)

    async def _reload_on_hup(self) -> None:
        # a bad file or a refused reload is one line in the log, not a
        # traceback: the error says which file, section and option
        try:
            await self.reload_config()
        except (ConfigError, ArbiterError) as exc:
            logger.error("configuration not reloaded, nothing changed: %s", exc)
        except Exception:
            logger.exception("configuration reload failed")

    def _begin_stop(self) -> None:
        assert self._stopping is not None, "the arbiter runs"
        self._quitting = True
        self._stopping.set()

    async def quit(self) -> None:
        """Stop everything; returns once every watcher has stopped."""
        self._begin_stop()
        assert self._done is not None, "the arbiter runs"
        await self._done.wait()

    def request_quit(self) -> None:
        self._begin_stop()

    def prepare_quit(self) -> None:
        """circusd is about to stop (the quit command stops the watchers
        before it asks the loop to end): from now on nothing is started."""
        self._quitting = True

    @property
    def running(self) -> bool:
        return self.status in (ArbiterState.STARTING, ArbiterState.ACTIVE)

    @property
    def stopping(self) -> bool:
        """True once circusd has been asked to stop: start, restart, reload
        and add are refused from then on, so nothing outlives the quit."""
        return self._quitting or self.status is ArbiterState.STOPPING

    def check_not_stopping(self, what: str) -> None:
        """ArbiterError when circusd is stopping; what names the refused operation."""
        if self.stopping:
            raise ArbiterError("circusd is stopping: %s refused" % what)

    # --- watchers ---------------------------------------------------------
    def iter_watchers(self, reverse: bool = True) -> list[Watcher]:
        """Watchers by priority, the highest first (reverse=False: lowest first)."""
        return sorted(self.watchers, key=lambda w: w.priority, reverse=reverse)

    def get_watcher(self, name: str) -> Watcher:
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise KeyError(name) from None

    async def start_watchers(self, autostart_only: bool = False) -> None:
        first = True
        for watcher in self.iter_watchers():
            if self.stopping:
                return
            if autostart_only and not watcher.autostart:
                continue
            if not first and self.warmup_delay > 0:
                await asyncio.sleep(self.warmup_delay)
            first = False
            await watcher.start()

    async def stop_watchers(self, reason: str | None = None, skip_stopped: bool = False) -> None:
        # reverse start order: the highest priority (plugins, databases)
        # stops last; watchers of equal priority stop together
        by_priority: dict[int, list[Watcher]] = {}
        for watcher in self.watchers:
            if watcher.lock is not None and not (skip_stopped and watcher.is_stopped()):
                by_priority.setdefault(watcher.priority, []).append(watcher)
        for priority in sorted(by_priority):
            await asyncio.gather(*(w.stop(reason=reason) for w in by_priority[priority]))

    async def restart(self) -> None:
        await self.stop_watchers()
        await self.start_watchers()

    async def reload(self, graceful: bool = True, sequential: bool = False) -> None:
        if self.prereload_fn is not None:
            self.prereload_fn(self)
        for watcher in self.iter_watchers():
            await watcher.reload(graceful=graceful, sequential=sequential)

    def numprocesses(self) -> int:
        return sum(len(w.processes) for w in self.watchers)

    def process_counts(self) -> dict[str, tuple[int, int | None]]:
        """{name: (numprocesses, max_numprocesses)} of every watcher."""
        return {w.name: (w.numprocesses, w.max_numprocesses) for w in self.watchers}

    def check_numprocesses(self, name: str, numprocesses: int,
                           max_numprocesses: int | None = None) -> None:
        """LimitError unless watcher name may be set to run numprocesses
        processes (with max_numprocesses as its own ceiling, None: the
        arbiter's): the one check of every count, see circus.options.limits.
        The check and the change it allows must happen with no await between
        them, so that two commands cannot both pass it."""
        before = self.process_counts()
        after = {k: v for k, v in before.items() if k.lower() != name.lower()}
        after[name] = (numprocesses, max_numprocesses)
        check_counts(before, after, self.max_processes, self.max_numprocesses)

    def numwatchers(self) -> int:
        return len(self.watchers)

    def statuses(self) -> dict[str, WatcherState]:
        return {w.name: w.status for w in self.watchers}

    async def add_watcher(self, name: str, cmd: str, start: bool = False,
                          **options: Any) -> Watcher:
        """Add a watcher; options are validated like a config section
        (ValueError 'option KEY: REASON')."""
        try:
            validated = watcher_section(name, dict(options, cmd=cmd))
            check_variables(validated, {n.lower() for n in self.sockets})
        except ConfigError as exc:
            raise ValueError(option_error(exc)) from None
        self.check_not_stopping("add of watcher %s" % name)
        self.check_numprocesses(name, 1 if validated.get("singleton") else
                                validated.get("numprocesses", 1),
                                validated.get("max_numprocesses"))
        watcher = build_watcher(validated)
        self._register(watcher)
        if self.loop is not None and self.reaper is not None:
            self._attach(watcher)
        self.publish("watcher.%s.add" % name, {"time": time.time(), "name": name})
        if start:
            await watcher.start()
        return watcher

    async def rm_watcher(self, name: str) -> None:
        watcher = self.get_watcher(name)
        await watcher.close()
        self.watchers.remove(watcher)
        del self._by_name[watcher.name.lower()]
        self.publish("watcher.%s.remove" % watcher.name, {"time": time.time(),
                                                         "name": watcher.name})

    # --- configuration reload ---------------------------------------------
    async def reload_config(self) -> dict[str, Any]:
        """Re-read the config file and apply what changed; unchanged
        watchers, sockets and plugins are left running untouched. A failure
        (ConfigError naming file, section and option) changes nothing: see
        circus.reload."""
        from circus.reload import reload_config
        return await reload_config(self)

    # --- information ------------------------------------------------------
    def info(self, snapshot: Snapshot | None = None) -> dict[str, Any] | str:
        # through procstats, which remembers the previous look: cpu is then
        # the usage since the last dstats, not always 0.0 from a new psutil
        # object, and children costs one /proc scan
        if snapshot is None:
            from circus.procstats import Snapshot
            snapshot = Snapshot()
        return snapshot.info(self.pid, self.started_at)

    def metrics(self, known: Mapping[str, int] | None = None,
                pids: bool = True) -> dict[str, Any]:
        """The `metrics` reply: circusd's counters and its watchers' gauges
        (known, pids: see DaemonCounters.snapshot)."""
        return self.counters.snapshot(self, known, pids)

    def get_arbiter_options(self) -> dict[str, Any]:
        """The [circus] options in effect, by their config names, and counts."""
        return dict(arbiter_options(self), numwatchers=self.numwatchers(),
                    numprocesses=self.numprocesses())


def build_watcher(options: Mapping[str, Any]) -> Watcher:
    """The Watcher of validated options (a Section of circus.options); an
    error of its constructor names where the options were written."""
    where = getattr(options, "where", None)
    from_file = where is not None and where.filename is not None
    try:
        watcher = Watcher(options["name"], **watcher_kwargs(options))
    except (ValueError, ImportError, TypeError) as exc:
        if from_file and where is not None:
            raise where.error(str(exc)) from None
        raise ValueError(str(exc)) from None
    # the reload compares a file's watchers with what the file says now;
    # those added by a program or a command are left alone
    watcher.config = options if from_file else None
    return watcher


def count_error(exc: LimitError, sections: Iterable[Mapping[str, Any]]) -> ConfigError:
    """A LimitError about a watcher of a file, as a ConfigError naming the
    file, the watcher's section and its numprocesses."""
    for section in sections:
        if section["name"].lower() == str(exc.watcher).lower():
            return section.where_of("numprocesses").error(str(exc))  # type: ignore
    return ConfigError(str(exc))


def _curve_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in ("curve_secret_key", "curve_authorized_keys")
            if options.get(k)}
