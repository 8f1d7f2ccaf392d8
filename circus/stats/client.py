"""Consume circusd-stats' stream: for circus-top, the web console, scripts.

    from circus.stats.client import StatsClient
    with StatsClient("tcp://127.0.0.1:5557") as client:
        for watcher, subtopic, stat in client:
            print(watcher, subtopic, stat["cpu"])

`subtopic` is the pid (an int) for ``stat.<watcher>.<pid>``, the fd for
``stat.sockets.<fd>``, and None for a watcher's aggregate, which comes after
the watcher's processes of the same tick. On an asyncio loop,
AsyncStatsClient does the same with ``async for``.

The client subscribes to the batches (``batch.stat.``, one message per
watcher per tick, see circus.stats.wire) and hands them out one process at
a time, exactly as the per-process messages would have been. An original
circusd-stats (Circus 0.19) publishes no batches: when none has come
FALLBACK_AFTER seconds after the connection, the client reads ``stat.``
instead, and goes back to the batches as soon as one arrives.

Whether the endpoint can be reached at all is known from ZeroMQ's socket
monitor, not guessed from silence: `client.state` is "connecting",
"connected" or "unreachable" (the last connection attempt failed, or the
connection was lost; ZeroMQ keeps retrying in the background).

StatsSnapshot keeps the latest figures per watcher and process, the way a
display needs them: a process leaves as soon as its watcher's aggregate no
longer lists it, and anything not refreshed for `expiry` seconds leaves too.
"""
from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeAlias

import zmq
from zmq.utils.monitor import parse_monitor_message

from circus.stats.wire import BATCH, STAT, expand_batch
from circus.transport.subscriber import Subscriber
from circus.util import DEFAULT_STATS

if TYPE_CHECKING:
    import asyncio

    import zmq.asyncio

# (watcher, subtopic, stat): the subtopic is a pid or a socket's fd (an
# int), None for a watcher's aggregate
Stat: TypeAlias = tuple[str, int | str | None, dict[str, Any]]

CONNECTING = "connecting"
CONNECTED = "connected"
UNREACHABLE = "unreachable"

# seconds without a batch, once connected, before reading stat.* instead
FALLBACK_AFTER = 3.0

_BATCH = BATCH.encode()
_STAT = STAT.encode()
_MONITORED = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED
              | zmq.EVENT_CLOSED | getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", 0)
              | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
              | getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0))
_FAILED = (zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
           | getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
           | getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0))


def _body(frames: Sequence[bytes]) -> dict[str, Any]:
    try:
        stat = json.loads(frames[-1]) if len(frames) > 1 else {}
    except ValueError:
        stat = {}
    if not isinstance(stat, dict):
        stat = {"value": stat}
    return stat


def parse_messages(frames: Sequence[bytes],
                   rows_wanted: Callable[[str], bool] | None = None) -> list[Stat]:
    """[(watcher, subtopic, stat), ...] of one message: one tuple for a
    stat.* message; for a batch, one per process then the aggregate (the
    aggregate alone when rows_wanted(watcher) is false: expanding the rows
    is most of the cost of a batch)."""
    if not frames[0].startswith(_BATCH):
        return [parse_message(frames)]
    watcher = frames[0][len(_BATCH):].decode(errors="replace")
    try:
        body = _body(frames)
        if rows_wanted is not None and not rows_wanted(watcher):
            total = body.get("total")
            return [(watcher, None, total)] if isinstance(total, dict) else []
        return [(watcher, sub, stat) for sub, stat in expand_batch(body)]
    except (TypeError, KeyError, ValueError, AttributeError):
        return []  # not a batch of ours


def _unwanted_row(topic: bytes, rows_wanted: Callable[[str], bool]) -> bool:
    """stat.<watcher>.<pid> (the original stream) of a watcher whose rows
    are not wanted, decided on the topic alone, before any JSON is decoded."""
    if not topic.startswith(b"stat."):
        return False
    head, _, last = topic.rpartition(b".")
    if not last.isdigit() or head == b"stat":
        return False
    return not rows_wanted(head[len(b"stat."):].decode(errors="replace"))


def parse_message(frames: Sequence[bytes]) -> Stat:
    """(watcher, subtopic, stat) from the two frames of a stats message (of
    a batch: its aggregate only; parse_messages gives all of it)."""
    if frames[0].startswith(_BATCH):
        return (frames[0][len(_BATCH):].decode(errors="replace"), None,
                _body(frames).get("total") or {})
    topic = frames[0].decode(errors="replace")
    stat = _body(frames)
    rest = topic[len("stat."):] if topic.startswith("stat.") else topic
    watcher = stat.get("watcher")
    if isinstance(watcher, str) and (rest == watcher or rest.startswith(watcher + ".")):
        # ours says which watcher it is: names with dots stay whole
        sub = rest[len(watcher) + 1:] or None
    else:
        # the original stream: stat.<watcher>[.<pid or fd>]
        watcher, _, sub = rest.rpartition(".")
        if not sub.isdigit():
            watcher, sub = rest, None
    if sub is not None and sub.isdigit():
        return watcher, int(sub), stat
    return watcher, sub, stat


