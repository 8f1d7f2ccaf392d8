"""The plugin SDK: CircusPlugin, the base class plugin authors subclass
(importable as circus.plugins.CircusPlugin; the guide for plugin authors is
the docstring of circus.plugins).

It runs in the plugin's process and speaks to circusd over the protocol
only: circus.client for commands, circus.transport for events.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

from circus.tasks import BackgroundTasks
from circus.transport.subscriber import Subscriber, decode_event, decode_message

if TYPE_CHECKING:
    import zmq
    import zmq.asyncio

    from circus.client import AsyncCircusClient, CircusClient

_T = TypeVar("_T")

logger = logging.getLogger("circus.plugins")


class CircusPlugin:
    """Base class to write plugins.

    endpoint and pubsub_endpoint are circusd's command and event endpoints,
    check_delay the configured check delay, ssh_server an optional
    user@host[:port] to reach them through, config the free mapping of the
    plugin's options (a "context" key, if given, is the zmq context to use;
    "curve_key" and "server_key", the CURVE key files when circusd requires
    CURVE: circusd passes its own).
    """

    name: str = ""
    # seconds call() and acall() wait for circusd's answer
    call_timeout: float = 5.0

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float,
                 ssh_server: str | None = None, **config: Any) -> None:
        self.context: zmq.Context[Any] | None = config.pop("context", None)
        self.curve_key: str | None = config.pop("curve_key", None)
        self.server_key: str | None = config.pop("server_key", None)
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.check_delay = float(check_delay)
        self.ssh_server = ssh_server
        self.config = config
        # "plugin:NAME" when circusd runs this plugin, else None (set by the runner)
        self.watcher_name: str | None = None
        self.loop = asyncio.new_event_loop()
        self.running = False
        self._stopping = asyncio.Event()
        self._client: CircusClient | None = None
        self._aclient: AsyncCircusClient | None = None
        self._subscriber: Subscriber[zmq.asyncio.Socket] | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._killed = False
        self._tasks = BackgroundTasks(self._label)

    # --- to override ----------------------------------------------------------
    def handle_recv(self, data: tuple[str, dict[str, Any]]) -> None:
        """Receives every event published by circusd: data is (topic, message)."""
        raise NotImplementedError

    def handle_init(self) -> None:
        """Called right before the plugin starts receiving events."""

    def handle_stop(self) -> None:
        """Called right before the plugin is stopped."""

    # --- talking to circusd ------------------------------------------------------
    def call(self, command: str, **props: Any) -> dict[str, Any]:
        """Send a command to circusd; returns the reply mapping (CallError
        when there is none within call_timeout)."""
        from circus.client import make_message
        return self._sync_client().call(make_message(command, **props))

    def cast(self, command: str, **props: Any) -> None:
        """Fire-and-forget a command to circusd."""
        from circus.client import make_message
        self._sync_client().cast(make_message(command, **props))

    async def acall(self, command: str, **props: Any) -> dict[str, Any]:
        """call() for coroutines on self.loop: other events flow while waiting."""
        from circus.client import make_message
        return await self._async_client().call(make_message(command, **props))

    def _sync_client(self) -> CircusClient:
        if self._client is None:
            import zmq

            from circus.client import CircusClient
            # one zmq context (one I/O thread) for both clients and the SUB
            context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(
                self._zmq_context().underlying)
            self._client = CircusClient(context=context, endpoint=self.endpoint,
                                        timeout=self.call_timeout, ssh_server=self.ssh_server,
                                        curve_key=self.curve_key, server_key=self.server_key)
        return self._client

    def _async_client(self) -> AsyncCircusClient:
        if self._aclient is None:
            from circus.client import AsyncCircusClient
            # through the same ssh tunnel as the synchronous client, if any
            self._aclient = AsyncCircusClient(context=self._zmq_context(),
                                              endpoint=self._sync_client().endpoint,
                                              timeout=self.call_timeout,
                                              curve_key=self.curve_key,
                                              server_key=self.server_key)
        return self._aclient

    def _zmq_context(self) -> zmq.asyncio.Context:
        import zmq.asyncio
        if self.context is None:
            self.context = zmq.asyncio.Context.instance()
        elif not isinstance(self.context, zmq.asyncio.Context):
            self.context = zmq.asyncio.Context.shadow(self.context)
        return self.context

    # --- scheduling helpers ------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run coro as a task on self.loop; its failure is logged, not lost."""
        return self._tasks.spawn(coro, self.loop)

    def every(self, seconds: float,
              coro_function: Callable[[], Awaitable[object]]) -> asyncio.Task[None]:
        """Call coro_function() every `seconds` (one run at a time) until the
        plugin stops; returns the task."""
        async def repeat() -> None:
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

    def _label(self) -> str:
        return self.watcher_name or self.name or type(self).__name__

    # --- running -----------------------------------------------------------------
    def start(self) -> None:
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

    def stop(self) -> None:
        """Ask the plugin to stop: handle_stop() runs, then start() returns."""
        self._stopping.set()

    async def _run(self) -> None:
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

    def _connect(self) -> None:
        import zmq
        # the handshake tells when the subscription can reach circusd
        self._subscriber = Subscriber(self._zmq_context(), self.pubsub_endpoint,
                                      curve_key=self.curve_key, server_key=self.server_key,
                                      ssh_server=self.ssh_server,
                                      monitor_events=zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._sub = self._subscriber.socket

    def _events(self) -> zmq.asyncio.Socket:
        """The SUB socket, from _connect() to _close()."""
        if self._sub is None:
            raise RuntimeError("%s is not connected" % self._label())
        return self._sub

    def _close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = self._sub = None
        for client in (self._aclient, self._client):
            if client is not None:
                client.stop()
        self._aclient = self._client = None

    async def _receive(self) -> None:
        """Hand every event to handle_recv until stop() is asked for."""
        sub = self._events()
        stopping = self.loop.create_task(self._stopping.wait())
        try:
            while not stopping.done():
                readable = asyncio.ensure_future(sub.poll())
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
                if remaining <= 0 or not await sub.poll(int(remaining * 1000)):
                    break
                await self._read_available()
        else:
            await self._read_available()

    async def _read_available(self, limit: int = 256) -> None:
        """Handle the events already received, up to limit at a time: a flood
        of events must not starve the plugin's other work on the loop."""
        import zmq
        sub = self._events()
        for _ in range(limit):
            if not cast(int, sub.get(zmq.EVENTS)) & zmq.POLLIN:
                return
            topic, message = decode_event(await sub.recv_multipart())
            if topic == "watcher.%s.kill" % self.watcher_name and \
                    message.get("process_pid") == os.getpid():
                self._killed = True
            try:
                self.handle_recv((topic, message))
            except Exception:
                logger.exception("%s: handle_recv failed on %s", self._label(), topic)

    async def _announce_ready(self) -> None:
        """Once subscribed and answered by circusd, tell circusd (sd_notify)
        this plugin is ready: circusd starts the other watchers only then,
        so the plugin sees their first events."""
        monitor = self._subscriber.monitor if self._subscriber is not None else None
        if monitor is None:
            return  # stopped before it was connected
        await monitor.recv_multipart()
        while True:
            try:
                await self.acall("numwatchers")
                break
            except Exception as exc:
                logger.debug("%s: circusd not answering yet: %s", self._label(), exc)
        from circus.sdnotify import notify
        notify("READY=1")

    # --- helpers for handle_recv -------------------------------------------------
    @staticmethod
    def load_message(msg: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """A message as a mapping, whether given as a mapping, str or bytes."""
        return decode_message(msg)

    @classmethod
    def split_data(cls, data: tuple[str | bytes, bytes | str | dict[str, Any]]
                   ) -> tuple[str | None, str, dict[str, Any]]:
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
