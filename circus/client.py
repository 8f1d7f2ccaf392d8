"""Clients of circusd's command endpoint.

    from circus.client import CircusClient
    client = CircusClient(endpoint="tcp://127.0.0.1:5555", timeout=5)
    client.call({"command": "incr", "properties": {"name": "web"}})
    # -> {"status": "ok", "numprocesses": 2, "time": ..., "id": ...}
    client.stop()

A DEALER socket sends one frame, the JSON request with a fresh "id"; a reply
whose id is not the request's (a late answer to an earlier, timed-out call)
is dropped. `call` returns error replies as they are: only a timeout
(CallTimeout) or a transport failure (CallError) raises. AsyncCircusClient
keeps the same rules on an asyncio loop.

The connection is a circus.transport Dealer: the plain-Python ZMTP one on
tcp:// and ipc:// endpoints, pyzmq's only for CURVE, for a caller's own
context, or for other transports: importing pyzmq would double circusctl's
start time. This module imports neither asyncio nor psutil either;
AsyncCircusClient imports zmq.asyncio when it is created.
"""
from __future__ import annotations

import json
import os
import time

from circus.errors import CallError, CallTimeout
from circus.transport.dealer import open_dealer
from circus.util import DEFAULT_ENDPOINT

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (circusctl's start)
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable
    from typing import Any, Self, TypeAlias, TypeVar

    import zmq
    import zmq.asyncio

    from circus.transport.dealer import Dealer
    from circus.transport.sshtunnel import SSHTunnel

    # a request: a mapping, or its JSON text
    Command: TypeAlias = dict[str, Any] | str | bytes
    # a reply: {"status": "ok", ...} or {"status": "error", "reason": ...}
    Reply: TypeAlias = dict[str, Any]
    _T = TypeVar("_T")

__all__ = ["CallError", "CallTimeout", "CircusClient", "AsyncCircusClient", "make_message"]


def make_message(command: str, **props: Any) -> dict[str, Any]:
    return {"command": command, "properties": props or {}}


def new_id() -> str:
    return os.urandom(16).hex()


def _request(cmd: Command) -> dict[str, Any]:
    if isinstance(cmd, (str, bytes)):
        try:
            cmd = json.loads(cmd)
        except ValueError as exc:
            raise CallError("invalid JSON command: %s" % exc) from None
    if not isinstance(cmd, dict):
        raise CallError("a command is a mapping, not %r" % type(cmd).__name__)
    msg = dict(cmd)
    msg["id"] = new_id()
    return msg


def _reply(raw: bytes, msg_id: str) -> Reply | None:
    """The reply mapping in raw if it answers msg_id, else None (a late
    answer to an earlier call, or noise)."""
    try:
        reply = json.loads(raw)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) and reply.get("id") == msg_id else None


class CircusClient:
    def __init__(self, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 endpoint: str = DEFAULT_ENDPOINT, timeout: float = 5.0,
                 ssh_server: str | None = None, ssh_keyfile: str | None = None,
                 curve_key: str | None = None, server_key: str | None = None) -> None:
        self.timeout = float(timeout)
        self.tunnel: SSHTunnel | None = None
        self.socket: Dealer | None = None
        if ssh_server:
            from circus.transport.sshtunnel import open_tunnel
            self.tunnel, endpoint = open_tunnel(ssh_server, endpoint, ssh_keyfile,
                                                timeout=max(self.timeout, 10.0))
        self.endpoint = endpoint
        try:
            self.socket = open_dealer(endpoint, context, curve_key, server_key)
        except CallError:
            self.stop()
            raise

    def _deadline(self, timeout: float | None = None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _send(self, msg: dict[str, Any], deadline: float) -> dict[str, Any]:
        self._dealer().send(json.dumps(msg).encode(), deadline)
        return msg

    def _dealer(self) -> Dealer:
        if self.socket is None:
            raise CallError("this client is stopped")
        return self.socket

    def send(self, cmd: Command) -> dict[str, Any]:
        """Send a request without waiting; returns the message sent."""
        return self._send(_request(cmd), self._deadline())

    def cast(self, cmd: Command) -> dict[str, Any]:
        """Fire and forget: circusd sends no reply to a cast."""
        msg = _request(cmd)
        msg["msg_type"] = "cast"
        return self._send(msg, self._deadline())

    def call(self, cmd: Command) -> Reply:
        """Send a request, return circusd's reply mapping. Connecting counts
        against the timeout too."""
        deadline = self._deadline()
        msg = self._send(_request(cmd), deadline)
        return self._receive(msg["id"], deadline)

    def receive(self, msg_id: str, timeout: float | None = None) -> Reply:
        return self._receive(msg_id, self._deadline(timeout))

    def _receive(self, msg_id: str, deadline: float) -> Reply:
        while True:
            frames = self._dealer().recv(deadline)
            if frames is None:
                raise CallTimeout("Timed out.")
            reply = _reply(frames[-1], msg_id) if frames else None
            if reply is not None:
                return reply

    def stop(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AsyncCircusClient:
    """The same protocol on an asyncio loop: `await client.call(cmd)`.
    Calls may run concurrently on one client: one reader hands each reply
    to the call whose id it carries. The rules are CircusClient's: a
    timeout raises CallTimeout, a transport failure CallError, and send and
    cast wait no longer than the timeout either."""

    def __init__(self, context: zmq.asyncio.Context | None = None,
                 endpoint: str = DEFAULT_ENDPOINT, timeout: float = 5.0,
                 curve_key: str | None = None, server_key: str | None = None) -> None:
        import zmq.asyncio

        from circus.transport.pyzmq import client_socket
        self.context = context or zmq.asyncio.Context.instance()
        self.timeout = float(timeout)
        self.endpoint = endpoint
        self._zmq = zmq
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._reader: asyncio.Future[None] | None = None
        self.socket: zmq.asyncio.Socket | None = None
        self.socket = client_socket(self.context, zmq.DEALER, endpoint, curve_key, server_key)

    async def send(self, cmd: Command) -> dict[str, Any]:
        return await self._bounded(self._send(_request(cmd)))

    async def cast(self, cmd: Command) -> dict[str, Any]:
        msg = _request(cmd)
        msg["msg_type"] = "cast"
        return await self._bounded(self._send(msg))

    async def call(self, cmd: Command) -> Reply:
        import asyncio
        msg = _request(cmd)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[msg["id"]] = future

        async def exchange() -> Reply:
            await self._send(msg)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.ensure_future(self._read())
            return await future
        try:
            return await self._bounded(exchange())
        finally:
            self._pending.pop(msg["id"], None)

    async def _bounded(self, awaitable: Awaitable[_T]) -> _T:
        """awaitable, within the timeout: CallTimeout after it."""
        import asyncio
        try:
            # asyncio.timeout, not wait_for: see circus.util.wait_event
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except TimeoutError:
            raise CallTimeout("Timed out.") from None

    async def _send(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.socket is None:
            raise CallError("this client is stopped")
        try:
            await self.socket.send(json.dumps(msg).encode())
        except self._zmq.ZMQError as exc:
            raise CallError("connection to %s failed: %s" % (self.endpoint, exc)) from None
        return msg

    async def _read(self) -> None:
        while self.socket is not None:
            frames = await self.socket.recv_multipart()
            try:
                reply = json.loads(frames[-1])
            except ValueError:
                continue
            # an id that is no str (an unhashable one would kill this reader)
            # answers nobody
            msg_id = reply.get("id") if isinstance(reply, dict) else None
            future = self._pending.get(msg_id) if isinstance(msg_id, str) else None
            if future is not None and not future.done():
                future.set_result(reply)

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
