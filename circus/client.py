"""Clients of circusd's command endpoint.

    from circus.client import CircusClient
    client = CircusClient(endpoint="tcp://127.0.0.1:5555", timeout=5)
    client.call({"command": "incr", "properties": {"name": "web"}})
    # -> {"status": "ok", "numprocesses": 2, "time": ..., "id": ...}
    client.stop()

A DEALER socket sends one frame, the JSON request with a fresh "id"; a reply
whose id is not the request's (a late answer to an earlier, timed-out call)
is dropped. `call` returns error replies as they are: only a timeout or a
transport failure raises CallError.

CircusClient speaks ZMTP itself (circus.zmtp) on tcp:// and ipc://
endpoints, and uses pyzmq only for CURVE, for a caller's own context, or
for other transports: importing pyzmq would double circusctl's start time.
This module imports neither asyncio nor psutil either; AsyncCircusClient
imports zmq.asyncio when it is created.
"""
import json
import os
import time

from circus.util import DEFAULT_ENDPOINT
from circus.errors import CallError, CallTimeout, ZMTPError
from circus.zmtp import Dealer, parse_endpoint

__all__ = ["CallError", "CallTimeout", "CircusClient", "AsyncCircusClient", "make_message"]


def make_message(command, **props):
    return {"command": command, "properties": props or {}}


def new_id():
    return os.urandom(16).hex()


def _request(cmd):
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


def configure_curve(sock, curve_key=None, server_key=None):
    """Make sock a CURVE client: curve_key is the client's secret key file,
    server_key the server's public key file (zmq.auth certificate format)."""
    if not curve_key and not server_key:
        return
    if not (curve_key and server_key):
        raise CallError("CURVE needs both a client key (--curve-key) and the server's "
                        "public key (--server-key)")
    from circus.security import client_keys, public_key
    try:
        public, secret = client_keys(curve_key)
        sock.curve_serverkey = public_key(server_key)
    except (OSError, ValueError) as exc:
        raise CallError(str(exc)) from None
    sock.curve_publickey = public
    sock.curve_secretkey = secret


class PyzmqDealer:
    """A pyzmq DEALER behind the calls of circus.zmtp.Dealer: send(data,
    deadline), recv(deadline) -> frames or None, poll(ms), close()."""

    def __init__(self, endpoint, context=None, curve_key=None, server_key=None):
        import zmq
        self._zmq = zmq
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.linger = 0
        try:
            configure_curve(self.socket, curve_key, server_key)
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise CallError("cannot connect to %s: %s" % (endpoint, exc)) from None
        except CallError:
            self.close()
            raise

    def send(self, data, deadline):
        try:
            self.socket.send(data, self._zmq.NOBLOCK)
        except self._zmq.ZMQError as exc:
            raise OSError(str(exc)) from None

    def recv(self, deadline):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.socket.poll(remaining * 1000):
                return None
            try:
                return self.socket.recv_multipart(self._zmq.NOBLOCK)
            except self._zmq.Again:
                continue

    def poll(self, timeout_ms):
        return bool(self.socket.poll(timeout_ms))

    def close(self):
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None


class CircusClient:
    def __init__(self, context=None, endpoint=DEFAULT_ENDPOINT, timeout=5.0, ssh_server=None,
                 ssh_keyfile=None, curve_key=None, server_key=None):
        self.timeout = float(timeout)
        self.tunnel = None
        self.socket = None
        if ssh_server:
            from circus.sshtunnel import open_tunnel
            self.tunnel, endpoint = open_tunnel(ssh_server, endpoint, ssh_keyfile,
                                                timeout=max(self.timeout, 10.0))
        self.endpoint = endpoint
        try:
            if context is None and not (curve_key or server_key) and parse_endpoint(endpoint):
                self.socket = Dealer(endpoint)
            else:
                self.socket = PyzmqDealer(endpoint, context, curve_key, server_key)
        except CallError:
            self.stop()
            raise

    def _deadline(self, timeout=None):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _send(self, msg, deadline):
        try:
            self.socket.send(json.dumps(msg).encode(), deadline)
        except TimeoutError:
            raise CallTimeout("Timed out.") from None
        except ZMTPError as exc:
            raise CallError(str(exc)) from None
        except OSError as exc:
            raise CallError("connection to %s failed: %s" % (self.endpoint, exc)) from None
        return msg

    def send(self, cmd):
        """Send a request without waiting; returns the message sent."""
        return self._send(_request(cmd), self._deadline())

    def cast(self, cmd):
        """Fire and forget: circusd sends no reply to a cast."""
        msg = _request(cmd)
        msg["msg_type"] = "cast"
        return self._send(msg, self._deadline())

    def call(self, cmd):
        """Send a request, return circusd's reply mapping. Connecting counts
        against the timeout too."""
        deadline = self._deadline()
        msg = self._send(_request(cmd), deadline)
        return self._receive(msg["id"], deadline)

    def receive(self, msg_id, timeout=None):
        return self._receive(msg_id, self._deadline(timeout))

    def _receive(self, msg_id, deadline):
        while True:
            try:
                frames = self.socket.recv(deadline)
            except OSError as exc:
                raise CallError("connection to %s failed: %s" % (self.endpoint, exc)) from None
            if frames is None:
                raise CallTimeout("Timed out.")
            try:
                reply = json.loads(frames[-1])
            except (ValueError, IndexError):
                continue
            if isinstance(reply, dict) and reply.get("id") == msg_id:
                return reply

    def stop(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class AsyncCircusClient:
    """The same protocol on an asyncio loop: `await client.call(cmd)`.
    Calls may run concurrently on one client: one reader hands each reply
    to the call whose id it carries."""

    def __init__(self, context=None, endpoint=DEFAULT_ENDPOINT, timeout=5.0,
                 curve_key=None, server_key=None):
        import zmq.asyncio
        self.context = context or zmq.asyncio.Context.instance()
        self.timeout = float(timeout)
        self.endpoint = endpoint
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self._pending = {}
        self._reader = None
        try:
            configure_curve(self.socket, curve_key, server_key)
        except CallError:
            self.stop()
            raise
        self.socket.connect(endpoint)

    async def send(self, cmd):
        msg = _request(cmd)
        await self.socket.send(json.dumps(msg).encode())
        return msg

    async def cast(self, cmd):
        msg = _request(cmd)
        msg["msg_type"] = "cast"
        await self.socket.send(json.dumps(msg).encode())
        return msg

    async def call(self, cmd):
        import asyncio
        msg = _request(cmd)
        future = asyncio.get_running_loop().create_future()
        self._pending[msg["id"]] = future
        try:
            # asyncio.timeout, not wait_for: see circus.util.wait_event
            async with asyncio.timeout(self.timeout):
                await self.socket.send(json.dumps(msg).encode())
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.ensure_future(self._read())
                return await future
        except TimeoutError:
            raise CallTimeout("Timed out.") from None
        finally:
            self._pending.pop(msg["id"], None)

    async def _read(self):
        while self.socket is not None:
            raw = await self.socket.recv()
            try:
                reply = json.loads(raw)
            except ValueError:
                continue
            future = self._pending.get(reply.get("id")) if isinstance(reply, dict) else None
            if future is not None and not future.done():
                future.set_result(reply)

    def stop(self):
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.stop()
