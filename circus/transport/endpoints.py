"""ZeroMQ endpoints (tcp://HOST:PORT, ipc://PATH), parsed in one place.

circusd binds its endpoints; clients, plugins, circusd-stats and ssh
tunnels connect to them. Everything that turns one into the other, or into
a socket address, is here:

- `split_tcp` and `format_tcp`: host and port of a tcp:// endpoint, IPv6
  literals in brackets (tcp://[::1]:5555), and back;
- `connectable`: where a client connects to reach an endpoint circusd binds
  (a wildcard host is reached on the loopback of its family);
- `socket_address`: the (family, address) the plain-Python ZMTP dealer
  connects to, or None for what only libzmq speaks;
- `ssh_forward_target`: the remote end of an ssh -L forward.

Only libzmq understands the rest (tcp://eth0:5555, tcp://src;dst:port,
inproc://, pgm://...): those are passed on untouched.
"""
from __future__ import annotations

import socket

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (circusctl's start)
if TYPE_CHECKING:
    from typing import TypeAlias

    # what socket.connect takes: a unix path, or (host, port) with the host
    # as bytes when it is ASCII
    Address: TypeAlias = str | tuple[str | bytes, int]


# a bound wildcard is reached on the loopback of the same family
_LOOPBACK = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def split_tcp(endpoint: str) -> tuple[str, int] | None:
    """(host, port) of tcp://HOST:PORT, the host without IPv6 brackets; None
    when endpoint is not that (other schemes, no port, a source address)."""
    scheme, sep, rest = endpoint.partition("://")
    if scheme != "tcp" or not sep:
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host or ";" in host:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_tcp(host: str, port: int) -> str:
    """tcp://HOST:PORT, with brackets around an IPv6 literal."""
    return "tcp://%s:%d" % ("[%s]" % host if ":" in host else host, port)


def _unspecified(host: str) -> str | None:
    if host in _LOOPBACK:
        return _LOOPBACK[host]
    if ":" not in host and not host.replace(".", "").isdigit():
        return None  # a name (localhost, eth0): not an address at all
    import ipaddress
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return None


def connectable(endpoint: str) -> str:
    """An endpoint a client can connect to, for one circusd binds:
    tcp://*:5555 and tcp://0.0.0.0:5555 -> tcp://127.0.0.1:5555,
    tcp://[::]:5555 -> tcp://[::1]:5555; anything else as it is."""
    parts = split_tcp(endpoint)
    if parts is None:
        return endpoint
    loopback = _unspecified(parts[0])
    return endpoint if loopback is None else format_tcp(loopback, parts[1])


def socket_address(endpoint: str) -> tuple[socket.AddressFamily, Address] | None:
    """(family, address) for the tcp:// and ipc:// endpoints the ZMTP dealer
    speaks; None for anything else (pyzmq then does).

    A tcp:// host stays a name (bytes: spares getaddrinfo the idna codec's
    import): socket.create_connection resolves it, IPv4 or IPv6 alike."""
    scheme, sep, rest = endpoint.partition("://")
    if scheme == "ipc" and sep and rest:
        # libzmq: ipc://@name is the abstract namespace
        return socket.AF_UNIX, "\0" + rest[1:] if rest.startswith("@") else rest
    parts = split_tcp(endpoint)
    if parts is None or parts[0] == "*":
        return None
    host, port = parts
    try:
        return socket.AF_INET, (host.encode("ascii"), port)
    except UnicodeEncodeError:
        return socket.AF_INET, (host, port)


def ssh_forward_target(endpoint: str) -> str:

    """The remote end of `ssh -L LOCAL:TARGET` that reaches endpoint as the
    remote host sees it: HOST:PORT (IPv6 in brackets, a wildcard on the
    loopback) or a unix socket path. ValueError for anything else."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint[len("ipc://"):]
    if endpoint.startswith("tcp://"):
        parts = split_tcp(connectable(endpoint))
        if parts is None:
            raise ValueError("cannot tunnel %r: no port" % endpoint)
        host, port = parts
        return "%s:%d" % ("[%s]" % host if ":" in host else host, port)
    raise ValueError("cannot tunnel %r: only tcp:// and ipc:// endpoints" % endpoint)
