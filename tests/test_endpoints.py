"""circus.transport.endpoints: the one place endpoints are parsed."""
import socket

import pytest

from circus.errors import TunnelError
from circus.transport.endpoints import (connectable, format_tcp, socket_address, split_tcp,
                                        ssh_forward_target)
from circus.transport.sshtunnel import forward_spec


def test_split_and_format_tcp():
    assert split_tcp("tcp://127.0.0.1:5555") == ("127.0.0.1", 5555)
    assert split_tcp("tcp://[::1]:5555") == ("::1", 5555)
    assert split_tcp("tcp://*:5555") == ("*", 5555)
    assert split_tcp("tcp://localhost:7") == ("localhost", 7)
    for endpoint in ("tcp://127.0.0.1", "tcp://:5555", "tcp://a;b:5555", "ipc:///x",
                     "inproc://x", "127.0.0.1:5555", "tcp://host:http"):
        assert split_tcp(endpoint) is None, endpoint
    assert format_tcp("127.0.0.1", 5555) == "tcp://127.0.0.1:5555"
    assert format_tcp("::1", 5555) == "tcp://[::1]:5555"


@pytest.mark.parametrize("bound, reached", [
    # IPv4 wildcards: the IPv4 loopback
    ("tcp://*:5555", "tcp://127.0.0.1:5555"),
    ("tcp://0.0.0.0:5555", "tcp://127.0.0.1:5555"),
    # IPv6 wildcards, however written: the IPv6 loopback
    ("tcp://[::]:5555", "tcp://[::1]:5555"),
    ("tcp://[0:0::0]:5555", "tcp://[::1]:5555"),
    # addresses and names are reachable as they are
    ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"),
    ("tcp://10.1.2.3:5555", "tcp://10.1.2.3:5555"),
    ("tcp://[::1]:5555", "tcp://[::1]:5555"),
    ("tcp://[fe80::1]:5555", "tcp://[fe80::1]:5555"),
    ("tcp://localhost:5555", "tcp://localhost:5555"),
    ("tcp://eth0:5555", "tcp://eth0:5555"),
    # not tcp://HOST:PORT: left to libzmq
    ("ipc:///run/circus.sock", "ipc:///run/circus.sock"),
    ("ipc://@circus", "ipc://@circus"),
    ("inproc://x", "inproc://x"),
    ("tcp://*", "tcp://*"),
])
def test_connectable(bound, reached):
    assert connectable(bound) == reached


def test_connectable_endpoints_accept_a_connection():
    # what connectable() gives is where a bound wildcard really answers
    for family, wildcard, bound in ((socket.AF_INET, "0.0.0.0", "tcp://0.0.0.0:%d"),
                                    (socket.AF_INET6, "::", "tcp://[::]:%d")):
        try:
            listener = socket.socket(family)
        except OSError:
            continue  # no IPv6 here
        with listener:
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind((wildcard, 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            host, port = split_tcp(connectable(bound % port))
            with socket.create_connection((host, port), timeout=5):
                pass


def test_socket_address():
    assert socket_address("tcp://127.0.0.1:5555") == (socket.AF_INET, (b"127.0.0.1", 5555))
    # a name or an IPv6 literal: create_connection resolves either
    assert socket_address("tcp://[::1]:5555") == (socket.AF_INET, (b"::1", 5555))
    assert socket_address("tcp://localhost:7") == (socket.AF_INET, (b"localhost", 7))
    assert socket_address("ipc:///run/c.sock") == (socket.AF_UNIX, "/run/c.sock")
    assert socket_address("ipc://@circus") == (socket.AF_UNIX, "\0circus")
    for endpoint in ("inproc://x", "tcp://*:5555", "tcp://eth0;10.0.0.1:5555",
                     "tcp://127.0.0.1", "127.0.0.1:5555", "ipc://"):
        assert socket_address(endpoint) is None, endpoint


def test_ssh_forward_target():
    assert ssh_forward_target("tcp://127.0.0.1:5555") == "127.0.0.1:5555"
    assert ssh_forward_target("tcp://*:5555") == "127.0.0.1:5555"
    assert ssh_forward_target("tcp://0.0.0.0:5555") == "127.0.0.1:5555"
    # ssh -L wants IPv6 addresses in brackets
    assert ssh_forward_target("tcp://[::1]:5555") == "[::1]:5555"
    assert ssh_forward_target("tcp://[::]:5555") == "[::1]:5555"
    assert ssh_forward_target("ipc:///run/circus.sock") == "/run/circus.sock"
    for endpoint in ("tcp://127.0.0.1", "ipc://", "inproc://x"):
        with pytest.raises(ValueError):
            ssh_forward_target(endpoint)
    assert forward_spec("tcp://[::]:5555", 40000) == "127.0.0.1:40000:[::1]:5555"
    with pytest.raises(TunnelError, match="no port"):
        forward_spec("tcp://127.0.0.1", 40000)
