"""The stats stream's two families (stat.* for every client, batch.stat.* for
circus's own), what circusd-stats builds for whom (it reads subscriptions
on its XPUB socket) and how the client reads both.

In-process: the test runs a StatsStreamer's ticks itself, with real `sleep`
processes and real ZeroMQ sockets on loopback.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import zmq

import circus.stats.client as client_module
from circus.stats.client import AsyncStatsClient, StatsClient, parse_message, parse_messages
from circus.stats.collector import ProcessCollector
from circus.stats.publisher import StatsPublisher
from circus.stats.sockdiag import socket_inode
from circus.stats.streamer import StatsStreamer
from circus.stats.wire import BATCH, PROCESS_FIELDS, batch_body
from support import free_port, wait_for


@pytest.fixture
def sleepers():
    procs = [subprocess.Popen(["sleep", "600"]) for _ in range(3)]
    yield [p.pid for p in procs]
    for proc in procs:
        proc.kill()
        proc.wait()


class Stream:
    """A streamer whose ticks the test runs, and SUB sockets reading it."""

    def __init__(self, watchers):
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.context = zmq.Context()
        self.streamer = StatsStreamer(stats_endpoint=self.endpoint)
        self.streamer.publisher = StatsPublisher(self.endpoint, self.context)
        self.streamer.watchers = {name: dict.fromkeys(pids) for name, pids in watchers.items()}
        self.subs = []

    def subscribe(self, *prefixes):
        sub = self.context.socket(zmq.SUB)
        sub.linger = 0
        for prefix in prefixes:
            sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        sub.connect(self.endpoint)
        self.subs.append(sub)
        publisher = self.streamer.publisher

        def arrived():
            publisher.read_subscriptions()
            return all(prefix in publisher.prefixes for prefix in prefixes)
        wait_for(arrived, message="the subscriptions %s at circusd-stats" % (prefixes,))
        return sub

    def read_until(self, sub, last_topic, timeout=10.0):
        """Every message up to and including last_topic."""
        messages = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sub.poll(100):
                frames = sub.recv_multipart()
                messages.append(frames)
                if frames[0] == last_topic.encode():
                    return messages
        raise AssertionError("no %s; got %s" % (last_topic, [m[0] for m in messages]))

    def close(self):
        for sub in self.subs:
            sub.close(0)
        self.streamer.publisher.close()
        self.streamer.processes.close()
        self.streamer.socket_stats.close()
        self.context.term()


@pytest.fixture
def stream():
    streams = []

    def make(watchers):
        streams.append(Stream(watchers))
        return streams[-1]
    yield make
    for item in streams:
        item.close()


def test_a_tick_nobody_listens_to_measures_nothing(stream, sleepers):
    s = stream({"sleepers": sleepers})
    s.streamer.tick()
    assert s.streamer.ticks == 1
    assert s.streamer.publisher.sent == 0 and len(s.streamer.processes) == 0


def test_only_what_is_subscribed_is_measured_and_sent(stream, sleepers):
    s = stream({"sleepers": sleepers, "others": [os.getpid()]})
    wanted = sleepers[0]
    # a client of one process only: a prefix of a single stat.<watcher>.<pid>
    sub = s.subscribe("stat.sleepers.%d" % wanted)
    s.streamer.tick()
    [frames] = s.read_until(sub, "stat.sleepers.%d" % wanted)
    assert json.loads(frames[1])["pid"] == wanted
    # nothing else was measured nor encoded: not the other sleepers, not the
    # aggregates, not the batches
    assert s.streamer.publisher.sent == 1
    assert wanted in s.streamer.processes
    assert not any(pid in s.streamer.processes for pid in sleepers[1:])


def test_a_batch_carries_exactly_what_the_single_messages_carry(stream, sleepers):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    s = stream({"sleepers": sleepers})
    s.streamer.sockets = [{"name": "web", "fd": listener.fileno(), "host": "127.0.0.1",
                           "port": listener.getsockname()[1], "family": "AF_INET",
                           "type": "SOCK_STREAM",
                           "inode": socket_inode(os.getpid(), listener.fileno())}]
    # everything, both families: what an old client and a new one each read
    sub = s.subscribe("stat.", BATCH)
    try:
        s.streamer.tick()  # the first CPU sample of each process
        s.read_until(sub, BATCH + "sockets")
        s.streamer.tick()
        messages = s.read_until(sub, BATCH + "sockets")
    finally:
        listener.close()
    singles, batched = {}, {}
    for frames in messages:
        if frames[0].startswith(BATCH.encode()):
            for watcher, subtopic, stat in parse_messages(frames):
                batched[watcher, subtopic] = stat
        else:
            watcher, subtopic, stat = parse_message(frames)
            singles[watcher, subtopic] = stat
    expected = {("sleepers", pid) for pid in sleepers} | {("sleepers", None)}
    expected |= {("circus", os.getpid()), ("circus", None)}
    expected |= {("sockets", s.streamer.sockets[0]["fd"]), ("sockets", None)}
    assert set(singles) == expected
    assert batched == singles
    stat = singles["sleepers", sleepers[0]]
    for key in PROCESS_FIELDS + ("mem_info1", "mem_info2", "ctime", "watcher", "time",
                                 "subtopic", "name"):
        assert key in stat, key
    assert stat["cmdline"] == "sleep 600" and stat["subtopic"] == sleepers[0]
    assert singles["circus", os.getpid()]["name"] == "circusd-stats"


def test_the_client_expands_batches_in_order():
    common = {"watcher": "web", "time": 12.5, "name": None}
    rows = [[7, 1.5, 0.1, 4096, 8192, 61.25, 0, "me", "sleep 1", 100.0, 3.0],
            [8, "N/A", "N/A", "N/A", "N/A", "N/A", "N/A", "me", "", None, "N/A"]]
    total = {"pid": [7, 8], "count": 2, "watcher": "web", "time": 12.5}
    frames = [b"batch.stat.web", json.dumps(batch_body(total, common, PROCESS_FIELDS,
                                                        rows)).encode()]
    messages = parse_messages(frames)
    assert [(w, sub) for w, sub, _ in messages] == [("web", 7), ("web", 8), ("web", None)]
    first = messages[0][2]
    assert (first["pid"], first["subtopic"], first["watcher"], first["name"]) == (7, 7, "web",
                                                                                  None)
    assert (first["mem_info1"], first["mem_info2"], first["ctime"]) == ("4.0K", "8.0K",
                                                                        "1:01.25")
    assert messages[1][2]["ctime"] == "N/A" and messages[1][2]["mem_info1"] == "N/A"
    assert messages[2][2] == total
    # read as a single message (an older caller of parse_message): the aggregate
    assert parse_message(frames) == ("web", None, total)


def test_the_client_drains_a_burst_and_expands_only_the_rows_wanted():
    """What the web console does with a tick: the first message with recv(),
    the rest of the burst with recv_nowait(); rows only of the watchers whose
    page is open, every aggregate."""
    context = zmq.Context()
    pub, endpoint = _old_publisher(context)
    client = StatsClient(endpoint, context=context, timeout=0.05)
    client.rows_wanted = lambda name: name != "db"

    def batch(watcher, pids):
        total = {"pid": pids, "watcher": watcher}
        rows = [[pid, 1.0, 0.1, 4096, 8192, 1.0, 0, "me", "sleep", 100.0, 3.0] for pid in pids]
        body = batch_body(total, {"watcher": watcher, "time": 1.0, "name": None},
                          PROCESS_FIELDS, rows)
        return [("batch.stat.%s" % watcher).encode(), json.dumps(body).encode()]
    try:
        def connected():
            pub.send_multipart(batch("warmup", []))
            return client.recv(0.05)
        wait_for(connected, message="the client's subscription")
        while client.recv(0.2) is not None:
            pass
        for frames in (batch("web", [1, 2]), batch("db", [3, 4]),
                       [b"batch.stat.sockets", json.dumps(batch_body(
                           {"fds": [5]}, {"watcher": "sockets", "time": 1.0}, (),
                           [{"fd": 5, "connections": 0}], key="fd")).encode()]):
            pub.send_multipart(frames)
        got = [client.recv(5.0)]
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:
            message = client.recv_nowait()
            if message is None:
                client.socket.poll(50)  # the rest of the burst is on its way
            else:
                got.append(message)
        assert [(w, sub) for w, sub, _ in got] == [
            ("web", 1), ("web", 2), ("web", None), ("db", None), ("sockets", 5),
            ("sockets", None)], got
        assert client.recv_nowait() is None
    finally:
        client.close()
        pub.close(0)
        context.term()


def _old_publisher(context):
    """A PUB like the original circusd-stats': stat.* only, no batches."""
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    pub.bind(endpoint)
    return pub, endpoint


