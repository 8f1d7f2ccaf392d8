"""circus.transport.zmtp: the plain-Python DEALER that CircusClient and circusctl use,
against libzmq's ROUTER (pyzmq here) and a real circusd."""
import os
import socket
import subprocess
import threading
import time

import pytest
import zmq

from circus.client import CallError, CallTimeout, CircusClient
from circus.transport.endpoints import socket_address as parse_endpoint
from circus.transport.zmtp import ZMTPDealer as Dealer
from support import BIN, PYTHON, ROOT

CONFIG = "[watcher:sleeper]\ncmd = sleep 300\n"


@pytest.fixture
def router():
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.linger = 0
    sock.router_mandatory = True  # sending to a peer that is gone raises
    yield sock
    sock.close(linger=0)
    context.term()


def soon(seconds=5.0):
    return time.monotonic() + seconds


def test_parse_endpoint():
    assert parse_endpoint("tcp://127.0.0.1:5555") == (socket.AF_INET, (b"127.0.0.1", 5555))
    assert parse_endpoint("tcp://[::1]:5555") == (socket.AF_INET, (b"::1", 5555))
    assert parse_endpoint("tcp://localhost:7") == (socket.AF_INET, (b"localhost", 7))
    assert parse_endpoint("ipc:///run/c.sock") == (socket.AF_UNIX, "/run/c.sock")
    assert parse_endpoint("ipc://@circus") == (socket.AF_UNIX, "\0circus")
    # what libzmq alone understands stays with pyzmq
    for endpoint in ("inproc://x", "tcp://*:5555", "tcp://eth0;10.0.0.1:5555",
                     "tcp://127.0.0.1", "127.0.0.1:5555", "ipc://"):
        assert parse_endpoint(endpoint) is None, endpoint


def test_short_long_and_multipart_messages(router):
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = Dealer("tcp://127.0.0.1:%d" % port)
    try:
        for size in (0, 5, 255, 256, 100_000):  # 255/256: the 1-byte and 8-byte sizes
            payload = os.urandom(size)
            dealer.send(payload, soon())
            assert router.poll(5000)
            identity, received = router.recv_multipart()
            assert received == payload
            router.send_multipart([identity, b"first", payload, b""])
            assert dealer.recv(soon()) == [b"first", payload, b""]
        # nothing sent: recv gives up at the deadline, and the stream stays in step
        assert dealer.recv(soon(0.05)) is None
        router.send_multipart([identity, b"after"])
        assert dealer.recv(soon()) == [b"after"]
    finally:
        dealer.close()


def test_a_message_cut_by_the_deadline_stays_whole():
    # libzmq writes a message at once, so play the ROUTER by hand to stop
    # between the first frame (MORE) and the last
    from circus.transport.zmtp import _GREETING, _frame
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    second_frame = threading.Event()

    def peer():
        conn = listener.accept()[0]
        with conn:
            conn.sendall(_GREETING)
            received = b""
            while b"READY" not in received:
                received += conn.recv(4096)
            conn.sendall(_frame(b"\x05READY\x0bSocket-Type\x00\x00\x00\x06ROUTER", 4))
            conn.recv(4096)  # the request
            conn.sendall(_frame(b"first", 1))
            second_frame.wait(10)
            conn.sendall(_frame(b"second"))
            conn.recv(1)  # until the client hangs up
    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    dealer = Dealer("tcp://127.0.0.1:%d" % listener.getsockname()[1])
    try:
        dealer.send(b"request", soon())
        assert dealer.recv(soon(0.2)) is None  # only the first frame came
        second_frame.set()
        assert dealer.recv(soon()) == [b"first", b"second"]
    finally:
        second_frame.set()
        dealer.close()
        thread.join(10)
        listener.close()


