"""A minimal sd_notify client.

A process started with NOTIFY_SOCKET in its environment reports its state by
sending short text datagrams ("READY=1", "STOPPING=1"...) to that AF_UNIX
SOCK_DGRAM address. circusd (or systemd) listens there; the worker sends
READY=1 once it can serve, so its supervisor does not have to guess with a
warmup delay.
"""
import os
import socket

__all__ = ["notify"]


def notify(message: str) -> bool:
    """Send ``message`` to $NOTIFY_SOCKET.

    Returns True when the datagram was sent, False when there is no
    NOTIFY_SOCKET or nobody listens on it. Never raises for a missing or
    dead socket: readiness is advisory and must not take the caller down.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":
        # Linux abstract namespace: systemd spells the leading NUL as '@'.
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except (OSError, ValueError):
        # ValueError: embedded NUL or other malformed path.
        return False
    return True