def test_the_client_reads_an_original_circusd_stats(monkeypatch):
    monkeypatch.setattr(client_module, "FALLBACK_AFTER", 0.3)
    context = zmq.Context()
    pub, endpoint = _old_publisher(context)
    client = StatsClient(endpoint, context=context, timeout=0.05)
    try:
        # no batch ever comes: once connected, it reads stat.* instead
        def received():
            pub.send_multipart([b"stat.web.12", b'{"cpu": 1.0, "pid": 12}'])
            return client.recv(0.05)
        assert wait_for(received, message="stat.web.12") == ("web", 12, {"cpu": 1.0,
                                                                         "pid": 12})
        # a batch after all (a circusd-stats of ours, slow to speak): back to batches
        body = batch_body({"pid": []}, {"watcher": "web", "time": 1.0}, PROCESS_FIELDS, [])

        def batch():
            pub.send_multipart([b"batch.stat.web", json.dumps(body).encode()])
            message = client.recv(0.05)
            return message is not None and message[1] is None and message[2] == {"pid": []}
        wait_for(batch, message="the batch")
        assert not client._reading_singles
    finally:
        client.close()
        pub.close(0)
        context.term()


def test_unwanted_rows_of_the_original_stream_are_skipped_on_their_topic(monkeypatch):
    monkeypatch.setattr(client_module, "FALLBACK_AFTER", 0.3)
    context = zmq.Context()
    pub, endpoint = _old_publisher(context)
    client = StatsClient(endpoint, context=context, timeout=0.05)
    client.rows_wanted = lambda name: name != "db.v2"
    try:
        def reading_singles():
            pub.send_multipart([b"stat.web", b'{"pid": []}'])
            return client.recv(0.05)
        wait_for(reading_singles, message="the client reading stat.*")
        for frames in ([b"stat.db.v2.3", b'{"watcher": "db.v2", "cpu": 1}'],
                       [b"stat.db.v2", b'{"watcher": "db.v2", "pid": [3]}'],
                       [b"stat.web.1", b'{"cpu": 2}']):
            pub.send_multipart(frames)
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            message = client.recv(0.1)
            if message is not None and message[:2] != ("web", None):
                got.append(message[:2])
        # db.v2's row is skipped, its aggregate and web's row are not
        assert got == [("db.v2", None), ("web", 1)]
    finally:
        client.close()
        pub.close(0)
        context.term()