def test_heartbeat_pings_are_answered(router):
    # a ROUTER with heartbeats drops a peer that stays silent after its PING
    router.heartbeat_ivl = 20
    router.heartbeat_timeout = 100
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = Dealer("tcp://127.0.0.1:%d" % port)
    try:
        dealer.send(b"hello", soon())
        assert router.poll(5000)
        identity, _ = router.recv_multipart()
        # ten heartbeat timeouts with nothing to read but PINGs
        assert dealer.recv(soon(1.0)) is None
        router.send_multipart([identity, b"still connected"])
        assert dealer.recv(soon()) == [b"still connected"]
    finally:
        dealer.close()


def test_a_curve_server_is_named_not_waited_for(router):
    public, secret = zmq.curve_keypair()
    router.curve_server = True
    router.curve_publickey = public
    router.curve_secretkey = secret
    port = router.bind_to_random_port("tcp://127.0.0.1")
    client = CircusClient(endpoint="tcp://127.0.0.1:%d" % port, timeout=10)
    try:
        started = time.monotonic()
        with pytest.raises(CallError, match="requires CURVE security .*--curve-key"):
            client.call({"command": "list"})
        assert time.monotonic() - started < 5
    finally:
        client.stop()


def test_peers_that_do_not_speak_zmtp():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    endpoint = "tcp://127.0.0.1:%d" % listener.getsockname()[1]
    accepted = []
    try:
        # silent: a timeout, as with pyzmq
        client = CircusClient(endpoint=endpoint, timeout=0.3)
        try:
            with pytest.raises(CallTimeout):
                client.call({"command": "list"})
        finally:
            client.stop()
        accepted.append(listener.accept()[0])
        # hangs up: said at once
        client = CircusClient(endpoint=endpoint, timeout=10)
        threading.Thread(target=lambda: listener.accept()[0].close(), daemon=True).start()
        try:
            with pytest.raises(CallError, match="connection to %s failed: " % endpoint) as info:
                client.call({"command": "list"})
            assert info.type is CallError  # not a timeout
        finally:
            client.stop()
        # HTTP instead of ZMTP
        client = CircusClient(endpoint=endpoint, timeout=10)

        def http_server():
            conn = listener.accept()[0]
            accepted.append(conn)
            conn.recv(100)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n" + b"x" * 100)
        threading.Thread(target=http_server, daemon=True).start()
        try:
            with pytest.raises(CallError, match="does not speak ZMTP 3"):
                client.call({"command": "list"})
        finally:
            client.stop()
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_client_reconnects_after_circusd_restarts(circusd):
    daemon = circusd(CONFIG)
    client = CircusClient(endpoint=daemon.endpoint, timeout=10)
    try:
        assert client.call({"command": "list"})["watchers"] == ["sleeper"]
        daemon.stop()
        with pytest.raises(CallError):
            client.call({"command": "list"})  # the old connection is gone
        daemon.start()
        assert client.call({"command": "list"})["watchers"] == ["sleeper"]
    finally:
        client.stop()


def test_circusctl_waits_for_a_circusd_that_is_starting(circusd):
    # scripts run `circusd --daemon` and then circusctl at once: a refused
    # connection is retried until the timeout, as libzmq would. `list`, not
    # `status`: circusd answers while its watchers start, so a status could
    # honestly be "starting"
    daemon = circusd(CONFIG, start=False)
    ctl = subprocess.Popen([os.path.join(BIN, "circusctl"), "--endpoint", daemon.endpoint,
                            "--timeout", "30", "list"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ,
                                                                       PYTHONPATH=ROOT))
    try:
        daemon.start(wait=False)
        out, err = ctl.communicate(timeout=60)
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait()
    assert (ctl.returncode, out) == (0, "sleeper\n"), err


def test_one_shot_circusctl_does_not_import_zmq(circusd):
    # importing pyzmq would be two thirds of circusctl's start time
    daemon = circusd(CONFIG)
    code = ("import sys; from circus.circusctl import main; "
            "status = main(['--endpoint', %r, 'status']); "
            "print(status, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('zmq', 'asyncio', 'psutil')))" % daemon.endpoint)
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.stdout == "sleeper: active\n0 []\n", result.stderr
