"""A ZeroMQ DEALER peer in plain Python: ZMTP 3.0, NULL mechanism only.

circusctl and CircusClient use it to talk to circusd's ROUTER when no CURVE
key is involved. Importing pyzmq costs about two thirds of a one-shot
`circusctl status` (30 ms of 50 here); this module needs only `socket`.
Everything else (CURVE, the event stream, asyncio) stays with pyzmq.

Wire format (https://rfc.zeromq.org/spec/23/): a 64-byte greeting each way,
then one READY command each way, then frames of a flags byte (MORE 1,
LONG 2, COMMAND 4) and a 1-byte or 8-byte big-endian size.

Like libzmq, a refused connection is retried until the caller's deadline,
so a client started just before circusd still gets its answer.
"""
from __future__ import annotations

import socket
import time

from circus.errors import CallError, CallTimeout, ZMTPError, describe
from circus.transport.dealer import MAX_MESSAGE_SIZE, Dealer
from circus.transport.endpoints import socket_address

RECONNECT_INTERVAL = 0.1  # libzmq's default reconnect_ivl

_MORE, _LONG, _COMMAND = 1, 2, 4
_GREETING = (b"\xff" + bytes(8) + b"\x7f"  # signature
             + b"\x03\x00"                  # version 3.0
             + b"NULL".ljust(20, b"\x00")   # mechanism
             + b"\x00"                      # as-server: no
             + bytes(31))                   # filler


def _frame(data: bytes, flags: int = 0) -> bytes:
    size = len(data)
    if size > 255:
        return bytes((flags | _LONG,)) + size.to_bytes(8, "big") + data
    return bytes((flags, size)) + data


def _ready_command(socket_type: bytes) -> bytes:
    body = (b"\x05READY"
            + b"\x0bSocket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
            + b"\x08Identity" + bytes(4))
    return _frame(body, _COMMAND)