def test_the_async_client_reads_an_original_circusd_stats(monkeypatch):
    monkeypatch.setattr(client_module, "FALLBACK_AFTER", 0.3)
    import zmq.asyncio

    async def main():
        context = zmq.asyncio.Context()
        pub, endpoint = _old_publisher(context)
        client = AsyncStatsClient(endpoint, context=context)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await pub.send_multipart([b"stat.web", b'{"pid": [12]}'])
                message = await client.recv(timeout=0.05)
                if message is not None:
                    return message
            raise AssertionError("nothing read from the original stream")
        finally:
            client.close()
            pub.close(0)
            context.term()
    assert asyncio.run(main()) == ("web", None, {"pid": [12]})


def test_collector_keeps_a_proc_descriptor_per_process_within_its_budget(sleepers):
    collector = ProcessCollector(max_open=2)
    try:
        rows = [collector.sample_row(pid) for pid in sleepers]
        assert [row[0] for row in rows] == sleepers
        # two kept open, the third read by open, read, close each time
        assert collector.open_files == 2
        assert collector.sample(sleepers[2])["cmdline"] == "sleep 600"
        collector.forget(sleepers[0])
        assert collector.open_files == 1
    finally:
        collector.close()
    assert collector.open_files == 0 and len(collector) == 0


def test_collector_rows_follow_a_busy_process_and_agree_with_the_plain_reader(sleepers):
    """The fast path (a descriptor kept open) parses /proc/PID/stat on its
    own: check its rows of an idle and a busy process against the plain
    reader."""
    from circus.stats.collector import _HAS_PROC_STAT, _read_proc_stat
    if not _HAS_PROC_STAT:
        pytest.skip("no /proc/PID/stat here")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = sleepers[0]
    collector = ProcessCollector()
    index = {name: PROCESS_FIELDS.index(name) for name in PROCESS_FIELDS}

    def rows():
        return {row[0]: row for row in collector.sample_rows([busy.pid, idle])}
    try:
        first = rows()  # new processes: the slow path
        assert set(first) == {busy.pid, idle}
        second = wait_for(lambda: (lambda r: r if r[busy.pid][index["cpu"]] > 0 else None)(
            rows()), message="the busy process's CPU")
        assert second[busy.pid][index["cpu_time"]] > first[busy.pid][index["cpu_time"]]
        for later in (second, rows()):
            row = later[idle]
            cpu_time, nice, rss, vms = _read_proc_stat(idle)
            assert row[index["cpu"]] == 0.0
            assert (row[index["cpu_time"]], row[index["nice"]], row[index["rss"]],
                    row[index["vms"]]) == (round(cpu_time, 2), nice, rss, vms)
            assert row[index["mem"]] == round(rss * 100.0 / collector.total_memory, 3)
            assert row[index["cmdline"]] == "sleep 600"
    finally:
        busy.kill()
        busy.wait()
        collector.close()


def test_collector_forgets_a_reaped_process_and_never_reads_its_successor():
    collector = ProcessCollector()
    proc = subprocess.Popen(["sleep", "600"])
    try:
        assert collector.sample_row(proc.pid) is not None and collector.open_files == 1
    finally:
        proc.kill()
        proc.wait()
    # the open /proc file belongs to the process, not to its pid: once reaped
    # it answers ESRCH, even if the pid were reused
    assert collector.sample_row(proc.pid) is None
    assert proc.pid not in collector and collector.open_files == 0
