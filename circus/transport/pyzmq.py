"""The libzmq (pyzmq) side of the transport: CURVE setup for any client
socket, and PyzmqDealer, the Dealer for what the plain-Python ZMTP dealer
does not speak (CURVE, a caller's context, libzmq-only transports).

pyzmq is imported when a PyzmqDealer is made, not with this module:
circusctl imports the transport without paying for pyzmq.
"""
from __future__ import annotations

import time

from circus.errors import CallError, CallTimeout
from circus.transport.dealer import MAX_MESSAGE_SIZE, Dealer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (circusctl's start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    import zmq

    # a zmq.Socket, or a zmq.asyncio.Socket when made from a zmq.asyncio.Context
    _Socket = TypeVar("_Socket", bound=zmq.Socket[Any])


def configure_curve(sock: zmq.Socket[Any], curve_key: str | None = None,
                    server_key: str | None = None) -> None:
    """Make sock a CURVE client: curve_key is the client's secret key file,
    server_key the server's public key file (zmq.auth certificate format).
    Nothing to do when neither is given; CallError when one is missing or
    cannot be read."""
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


def client_socket(context: zmq.Context[_Socket], socket_type: int, endpoint: str,
                  curve_key: str | None = None, server_key: str | None = None,
                  setup: Callable[[_Socket], object] | None = None) -> _Socket:
    """A pyzmq socket of socket_type connected to endpoint, with CURVE when
    keys are given, no linger, and the message size cap of every client;
    setup(sock), if given, runs before it connects. CallError when endpoint
    or the keys are unusable."""
    import zmq
    sock = context.socket(socket_type)
    sock.linger = 0
    sock.ipv6 = True  # IPv6 endpoints too, as the ZMTP dealer reaches them
    # libzmq drops a peer that announces more (and the call times out)
    sock.maxmsgsize = MAX_MESSAGE_SIZE
    try:
        configure_curve(sock, curve_key, server_key)
        if setup is not None:
            setup(sock)
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise CallError("cannot connect to %s: %s" % (endpoint, exc)) from None
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


class PyzmqDealer(Dealer):
    """A pyzmq DEALER keeping the circus.transport.dealer.Dealer contract.
    libzmq connects, and reconnects, in its background: connect() only
    creates the socket."""

    def __init__(self, endpoint: str, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 curve_key: str | None = None, server_key: str | None = None) -> None:
        import zmq
        self._zmq = zmq
        self.endpoint = endpoint
        self._context = context
        self._keys = curve_key, server_key
        self.socket: zmq.Socket[bytes] | None = None
        self.connect(None)  # now: a bad endpoint or key fails at once

    def connect(self, deadline: float | None) -> None:
        if self.socket is None:
            zmq = self._zmq
            self.socket = client_socket(self._context or zmq.Context.instance(), zmq.DEALER,
                                        self.endpoint, *self._keys)

    def send(self, data: bytes, deadline: float) -> None:
        self.connect(deadline)
        sock = self._connected()
        zmq = self._zmq
        while True:
            try:
                sock.send(data, zmq.NOBLOCK)
                return
            except zmq.Again:
                # the queue is full (high-water mark): wait for room, not longer
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(int(remaining * 1000), zmq.POLLOUT):
                    raise CallTimeout("Timed out.") from None
            except zmq.ZMQError as exc:
                self.close()
                raise CallError("connection to %s failed: %s" % (self.endpoint, exc)) from None

    def recv(self, deadline: float) -> list[bytes] | None:
        sock = self._connected()
        zmq = self._zmq
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(int(remaining * 1000)):
                    return None
                try:
                    return sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
        except zmq.ZMQError as exc:
            self.close()
            raise CallError("connection to %s failed: %s" % (self.endpoint, exc)) from None

    def poll(self, timeout_ms: float) -> bool:
        return self.socket is not None and bool(self.socket.poll(int(timeout_ms)))


    def _connected(self) -> zmq.Socket[bytes]:
        if self.socket is None:
            raise CallError("connection to %s failed: not connected" % self.endpoint)
        return self.socket

    def close(self) -> None:

        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
