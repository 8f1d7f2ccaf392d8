"""The DEALER side of circusd's command channel, as one contract.

Two implementations keep it: circus.transport.zmtp.ZMTPDealer (plain Python,
ZMTP 3.0 NULL mechanism, what circusctl uses: importing pyzmq would double
its start time) and circus.transport.pyzmq.PyzmqDealer (libzmq: CURVE, a
caller's own context, the transports only libzmq speaks). `open_dealer`
picks one. tests/test_dealer_contract.py runs the same tests on both.

Deadlines are time.monotonic() values, so one deadline can cover connecting,
sending and receiving.
"""
from __future__ import annotations

import abc

from circus.transport.endpoints import socket_address

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (circusctl's start)
if TYPE_CHECKING:
    import zmq


# The largest message a dealer accepts. A peer announcing more (a ZMTP size
# field is 8 bytes: up to 2**64) is cut off with a CallError instead of
# being given the memory; circusd's biggest replies (stats of thousands of
# processes) are a few MiB.
MAX_MESSAGE_SIZE = 64 << 20


class Dealer(abc.ABC):
    """One DEALER connection to a ROUTER (circusd's endpoint).

    What every implementation guarantees:

    - Failures raise CallError, and a deadline passed raises CallTimeout (a
      CallError): never OSError, zmq.ZMQError or MemoryError. CallError's
      message names the endpoint or the problem.
    - connect(deadline) makes the connection. ZMTPDealer connects and
      handshakes there and then, retrying a refused connection until the
      deadline as libzmq does (CallTimeout after it); libzmq connects in
      its background and queues what is sent meanwhile. A peer that refuses
      us or does not speak ZMTP 3 raises CallError.
    - send(data, deadline) sends a one-frame message, connecting first if
      need be (with connect's errors); CallTimeout if it cannot be handed
      over before the deadline.
    - recv(deadline) returns the frames of the next message, or None when
      the deadline passes first. A timeout is not an error here: the caller
      knows what it waited for (CircusClient raises CallTimeout). A message
      cut by the deadline stays whole for the next recv.
    - poll(timeout_ms) is True when recv can return a message at once.
    - A message larger than MAX_MESSAGE_SIZE raises CallError (ZMTPDealer)
      or is dropped with its connection by libzmq (then the call times out).
    - After a failure the dealer is disconnected; the next send connects
      again: a client outlives a restart of circusd without being rebuilt.
    - close() may be called any number of times.
    """

    endpoint: str

    @abc.abstractmethod
    def connect(self, deadline: float) -> None:
        """Connect now if not connected yet."""

    @abc.abstractmethod
    def send(self, data: bytes, deadline: float) -> None:
        """Send data (bytes) as a one-frame message."""

    @abc.abstractmethod
    def recv(self, deadline: float) -> list[bytes] | None:
        """The next message's frames, or None at the deadline."""

    @abc.abstractmethod
    def poll(self, timeout_ms: float) -> bool:
        """True when a whole message is waiting."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect; the next send connects again."""


def open_dealer(endpoint: str, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                curve_key: str | None = None, server_key: str | None = None) -> Dealer:
    """The dealer for endpoint: ZMTPDealer when it can do the job (no CURVE,
    no caller's context, tcp:// or ipc://), else PyzmqDealer. CallError for
    an endpoint neither can use."""
    if context is None and not (curve_key or server_key) and socket_address(endpoint):
        from circus.transport.zmtp import ZMTPDealer
        return ZMTPDealer(endpoint)
    from circus.transport.pyzmq import PyzmqDealer
    return PyzmqDealer(endpoint, context, curve_key, server_key)