class _Base:
    _started: float  # set by the subclass, before this __init__
    socket: Any
    monitor: Any

    def __init__(self, endpoint: str, context: Any, ssh_server: str | None,
                 ssh_keyfile: str | None, reconnect_max: float | None) -> None:
        self.state = CONNECTING
        self.last_message: float | None = None
        self._pending: collections.deque[Stat] = collections.deque()  # the rest of a batch
        self._fallback_due: float | None = None  # when to read stat.* if no batch came
        self._batches_seen = False
        self._reading_singles = False
        # watcher name -> whether its processes' rows are wanted (None: all)
        self.rows_wanted: Callable[[str], bool] | None = None
        self._subscriber = Subscriber(context, endpoint, [_BATCH], ssh_server=ssh_server,
                                      ssh_keyfile=ssh_keyfile, monitor_events=_MONITORED,
                                      reconnect_max=reconnect_max)
        self.endpoint = self._subscriber.endpoint
        self.socket = self._subscriber.socket
        self.monitor = self._subscriber.monitor
        self.tunnel = self._subscriber.tunnel

    def _on_monitor(self, frames: list[bytes]) -> None:
        event = parse_monitor_message(frames)["event"]
        if event & (zmq.EVENT_CONNECTED | getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", 0)):
            self.state = CONNECTED
            if not self._batches_seen and self._fallback_due is None:
                self._fallback_due = time.monotonic() + FALLBACK_AFTER
                self._on_fallback_armed()
        elif event & _FAILED:
            self.state = UNREACHABLE

    def _on_fallback_armed(self) -> None:
        pass

    def _check_fallback(self, now: float | None = None) -> None:
        """No batch since the connection: an original circusd-stats, read stat.*."""
        now = time.monotonic() if now is None else now
        if (self._fallback_due is not None and now >= self._fallback_due
                and self.socket is not None):
            self._fallback_due = None
            if not self._batches_seen and not self._reading_singles:
                self.socket.setsockopt(zmq.SUBSCRIBE, _STAT)
                self._reading_singles = True

    def _take(self, frames: Sequence[bytes]) -> Stat | None:
        """The first (watcher, subtopic, stat) of a message; the rest waits
        in _pending. None when it holds nothing."""
        self.state = CONNECTED
        self.last_message = time.monotonic()
        if frames[0].startswith(_BATCH):
            self._batches_seen = True
            self._fallback_due = None
            if self._reading_singles:
                # batches after all (circusd-stats was slow to speak): back to them
                self.socket.setsockopt(zmq.UNSUBSCRIBE, _STAT)
                self._reading_singles = False
        if self.rows_wanted is not None and _unwanted_row(frames[0], self.rows_wanted):
            return None  # stat.<watcher>.<pid> of the original stream, judged on its topic
        messages = parse_messages(frames, self.rows_wanted)
        if not messages:
            return None
        self._pending.extend(messages[1:])
        return messages[0]

    def silence(self, now: float | None = None) -> float:
        """Seconds since the last message (or since the client started)."""
        now = time.monotonic() if now is None else now
        return now - (self.last_message if self.last_message is not None else self._started)

    def close(self) -> None:
        self._subscriber.close()
        self.socket = self.monitor = self.tunnel = None
        self._pending.clear()

    stop = close


class StatsClient(_Base):
    """A blocking consumer (one thread, no loop)."""

    def __init__(self, endpoint: str = DEFAULT_STATS,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None, timeout: float = 1.0,
                 ssh_server: str | None = None, ssh_keyfile: str | None = None,
                 reconnect_max: float | None = 2.0) -> None:
        self.timeout = float(timeout)
        self._started = time.monotonic()
        super().__init__(endpoint, context or zmq.Context.instance(), ssh_server,
                         ssh_keyfile, reconnect_max)
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)
        self._poller.register(self.monitor, zmq.POLLIN)

    def recv(self, timeout: float | None = None) -> Stat | None:
        """The next (watcher, subtopic, stat) within timeout seconds, or None."""
        if self._pending:
            return self._pending.popleft()
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while self.socket is not None:
            now = time.monotonic()
            self._check_fallback(now)
            wait = max(0.0, deadline - now)
            if self._fallback_due is not None:
                wait = min(wait, max(0.0, self._fallback_due - now))
            events = dict(self._poller.poll(int(wait * 1000)))
            monitor = self.monitor
            if monitor is not None and monitor in events:
                while monitor.poll(0):
                    self._on_monitor(monitor.recv_multipart())
            if self.socket in events:
                message = self._take(self.socket.recv_multipart())
                if message is not None:
                    return message
            if time.monotonic() >= deadline:
                return None
        return None

    def recv_nowait(self) -> Stat | None:
        """The next message already arrived, or None at once: a tick comes
        as a burst, which this empties without a poll per message."""
        if self._pending:
            return self._pending.popleft()
        for _ in range(1000):  # bounded, even if nothing read holds a message
            if self.socket is None:
                break
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return None
            message = self._take(frames)
            if message is not None:
                return message
        return None

    def __iter__(self) -> Iterator[Stat]:
        while self.socket is not None:
            message = self.recv()
            if message is not None:
                yield message

    iter_messages = __iter__

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStatsClient(_Base):
    """The same on an asyncio loop: ``await client.recv()``, ``async for``."""

    def __init__(self, endpoint: str = DEFAULT_STATS, context: zmq.asyncio.Context | None = None,
                 ssh_server: str | None = None, ssh_keyfile: str | None = None,
                 reconnect_max: float | None = 2.0) -> None:
        import zmq.asyncio
        self._started = time.monotonic()
        super().__init__(endpoint, context or zmq.asyncio.Context.instance(), ssh_server,
                         ssh_keyfile, reconnect_max)
        self._monitor_task: asyncio.Future[None] | None = None
        self._fallback_timer: asyncio.TimerHandle | None = None

    def _ensure_monitor(self) -> None:
        import asyncio
        if self._monitor_task is None:
            self._monitor_task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while self.socket is not None and self.monitor is not None:
            self._on_monitor(await self.monitor.recv_multipart())

    def _on_fallback_armed(self) -> None:
        import asyncio
        # recv() may be waiting on the socket alone: a timer checks instead
        self._fallback_timer = asyncio.get_running_loop().call_at(
            asyncio.get_running_loop().time() + FALLBACK_AFTER, self._check_fallback,
            self._fallback_due)

    async def recv(self, timeout: float | None = None) -> Stat | None:
        """The next (watcher, subtopic, stat); None after timeout seconds,
        or when the client is closed."""
        import asyncio
        if self._pending:
            return self._pending.popleft()
        socket = self.socket
        if socket is None:
            return None
        self._ensure_monitor()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    frames = await socket.recv_multipart()
            except TimeoutError:
                return None
            message = self._take(frames)
            if message is not None:
                return message

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Stat:
        message = await self.recv()
        if message is None:  # closed
            raise StopAsyncIteration
        return message

    def close(self) -> None:
        if self._monitor_task is not None:
            self._monitor_task.cancel()
            self._monitor_task = None
        if self._fallback_timer is not None:
            self._fallback_timer.cancel()
            self._fallback_timer = None
        super().close()

    stop = close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class StatsSnapshot:
    """The latest stats, as a display wants them.

    snapshot.update(watcher, subtopic, stat) for each message, then:
    watchers() (names, sorted, "circus" and "sockets" excluded),
    processes(name) (the per-process mappings), totals(name) (the
    aggregate), sockets() and sockets_total().
    """

    def __init__(self, expiry: float = 3.0) -> None:
        self.expiry = float(expiry)
        # watcher -> {pid: (stat, seen)}
        self._processes: dict[str, dict[int | str, tuple[dict[str, Any], float]]] = {}
        # watcher -> (stat, seen)
        self._totals: dict[str, tuple[dict[str, Any], float]] = {}
        self.last_update: float | None = None

    def update(self, watcher: str, subtopic: int | str | None, stat: dict[str, Any],
               now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.last_update = now
        if subtopic is None:
            self._totals[watcher] = (stat, now)
            listed = stat.get("pid", stat.get("fds"))
            if isinstance(listed, list):
                # the aggregate closes a tick: whoever it leaves out is gone
                keep = set(listed)
                entries = self._processes.get(watcher, {})
                for key in [k for k in entries if k not in keep]:
                    del entries[key]
        else:
            self._processes.setdefault(watcher, {})[subtopic] = (stat, now)

    def prune(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for watcher in list(self._totals):
            if now - self._totals[watcher][1] > self.expiry:
                del self._totals[watcher]
        for watcher, entries in list(self._processes.items()):
            for key in [k for k, (_, seen) in entries.items() if now - seen > self.expiry]:
                del entries[key]
            if not entries and watcher not in self._totals:
                del self._processes[watcher]

    def watchers(self) -> list[str]:
        names = set(self._totals) | set(self._processes)
        return sorted(n for n in names if n not in ("circus", "sockets"))

    def processes(self, watcher: str) -> list[dict[str, Any]]:
        return [stat for stat, _ in self._processes.get(watcher, {}).values()]

    def totals(self, watcher: str) -> dict[str, Any] | None:
        entry = self._totals.get(watcher)
        return entry[0] if entry else None

    def sockets(self) -> list[dict[str, Any]]:
        return self.processes("sockets")

    def sockets_total(self) -> dict[str, Any] | None:
        return self.totals("sockets")

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Everything, JSON-ready: {watcher: {"total": ..., "processes": [...]}}."""
        names = set(self._totals) | set(self._processes)
        return {name: {"total": self.totals(name), "processes": self.processes(name)}
                for name in sorted(names)}
