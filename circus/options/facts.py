"""Small facts the options schema checks values against.

They describe what the daemon's modules accept (hook names, resource
limits, socket families and types), but the schema must not import those
modules: the daemon is built from the options, not the other way round. The
daemon's modules still hold copies of their own; tests/test_options.py
checks that the copies agree until the daemon imports them from here.
"""
import resource
import socket

HOOK_NAMES = ("before_start", "after_start", "before_spawn", "after_spawn",
              "before_stop", "after_stop", "before_signal", "after_signal",
              "before_reap", "after_reap")

READY_MODES = ("spawn", "notify")

RLIMITS = {name[len("RLIMIT_"):].lower(): getattr(resource, name)
           for name in dir(resource) if name.startswith("RLIMIT_")}

SOCKET_FAMILIES = {
    "af_inet": socket.AF_INET, "inet": socket.AF_INET, "ipv4": socket.AF_INET,
    "af_inet6": socket.AF_INET6, "inet6": socket.AF_INET6, "ipv6": socket.AF_INET6,
    "af_unix": socket.AF_UNIX, "unix": socket.AF_UNIX,
}
SOCKET_TYPES = {
    "sock_stream": socket.SOCK_STREAM, "stream": socket.SOCK_STREAM, "tcp": socket.SOCK_STREAM,
    "sock_dgram": socket.SOCK_DGRAM, "dgram": socket.SOCK_DGRAM, "udp": socket.SOCK_DGRAM,
    "sock_raw": socket.SOCK_RAW, "sock_rdm": socket.SOCK_RDM,
    "sock_seqpacket": socket.SOCK_SEQPACKET, "seqpacket": socket.SOCK_SEQPACKET,
}

# options of the original thread/gevent stream readers: pipes are read when
# the event loop says they are readable, so these change nothing
STREAM_COMPAT_KEYS = ("refresh_time", "stream_backend")


def rlimit_id(name):
    """The resource.RLIMIT_* constant for 'nofile', 'NOFILE'..."""
    try:
        return RLIMITS[name.lower()]
    except KeyError:
        raise ValueError("unknown resource limit %r (one of %s)"
                         % (name, ", ".join(sorted(RLIMITS)))) from None


def socket_family(value):
    if isinstance(value, int):
        return socket.AddressFamily(value)
    try:
        return SOCKET_FAMILIES[str(value).strip().lower()]
    except KeyError:
        raise ValueError("unknown socket family %r (AF_INET, AF_INET6 or AF_UNIX)"
                         % value) from None


def socket_type(value):
    if isinstance(value, int):
        return socket.SocketKind(value)
    try:
        return SOCKET_TYPES[str(value).strip().lower()]
    except KeyError:
        raise ValueError("unknown socket type %r (SOCK_STREAM, SOCK_DGRAM...)" % value) from None
