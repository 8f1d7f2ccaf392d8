"""Subscribe to circusd's events.

    from circus.consumer import CircusConsumer
    with CircusConsumer(["watcher.web."], endpoint="tcp://127.0.0.1:5556") as events:
        for topic, message in events:
            print(topic, message["time"])

Topics are prefixes ("" or no topic: everything). Iteration goes on until
the consumer is closed; `recv(timeout)` returns one event or None.
PUB/SUB drops what is published before the subscription reaches circusd,
so a program that must not miss an event subscribes before acting.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Self

import zmq

from circus.transport.subscriber import Subscriber, decode_event
from circus.util import DEFAULT_PUBSUB


class CircusConsumer:
    def __init__(self, topics: str | bytes | Iterable[str | bytes] | None = None,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 endpoint: str = DEFAULT_PUBSUB, timeout: float = 1.0,
                 ssh_server: str | None = None, ssh_keyfile: str | None = None,
                 curve_key: str | None = None, server_key: str | None = None) -> None:
        if isinstance(topics, (str, bytes)):
            topics = [topics]
        self.topics = [t.encode() if isinstance(t, str) else t for t in (topics or [b""])]
        self.context = context or zmq.Context.instance()
        self.timeout = float(timeout)
        self._subscriber = Subscriber(self.context, endpoint, self.topics, curve_key, server_key,
                                      ssh_server=ssh_server, ssh_keyfile=ssh_keyfile)
        self.endpoint = self._subscriber.endpoint
        self.socket = self._subscriber.socket
        self.tunnel = self._subscriber.tunnel
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)

    def recv(self, timeout: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next (topic, message) within timeout seconds, or None."""
        timeout = self.timeout if timeout is None else timeout
        if self.socket is None or not self._poller.poll(int(timeout * 1000)):
            return None
        return decode_event(self.socket.recv_multipart())

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while self.socket is not None:
            event = self.recv()
            if event is not None:
                yield event

    def stop(self) -> None:
        self._subscriber.close()
        self.socket = self.tunnel = None

    close = stop

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
