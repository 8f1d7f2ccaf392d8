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
import socket
import time

from circus.errors import ZMTPError

RECONNECT_INTERVAL = 0.1  # libzmq's default reconnect_ivl

_MORE, _LONG, _COMMAND = 1, 2, 4
_GREETING = (b"\xff" + bytes(8) + b"\x7f"  # signature
             + b"\x03\x00"                  # version 3.0
             + b"NULL".ljust(20, b"\x00")   # mechanism
             + b"\x00"                      # as-server: no
             + bytes(31))                   # filler


def parse_endpoint(endpoint):
    """(family, address) for tcp:// and ipc:// endpoints, None for anything
    this module does not speak (pyzmq then does)."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        return None
    if scheme == "ipc" and rest:
        # libzmq: ipc://@name is the abstract namespace
        return socket.AF_UNIX, "\0" + rest[1:] if rest.startswith("@") else rest
    if scheme == "tcp":
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isdigit() or ";" in host or not host or host == "*":
            return None
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            host = host.encode("ascii")  # spares getaddrinfo the idna codec's import
        except UnicodeEncodeError:
            pass
        return socket.AF_INET, (host, int(port))
    return None


def _frame(data, flags=0):
    size = len(data)
    if size > 255:
        return bytes((flags | _LONG,)) + size.to_bytes(8, "big") + data
    return bytes((flags, size)) + data


def _ready_command(socket_type):
    body = (b"\x05READY"
            + b"\x0bSocket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
            + b"\x08Identity" + bytes(4))
    return _frame(body, _COMMAND)


class Dealer:
    """One connection to a ROUTER. `send(data, deadline)` sends a one-frame
    message, `recv(deadline)` returns the next message's frames, or None if
    the deadline (a time.monotonic() value) passes first. Transport failures
    raise OSError; the next call connects again."""

    def __init__(self, endpoint):
        address = parse_endpoint(endpoint)
        if address is None:
            raise ValueError("not a tcp:// or ipc:// endpoint: %r" % endpoint)
        self.endpoint = endpoint
        self.family, self.address = address
        self._sock = None
        self._buffer = bytearray()
        self._partial = []  # frames of a message whose last frame is still to come

    # --- connection -------------------------------------------------------
    def _open(self, deadline):
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
                    sock = socket.create_connection(
                        self.address, timeout=max(deadline - time.monotonic(), 0.001))
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except (ConnectionRefusedError, FileNotFoundError):
                # nobody listens yet: retry, as libzmq does, until the deadline
                pause = min(RECONNECT_INTERVAL, deadline - time.monotonic())
                if pause <= 0:
                    raise TimeoutError("nothing listens at %s" % self.endpoint) from None
                time.sleep(pause)

    def _connect(self, deadline):
        self._sock = self._open(deadline)
        self._buffer.clear()
        self._partial = []
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

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer.clear()
        self._partial = []

    # --- reading ----------------------------------------------------------
    def _read(self, size, deadline):
        """Exactly size bytes, or None when the deadline passes first."""
        while len(self._buffer) < size:
            if self._fill(size, deadline) is None:
                return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _frame_header(self, offset=0):
        """(flags, header length, body size) of the buffered frame at offset,
        or None while its header is incomplete."""
        buf = self._buffer
        if len(buf) < offset + 2:
            return None
        flags = buf[offset]
        if not flags & _LONG:
            return flags, 2, buf[offset + 1]
        if len(buf) < offset + 9:
            return None
        return flags, 9, int.from_bytes(buf[offset + 1:offset + 9], "big")

    def _read_frame(self, deadline):
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

    def _fill(self, size, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(max(65536, size - len(self._buffer)))
        except TimeoutError:
            return None
        if not chunk:
            raise ConnectionResetError("the peer closed the connection")
        self._buffer += chunk
        return len(chunk)

    def _read_command(self, deadline):
        frame = self._read_frame(deadline)
        if frame is None:
            raise TimeoutError("no ZMTP handshake from %s" % self.endpoint)
        flags, body = frame
        if not flags & _COMMAND or not body:
            raise ZMTPError("%s sent a message before its handshake" % self.endpoint)
        return body[1:1 + body[0]], body[1 + body[0]:]

    # --- the API ----------------------------------------------------------
    def send(self, data, deadline):
        if self._sock is None:
            self._connect(deadline)
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock.sendall(_frame(data))
        except OSError:
            self.close()
            raise

    def recv(self, deadline):
        if self._sock is None:
            raise ConnectionResetError("not connected")
        try:
            while True:
                frame = self._read_frame(deadline)
                if frame is None:
                    return None  # frames of a partial message wait in _partial
                flags, body = frame
                if flags & _COMMAND:
                    self._answer_command(body, deadline)
                    continue
                self._partial.append(body)
                if not flags & _MORE:
                    frames, self._partial = self._partial, []
                    return frames
        except OSError:
            self.close()
            raise

    def _answer_command(self, body, deadline):
        # a ROUTER with heartbeats on drops a peer that does not answer PING
        # (body: name, a 2-byte TTL, then up to 16 bytes of context to echo)
        if body[:5] == b"\x04PING":
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock.sendall(_frame(b"\x04PONG" + body[7:], _COMMAND))

    def poll(self, timeout_ms):
        """True when a whole message can be read at once."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        if self._sock is None:
            return False
        try:
            while True:
                if self._whole_message_buffered():
                    return True
                if self._fill(1, deadline) is None:
                    return False
        except OSError:
            self.close()
            raise

    def _whole_message_buffered(self):
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
