"""SUB sockets on circusd's publishers (events, stats): one way to open them.

CircusConsumer, circus.stats.client, circusd-stats and the plugin SDK all
subscribe through `Subscriber`: through an ssh tunnel if asked, with CURVE
if keys are given, with a socket monitor if the caller wants to know when
the connection is up. `decode_event` turns a message's frames into
(topic, mapping) the same way for all of them.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from circus.transport.pyzmq import client_socket

if TYPE_CHECKING:
    import zmq

    from circus.transport.sshtunnel import SSHTunnel


# a zmq.Socket, or a zmq.asyncio.Socket when made from a zmq.asyncio.Context
# (a string bound: pyzmq is imported when a Subscriber is made, not before)
_Socket = TypeVar("_Socket", bound="zmq.Socket[Any]")


class Subscriber(Generic[_Socket]):
    """A SUB socket connected to endpoint (a zmq.Context or a
    zmq.asyncio.Context decides whether it is awaited).

    topics: prefixes to subscribe to (str or bytes; b"" is everything).
    monitor_events: a mask of zmq.EVENT_*; `monitor` is then the PAIR
    socket that reports them. reconnect_max: the longest pause, in seconds,
    between two attempts to reach a dead endpoint. ssh_server: reach endpoint
    through `ssh -L` (CallError when the tunnel cannot be opened).

    `socket`, `monitor`, `tunnel` and `endpoint` (the one connected to,
    local when tunnelled) are for the owner to use; close() releases them.
    """

    def __init__(self, context: zmq.Context[_Socket], endpoint: str,
                 topics: Iterable[str | bytes] = (b"",), curve_key: str | None = None,
                 server_key: str | None = None, ssh_server: str | None = None,
                 ssh_keyfile: str | None = None, monitor_events: int = 0,
                 reconnect_max: float | None = None) -> None:
        import zmq
        self.socket: _Socket | None = None
        self.monitor: _Socket | None = None
        self.tunnel: SSHTunnel | None = None
        if ssh_server:
            from circus.transport.sshtunnel import open_tunnel
            self.tunnel, endpoint = open_tunnel(ssh_server, endpoint, ssh_keyfile)
        self.endpoint = endpoint
        self._topics = [t.encode() if isinstance(t, str) else t for t in topics]
        self._reconnect_max = reconnect_max
        self._monitor_events = monitor_events
        try:
            self.socket = client_socket(context, zmq.SUB, endpoint, curve_key, server_key,
                                        setup=self._setup)
        except BaseException:
            self.close()
            raise

    def _setup(self, sock: _Socket) -> None:
        import zmq
        if self._reconnect_max is not None:
            # retry a dead endpoint calmly, not ten times a second
            sock.reconnect_ivl_max = int(self._reconnect_max * 1000)
        for topic in self._topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        if self._monitor_events:
            # before connect(), so that the first connection is reported
            self.monitor = sock.get_monitor_socket(self._monitor_events)

    def close(self) -> None:
        if self.monitor is not None:
            try:
                if self.socket is not None:
                    self.socket.disable_monitor()
            except Exception:
                pass  # the context is going away already
            self.monitor.close(linger=0)
            self.monitor = None
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None


def decode_message(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """A published body as a mapping: the JSON object itself, {"value": v}
    for another JSON value, {"raw": text} for what is not JSON."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}


def decode_event(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]]:
    """(topic, mapping) of a message of circusd's publisher."""
    topic = frames[0].decode("utf-8", "replace")
    return topic, decode_message(frames[-1]) if len(frames) > 1 else {}