class ZMTPDealer(Dealer):
    """One connection to a ROUTER, keeping the circus.transport.dealer.Dealer
    contract. Internally a transport failure is an OSError (ZMTPError for a
    peer that breaks the protocol, TimeoutError for a deadline passed while
    connecting); the public methods turn it into CallError or CallTimeout,
    and drop the connection: the next send connects again."""

    def __init__(self, endpoint: str) -> None:
        address = socket_address(endpoint)
        if address is None:
            raise CallError("not a tcp:// or ipc:// endpoint: %r" % endpoint)
        self.endpoint = endpoint
        self.family, self.address = address
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        # frames of a message whose last frame is still to come
        self._partial: list[bytes] = []
        self._partial_size = 0

    # --- the Dealer contract ------------------------------------------------
    def connect(self, deadline: float) -> None:
        if self._sock is None:
            try:
                self._connect(deadline)
            except OSError as exc:
                raise self._failure(exc) from None

    def send(self, data: bytes, deadline: float) -> None:
        self.connect(deadline)
        try:
            sock = self._connected()
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(_frame(data))
        except OSError as exc:
            raise self._failure(exc) from None

    def recv(self, deadline: float) -> list[bytes] | None:
        if self._sock is None:
            raise CallError("connection to %s failed: not connected" % self.endpoint)
        try:
            return self._recv(deadline)
        except OSError as exc:
            raise self._failure(exc) from None

    def poll(self, timeout_ms: float) -> bool:
        deadline = time.monotonic() + timeout_ms / 1000.0
        if self._sock is None:
            return False
        try:
            while not self._whole_message_buffered():
                if self._fill(1, deadline) is None:
                    return False
            return True
        except OSError as exc:
            raise self._failure(exc) from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer.clear()
        self._partial = []
        self._partial_size = 0

    def _failure(self, exc: OSError) -> CallError:
        """The CallError to raise for exc; the connection is dropped."""
        self.close()
        if isinstance(exc, TimeoutError):
            return CallTimeout("Timed out.")
        if isinstance(exc, ZMTPError):
            return CallError(str(exc))
        return CallError("connection to %s failed: %s" % (self.endpoint, describe(exc)))

    # --- connection -------------------------------------------------------
    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionResetError("not connected")
        return self._sock

    def _open(self, deadline: float) -> socket.socket:
        while True:
            try:
                if self.family == socket.AF_UNIX:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        sock.settimeout(max(deadline - time.monotonic(), 0.001))
                        sock.connect(self.address)
                    except OSError:
                        sock.close()
                        raise
                else:
                    # (host, port); typeshed wants a str host, but a bytes
                    # one is what spares getaddrinfo the idna codec
                    sock = socket.create_connection(
                        self.address,  # type: ignore[arg-type]
                        timeout=max(deadline - time.monotonic(), 0.001))
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except (ConnectionRefusedError, FileNotFoundError):
                # nobody listens yet: retry, as libzmq does, until the deadline
                pause = min(RECONNECT_INTERVAL, deadline - time.monotonic())
                if pause <= 0:
                    raise TimeoutError("nothing listens at %s" % self.endpoint) from None
                time.sleep(pause)

    def _connect(self, deadline: float) -> None:
        self._sock = self._open(deadline)
        self._buffer.clear()
        self._partial = []
        self._partial_size = 0
        try:
            # signature and major version first: libzmq answers with its
            # whole greeting (naming its mechanism) before it reads the rest
            # of ours, and may hang up without one if it gets a mismatch early
            self._sock.sendall(_GREETING[:11])
            greeting = self._read(64, deadline)
            if greeting is None:
                raise TimeoutError("no ZMTP greeting from %s" % self.endpoint)
            if greeting[0] != 0xFF or greeting[9] != 0x7F or greeting[10] < 3:
                raise ZMTPError("%s does not speak ZMTP 3" % self.endpoint)
            mechanism = greeting[12:32].rstrip(b"\x00").decode("ascii", "replace")
            if mechanism != "NULL":
                raise ZMTPError("%s requires %s security (give --curve-key and --server-key)"
                                % (self.endpoint, mechanism))
            self._sock.sendall(_GREETING[11:])
            self._sock.sendall(_ready_command(b"DEALER"))
            name, body = self._read_command(deadline)
            if name == b"ERROR":
                reason = bytes(body[1:1 + body[0]]).decode("utf-8", "replace") if body else ""
                raise ZMTPError("%s refused the connection: %s" % (self.endpoint, reason))
            if name != b"READY":
                raise ZMTPError("%s sent %r instead of READY" % (self.endpoint, name))
        except BaseException:
            self.close()
            raise

    # --- reading ----------------------------------------------------------
    def _read(self, size: int, deadline: float) -> bytes | None:
        """Exactly size bytes, or None when the deadline passes first."""
        while len(self._buffer) < size:
            if self._fill(size, deadline) is None:
                return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _frame_header(self, offset: int = 0) -> tuple[int, int, int] | None:
        """(flags, header length, body size) of the buffered frame at offset,
        or None while its header is incomplete. A frame larger than
        MAX_MESSAGE_SIZE is refused before a byte of it is buffered."""
        buf = self._buffer
        if len(buf) < offset + 2:
            return None
        flags = buf[offset]
        if not flags & _LONG:
            return flags, 2, buf[offset + 1]
        if len(buf) < offset + 9:
            return None
        size = int.from_bytes(buf[offset + 1:offset + 9], "big")
        if size > MAX_MESSAGE_SIZE:
            raise self._too_large(size)
        return flags, 9, size

    def _too_large(self, size: int) -> ZMTPError:
        return ZMTPError("%s sent a message of %d bytes, more than the %d (MAX_MESSAGE_SIZE) "
                         "a client accepts" % (self.endpoint, size, MAX_MESSAGE_SIZE))

    def _read_frame(self, deadline: float) -> tuple[int, bytes] | None:
        """(flags, body) of the next frame, or None at the deadline. A frame
        is taken from the buffer only when it is whole, so a deadline in the
        middle of one leaves the stream in step."""
        while True:
            header = self._frame_header()
            need = 9
            if header is not None:
                flags, head, size = header
                need = head + size
                if len(self._buffer) >= need:
                    body = bytes(self._buffer[head:need])
                    del self._buffer[:need]
                    return flags, body
            if self._fill(need, deadline) is None:
                return None

    def _fill(self, size: int, deadline: float) -> int | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock = self._connected()
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(max(65536, size - len(self._buffer)))
        except TimeoutError:
            return None
        if not chunk:
            raise ConnectionResetError("the peer closed the connection")
        self._buffer += chunk
        return len(chunk)

    def _read_command(self, deadline: float) -> tuple[bytes, bytes]:
        frame = self._read_frame(deadline)
        if frame is None:
            raise TimeoutError("no ZMTP handshake from %s" % self.endpoint)
        flags, body = frame
        if not flags & _COMMAND or not body:
            raise ZMTPError("%s sent a message before its handshake" % self.endpoint)
        return body[1:1 + body[0]], body[1 + body[0]:]

    def _recv(self, deadline: float) -> list[bytes] | None:
        while True:
            frame = self._read_frame(deadline)
            if frame is None:
                return None  # frames of a partial message wait in _partial
            flags, body = frame
            if flags & _COMMAND:
                self._answer_command(body, deadline)
                continue
            self._partial.append(body)
            self._partial_size += len(body)
            if self._partial_size > MAX_MESSAGE_SIZE:
                raise self._too_large(self._partial_size)
            if not flags & _MORE:
                frames, self._partial, self._partial_size = self._partial, [], 0
                return frames

    def _answer_command(self, body: bytes, deadline: float) -> None:
        # a ROUTER with heartbeats on drops a peer that does not answer PING
        # (body: name, a 2-byte TTL, then up to 16 bytes of context to echo)
        if body[:5] == b"\x04PING":
            sock = self._connected()
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(_frame(b"\x04PONG" + body[7:], _COMMAND))

    def _whole_message_buffered(self) -> bool:

        offset = 0
        while True:
            header = self._frame_header(offset)
            if header is None:
                return False
            flags, head, size = header
            offset += head + size
            if len(self._buffer) < offset:
                return False
            if not flags & (_MORE | _COMMAND):
                return True
