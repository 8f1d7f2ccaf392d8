"""One subscription per circusd, for the whole console process.

A Connection follows one circusd: a thread reads its events
(circus.consumer.CircusConsumer) and keeps the Model current, asking
circusd (circus.client.CircusClient) about a watcher when an event says it
changed, and about everything now and then as a safety net; a second
thread reads circusd-stats' stream (circus.stats.client.StatsClient) when
there is one. Commands from pages go through a small pool of clients, so
that request threads never share a socket.
"""
import hashlib
import logging
import queue
import threading
import time

from circus.client import CallError, CircusClient
from circus.consumer import CircusConsumer
from circus.transport.endpoints import format_tcp, split_tcp
from circus.web.model import Model
from circus.web.tail import Tails

logger = logging.getLogger("circus.web")

RESYNC_INTERVAL = 15.0  # full refresh, the safety net for lost events
RETRY_INTERVAL = 2.0  # while circusd cannot be reached
REFRESH_DELAY = 0.05  # events of one burst lead to one refresh per watcher
STATS_FLUSH = 0.5  # statistics wait at most this long before reaching pages
STATS_QUIET = 0.05  # a pause this long ends a tick's burst


def endpoint_id(endpoint):
    """A short stable id for URLs: the same endpoint keeps its pages'
    addresses across console restarts."""
    return "e" + hashlib.sha256(endpoint.encode()).hexdigest()[:8]


def connectable(bound, command_endpoint):
    """Where to reach an endpoint circusd bound: a wildcard host (tcp://*:5556)
    is reached on the host of its command endpoint, which may be another
    machine (circus.transport.endpoints.connectable assumes this one)."""
    if not bound:
        return None
    parts, command = split_tcp(bound), split_tcp(command_endpoint)
    if parts is None or parts[0] not in ("*", "0.0.0.0", "::"):
        return bound
    return format_tcp(command[0] if command else "127.0.0.1", parts[1])


class ClientPool:
    def __init__(self, endpoint, timeout, curve_key=None, server_key=None, size=4):
        self.endpoint = endpoint
        self.timeout = timeout
        self.curve = {"curve_key": curve_key, "server_key": server_key}
        self._idle = queue.LifoQueue(maxsize=size)

    def call(self, message, timeout=None):
        """circusd's reply; CallError when it cannot be reached in time."""
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            client = CircusClient(endpoint=self.endpoint, timeout=self.timeout, **self.curve)
        client.timeout = self.timeout if timeout is None else timeout
        try:
            reply = client.call(message)
        except CallError:
            client.stop()  # its connection state is unknown: start afresh
            raise
        try:
            self._idle.put_nowait(client)
        except queue.Full:
            client.stop()
        return reply

    def close(self):
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return


