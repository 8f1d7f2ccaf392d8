"""The waitress backend's loop turn (circus.worker.backends.waitress.Poller):
it looks only at the dispatchers that may have changed, and a real worker
serves many keep-alive connections through it without losing one."""
import contextlib
import http.client
import os
import socket
import subprocess
import threading
import time

import pytest

from circus.worker.backends.waitress import Poller
from support import PYTHON, ROOT, wait_for


class Dispatcher:
    """A dispatcher as the Poller sees one: its answers are counted."""
    accepting = False

    def __init__(self, sock, readable=True):
        self.sock = sock
        self._fileno = sock.fileno()
        self.server = self  # pull_trigger: the test runs the turns itself
        self.triggers = 0
        self.requests = []
        self.total_outbufs_len = 0
        self.will_close = self.close_when_flushed = False
        self._readable = readable
        self.looked = 0

    def readable(self):
        self.looked += 1
        return self._readable and not self.requests

    def writable(self):
        return bool(self.total_outbufs_len)

    def pull_trigger(self):
        self.triggers += 1


class Fake(Dispatcher):
    """A connection (an HTTPChannel, to the Poller)."""


class Listener(Dispatcher):
    accepting = True  # not a connection: looked at every turn


@pytest.fixture
def loop():
    pairs, events = [], []

    def readwrite(obj, flags):
        events.append((obj, flags))
        obj.sock.recv(100)

    poller = Poller(Fake, readwrite)
    socket_map = {}

    def add(cls=Fake, **kw):
        ours, theirs = socket.socketpair()
        pairs.append((ours, theirs))
        obj = cls(ours, **kw)
        socket_map[ours.fileno()] = obj
        poller.added(ours.fileno())
        return obj, theirs
    yield poller, socket_map, add, events
    poller.close()
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_a_turn_looks_at_what_may_have_changed_only(loop):
    poller, socket_map, add, events = loop
    idle = [add()[0] for _ in range(100)]
    listener, _ = add(Listener)
    queued, _ = add()
    queued.requests = ["waiting for a thread"]
    poller.poll(0, socket_map)
    assert all(obj.looked == 1 for obj in idle + [listener, queued])
    for _ in range(3):
        poller.poll(0, socket_map)
    # idle keep-alive connections and one waiting for a thread: not looked
    # at again; the listener at every turn
    assert all(obj.looked == 1 for obj in idle) and queued.looked == 1
    assert listener.looked == 4
    # a thread is done with it: it says so, and the next turn looks at it
    queued.requests = []
    poller.stirred(queued)
    assert queued.triggers == 1
    poller.poll(0, socket_map)
    assert queued.looked == 2 and all(obj.looked == 1 for obj in idle)


def test_an_event_brings_a_look_and_idle_ones_keep_their_registration(loop):
    poller, socket_map, add, events = loop
    quiet, _ = add()
    talking, other_end = add()
    poller.poll(0, socket_map)
    other_end.send(b"GET")
    poller.poll(1, socket_map)
    assert [obj for obj, _ in events] == [talking]
    looked = talking.looked
    poller.poll(0, socket_map)
    assert talking.looked == looked + 1 and quiet.looked == 1
    # still registered: the next request is seen without any look before
    other_end.send(b"GET")
    poller.poll(1, socket_map)
    assert [obj for obj, _ in events] == [talking, talking]


def test_a_connection_done_with_its_request_is_registered_to_read_again(loop):
    poller, socket_map, add, events = loop
    channel, other_end = add()
    channel.requests = ["in a thread"]
    poller.poll(0, socket_map)  # not readable: not registered
    other_end.send(b"next")
    poller.poll(0, socket_map)
    assert events == []
    channel.requests = []  # the thread finished it
    poller.stirred(channel)
    poller.poll(0, socket_map)  # looked at: readable again, and data waits
    poller.poll(1, socket_map)
    assert [obj for obj, _ in events] == [channel]


def test_removed_and_everything(loop):
    poller, socket_map, add, events = loop
    gone, other_end = add()
    kept, _ = add()
    poller.poll(0, socket_map)
    poller.removed(gone.sock.fileno())
    del socket_map[gone.sock.fileno()]
    other_end.send(b"late")
    poller.poll(0, socket_map)
    assert events == []
    poller.look_at_everything()
    poller.poll(0, socket_map)
    assert kept.looked == 2


@contextlib.contextmanager
def serving(tmp_path, app, *options):
    """A waitress circus-worker on a listening socket of its own, once it
    serves: yields the port; stopped (and the socket closed) after."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([PYTHON, "-m", "circus.worker", "--fd", str(listener.fileno()),
                                 "--backend", "waitress", *options, app],
                                pass_fds=[listener.fileno()], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        wait_for(lambda: b"serving" in log_path.read_bytes(), timeout=20,
                 message="the worker to serve")
        yield listener.getsockname()[1]
    finally:
        proc.terminate()
        proc.wait(30)
        listener.close()


def test_many_keepalive_connections_through_the_threads(tmp_path):
    failures, done = [], []

    def client(number):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for i in range(30):
                conn.request("GET", "/%d/%d" % (number, i))
                response = conn.getresponse()
                body = response.read().decode()
                if response.status != 200 or not body.endswith("path=/%d/%d\n" % (number, i)):
                    failures.append((number, i, response.status, body))
            done.append(number)
        except Exception as error:
            failures.append((number, repr(error)))
        finally:
            conn.close()
    with serving(tmp_path, "tests.apps.hello:application", "--threads", "4") as port:
        clients = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)
        assert not failures and len(done) == 20, failures[:5]


def test_a_long_response_streams_while_the_application_runs(tmp_path):
    # 40 MiB: past waitress's high watermark (16 MiB), the application's
    # thread waits for the loop to send; the loop must be looking (and not
    # only at its idle sweep, every 30 s with this keep-alive)
    with serving(tmp_path, "tests.apps.stream:application", "--keep-alive", "60") as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.connect()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        for _ in range(2):  # and the connection serves the next one
            conn.request("GET", "/?40")
            # a client that reads nothing for a while: the output piles up
            # in waitress's buffers, past the high watermark (this sleep is
            # the stimulus, not a wait for something)
            time.sleep(1.0)
            response = conn.getresponse()
            received = 0
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                received += len(chunk)
            assert response.status == 200 and received == 40 << 20
        conn.close()
