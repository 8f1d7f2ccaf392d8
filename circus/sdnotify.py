"""sd_notify, both ends: a child saying it is ready, circusd listening.

A process started with NOTIFY_SOCKET in its environment reports its state
by sending short "KEY=VALUE" lines ("READY=1", "STOPPING=1") in one
datagram to that AF_UNIX SOCK_DGRAM address, as systemd defines it.
circusd binds one such socket for all its children (NotifyListener) and
puts its address in the environment of watchers with ``ready = notify``;
the worker, plugins and any Python child send with notify(). The kernel
attaches the sender's credentials (SO_PASSCRED), so circusd learns the pid
without trusting the message.

A leaf: the worker and plugins import it without the daemon.
"""
import logging
import os
import socket
import struct

__all__ = ["ENV", "READY", "STOPPING", "NotifyListener", "notify", "parse"]

# the environment variable naming the address
ENV = "NOTIFY_SOCKET"
# the messages circus sends and reads
READY = "READY=1"
STOPPING = "STOPPING=1"

logger = logging.getLogger("circus")

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _sockaddr(address):
    # systemd spells the leading NUL of a Linux abstract address as '@'
    return "\0" + address[1:] if address.startswith("@") else address


def parse(data):
    """A datagram as a mapping: b"READY=1\\nSTATUS=x" -> {"READY": "1", ...}."""
    message = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            message[key.strip()] = value.strip()
    return message


def notify(message: str) -> bool:
    """Send ``message`` (READY, STOPPING...) to $NOTIFY_SOCKET.

    Returns True when the datagram was sent, False when there is no
    NOTIFY_SOCKET or nobody listens on it. Never raises for a missing or
    dead socket: readiness is advisory and must not take the caller down.
    """
    address = os.environ.get(ENV)
    if not address:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_sockaddr(address))
            sock.sendall(message.encode("utf-8"))
    except (OSError, ValueError):
        # ValueError: embedded NUL or other malformed path.
        return False
    return True


class NotifyListener:
    """circusd's end: one datagram socket on the loop; callback(pid, message)
    for every datagram, message as parse() gives it."""

    def __init__(self, loop, callback):
        self.loop = loop
        self.callback = callback
        # abstract namespace: nothing on disk to clean up or to protect
        self.address = "@circus-notify-%d-%d" % (os.getpid(), id(self))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(_sockaddr(self.address))
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self):
        for _ in range(64):  # bounded per wake-up
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_CREDS.size))
            except BlockingIOError:
                return
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDS.unpack(payload[:_CREDS.size])[0]
            if pid is None:
                continue
            try:
                self.callback(pid, parse(data))
            except Exception:
                logger.exception("notify message from pid %d failed", pid)

    def close(self):
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