class Connection:
    def __init__(self, endpoint, settings, pubsub=None, stats_endpoint=None):
        self.endpoint = endpoint
        self.id = endpoint_id(endpoint)
        self.settings = settings
        self.model = Model(endpoint)
        self.pubsub = pubsub
        self.stats_endpoint = stats_endpoint
        self.pool = ClientPool(endpoint, settings.timeout, settings.curve_key,
                               settings.server_key)
        self._stop = threading.Event()
        self._threads = []
        self._pending = {}  # watcher -> when its refresh is due
        self._pending_lock = threading.Lock()
        self.tails = Tails(self)  # the log tails pages show

    # --- commands ---------------------------------------------------------
    def call(self, command, timeout=None, **props):
        reply = self.pool.call({"command": command, "properties": props}, timeout)
        if not isinstance(reply, dict):
            raise CallError("circusd sent an unreadable reply")
        return reply

    def refresh(self, name):
        """Ask circusd where a watcher stands now (after an action)."""
        if name == "*":
            return self.resync()
        try:
            status = self.call("status", name=name)
            if status.get("status") == "error":
                if "not found" in str(status.get("reason", "")):
                    self.model.remove_watcher(name)
                return
            options = self.call("options", name=name).get("options")
            pids = self.call("list", name=name).get("pids")
        except CallError as exc:
            self.model.set_state("unreachable", str(exc))
            return
        self.model.update_watcher(name, status.get("status"), options, pids)

    def resync(self):
        try:
            statuses = self.call("status").get("statuses") or {}
            found = {}
            for name, status in statuses.items():
                options = self.call("options", name=name).get("options") or {}
                pids = self.call("list", name=name).get("pids") or []
                found[name] = (status, options, pids)
            sockets = self.call("listsockets").get("sockets") or []
        except CallError as exc:
            self.model.set_state("unreachable", str(exc))
            return False
        self.model.replace_all(found)
        self.model.set_sockets(sockets)
        self.model.set_state("connected")
        return True

    # --- following circusd ------------------------------------------------
    def start(self):
        thread = threading.Thread(target=self._follow_events, daemon=True,
                                  name="circushttpd-events-%s" % self.id)
        self._threads.append(thread)
        thread.start()

    def stop(self):
        self._stop.set()
        self.tails.stop()
        for thread in self._threads:
            thread.join(5)
        self.pool.close()

    def _discover(self):
        """pubsub and stats endpoints, from circusd itself unless given."""
        while not self._stop.is_set():
            try:
                options = self.call("globaloptions").get("options") or {}
                break
            except CallError as exc:
                self.model.set_state("unreachable", str(exc))
                self._stop.wait(RETRY_INTERVAL)
        else:
            return False
        self.pubsub = self.pubsub or connectable(options.get("pubsub_endpoint"), self.endpoint)
        self.stats_endpoint = self.stats_endpoint or connectable(options.get("stats_endpoint"),
                                                                 self.endpoint)
        with self.model.lock:
            self.model.pubsub = self.pubsub
            self.model.stats_endpoint = self.stats_endpoint
            self.model.stats_state = "connecting" if self.stats_endpoint else "off"
        return True

    def _follow_events(self):
        try:
            if not self._discover():
                return
            if self.stats_endpoint:
                thread = threading.Thread(target=self._follow_stats, daemon=True,
                                          name="circushttpd-stats-%s" % self.id)
                self._threads.append(thread)
                thread.start()
            consumer = None
            if self.pubsub:
                consumer = CircusConsumer([""], endpoint=self.pubsub, timeout=0.5,
                                          curve_key=self.settings.curve_key,
                                          server_key=self.settings.server_key)
            try:
                self._event_loop(consumer)
            finally:
                if consumer is not None:
                    consumer.stop()
        except Exception:
            logger.exception("following %s failed", self.endpoint)

    def _event_loop(self, consumer):
        next_sync = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_sync:
                ok = self.resync()
                next_sync = now + (RESYNC_INTERVAL if ok else RETRY_INTERVAL)
            timeout = min(0.5, max(0.0, next_sync - time.monotonic()))
            with self._pending_lock:
                if self._pending:
                    timeout = min(timeout, max(0.0, min(self._pending.values()) - now))
            event = consumer.recv(timeout) if consumer is not None else self._stop.wait(timeout)
            while event:
                topic, msg = event
                name = self.model.on_event(topic, msg)
                if name is not None:
                    self.schedule_refresh(name)
                event = consumer.recv(0)
            self._run_due_refreshes()

    def schedule_refresh(self, name, delay=REFRESH_DELAY):
        with self._pending_lock:
            self._pending.setdefault(name, time.monotonic() + delay)

    def _run_due_refreshes(self):
        now = time.monotonic()
        with self._pending_lock:
            due = [n for n, when in self._pending.items() if when <= now]
            for name in due:
                del self._pending[name]
        if "*" in due:
            self.resync()
            return
        for name in due:
            self.refresh(name)

    def _follow_stats(self):
        """circusd-stats sends a tick's messages in one burst: the pages get
        them once the burst is over (or every STATS_FLUSH at worst). A
        watcher's per-process rows are expanded only while a page of the
        watcher is open: with a thousand processes that is most of the
        console's work."""
        from circus.stats.client import StatsClient
        client = StatsClient(self.stats_endpoint, timeout=STATS_FLUSH)
        first_pending = None
        state = None
        watched = set()
        client.rows_wanted = lambda name: name in watched or name in ("circus", "sockets")
        try:
            while not self._stop.is_set():
                if first_pending is None:
                    # before the burst's first message: a page opened since
                    # the last burst gets its rows from this one on
                    watched = self.model.watched()
                message = client.recv(STATS_QUIET if first_pending is not None else STATS_FLUSH)
                now = time.monotonic()
                if message is not None:
                    if first_pending is None:
                        first_pending = now
                    self.model.on_stat(*message)
                    # the rest of the burst, without a poll per message
                    for _ in range(100000):
                        arrived = client.recv_nowait()
                        if arrived is None:
                            break
                        self.model.on_stat(*arrived)
                if client.state != state:
                    state = client.state
                    with self.model.lock:
                        self.model.stats_state = state
                        self.model.broadcaster.publish("endpoint", self.model.endpoint_info())
                if first_pending is not None and (message is None
                                                  or now - first_pending >= STATS_FLUSH):
                    self.model.flush_stats()
                    first_pending = None
        except Exception:
            logger.exception("reading the stats of %s failed", self.endpoint)
        finally:
            client.close()


class Hub:
    """The console's connections, by id; added at start or by an admin."""

    def __init__(self, settings):
        self.settings = settings
        self._connections = {}
        self._lock = threading.Lock()

    def add(self, endpoint, pubsub=None, stats_endpoint=None):
        with self._lock:
            key = endpoint_id(endpoint)
            connection = self._connections.get(key)
            if connection is None:
                connection = Connection(endpoint, self.settings, pubsub, stats_endpoint)
                self._connections[key] = connection
                connection.start()
            return connection

    def get(self, key):
        with self._lock:
            return self._connections.get(key)

    def remove(self, key):
        with self._lock:
            connection = self._connections.pop(key, None)
        if connection is not None:
            connection.stop()
        return connection

    def all(self):
        with self._lock:
            return list(self._connections.values())

    def close(self):
        for connection in self.all():
            self.remove(connection.id)
