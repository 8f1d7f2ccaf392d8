"""stdout/stderr streams: FileStream (rotation), StdoutStream, QueueStream and
a class named by dotted path, configured with stdout_stream.* and
stderr_stream.*; a flooding child must not stall circusd."""
import asyncio
import json
import os
import signal
import sys
import textwrap
import time

import psutil
import pytest

from circus.arbiter import Arbiter
from circus.stream import FileStream, QueueStream, StdoutStream, get_stream
from support import children_of, wait_for
from support.aio import until

PY = sys.executable


def chunk(data, pid=42, name="stdout"):
    return {"pid": pid, "wid": 1, "name": name, "data": data}


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return "%s -u %s" % (PY, path)


# --- the classes on their own ---------------------------------------------------
def test_filestream_appends_and_creates(tmp_path):
    path = tmp_path / "out.log"
    path.write_bytes(b"before\n")
    stream = get_stream({"class": "FileStream", "filename": str(path), "refresh_time": "0.3"})
    assert isinstance(stream, FileStream)
    stream(chunk(b"one\n"))
    stream(chunk(b"two"))
    stream(chunk(b"\n"))
    assert path.read_bytes() == b"before\none\ntwo\n"  # unbuffered: there at once
    stream.close()


def test_filestream_rotation(tmp_path):
    path = tmp_path / "out.log"
    stream = FileStream(str(path), max_bytes="100", backup_count="2")
    lines = [b"line %04d %s\n" % (n, b"x" * 10) for n in range(60)]  # 21 bytes each
    # chunks of several lines, as one pipe read brings them
    for start in range(0, len(lines), 7):
        stream(chunk(b"".join(lines[start:start + 7])))
    stream.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["out.log", "out.log.1", "out.log.2"]
    contents = [(tmp_path / name).read_bytes() for name in ("out.log.2", "out.log.1", "out.log")]
    for content in contents:
        assert 0 < len(content) <= 100
        assert content.endswith(b"\n")  # lines are not cut
    # the newest data, in order, nothing lost inside the kept files
    kept = b"".join(contents)
    assert b"".join(lines).endswith(kept)
    assert contents[0] == b"".join(lines[-len(kept.splitlines()):][:4])

    # a line longer than max_bytes is cut, files still never exceed it
    stream = FileStream(str(path), max_bytes=100, backup_count=2)
    stream(chunk(b"y" * 250 + b"\n"))
    stream.close()
    assert [len((tmp_path / n).read_bytes()) for n in ("out.log.2", "out.log.1", "out.log")] \
        == [100, 100, 51]


def test_filestream_rotation_without_backups_starts_over(tmp_path):
    path = tmp_path / "out.log"
    stream = FileStream(str(path), max_bytes=10)
    stream(chunk(b"12345678\n"))
    stream(chunk(b"abc\n"))
    stream.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.log"]
    assert path.read_bytes() == b"abc\n"


def test_filestream_time_format_prefixes_every_line_once(tmp_path):
    path = tmp_path / "out.log"
    stream = FileStream(str(path), time_format="%Y")
    stream(chunk(b"first\nsecond ha", pid=7))
    stream(chunk(b"lf\nthird\n", pid=7))
    stream.close()
    year = time.strftime("%Y")
    assert path.read_text().splitlines() == ["%s [7] | first" % year, "%s [7] | second half" % year,
                                             "%s [7] | third" % year]


def test_queue_stream_with_maxsize_never_blocks(tmp_path):
    stream = get_stream({"class": "QueueStream", "maxsize": "2"})
    assert isinstance(stream, QueueStream)
    for n in range(5):
        stream(chunk(b"%d" % n))  # would hang the loop if it blocked
    assert [stream.get_nowait()["data"] for _ in range(2)] == [b"3", b"4"]


def test_stdout_stream_prefix_option(capfdbinary):
    stream = get_stream({"class": "StdoutStream", "prefix": "True"})
    assert isinstance(stream, StdoutStream)
    stream(chunk(b"hello\nwor", pid=5))
    stream(chunk(b"oops\n", pid=6, name="stderr"))
    stream(chunk(b"ld\n", pid=5))
    assert capfdbinary.readouterr().out == \
        b"[stdout 5] hello\n[stdout 5] wor[stderr 6] oops\nld\n"
    plain = get_stream({"class": "StdoutStream"})
    plain(chunk(b"as is\n"))
    assert capfdbinary.readouterr().out == b"as is\n"


# --- configured in a file, with real children ---------------------------------
TALKER = """
import sys, time
for n in range(int(sys.argv[1])):
    # one write per line: -u makes print() write the end separately
    sys.stdout.write("out %d\\n" % n)
    sys.stderr.write("err %d\\n" % n)
time.sleep(120)
"""


def test_filestream_from_config(circusd, tmp_path):
    cmd = script(tmp_path, "talker.py", TALKER)
    daemon = circusd("""
        [watcher:talker]
        cmd = %s 400
        stdout_stream.class = FileStream
        stdout_stream.filename = out.log
        stdout_stream.max_bytes = 1000
        stdout_stream.backup_count = 3
        stderr_stream.filename = err.log
        stderr_stream.time_format = %%H
        """ % cmd)
    out, err = tmp_path / "out.log", tmp_path / "err.log"  # relative to circusd's cwd
    wait_for(lambda: err.exists() and err.read_text().endswith("err 399\n"),
             message="stderr in err.log")
    wait_for(lambda: out.exists() and out.read_text().endswith("out 399\n"),
             message="stdout in out.log")
    names = sorted(p.name for p in tmp_path.glob("out.log*"))
    assert names == ["out.log", "out.log.1", "out.log.2", "out.log.3"]
    kept = "".join((tmp_path / n).read_text() for n in ("out.log.3", "out.log.2", "out.log.1",
                                                        "out.log"))
    everything = "".join("out %d\n" % n for n in range(400))
    assert everything.endswith(kept) and len(kept) > 3000
    assert all((tmp_path / n).stat().st_size <= 1000 for n in names)
    # stderr_stream without a class is a FileStream; time_format stamps lines
    (pid,) = [c.pid for c in daemon.children()]
    hour_prefix = "[%d] | err " % pid
    lines = err.read_text().splitlines()
    assert len(lines) == 400 and all(hour_prefix in line for line in lines)
    # children write into pipes only when a stream reads them
    assert os.readlink("/proc/%d/fd/1" % pid).startswith("pipe:")


def test_no_stream_means_a_pipe_circusd_reads(circusd, tmp_path):
    # without a stream, output is no longer thrown away: circusd keeps the
    # last lines of it (circus.watcher.output)
    daemon = circusd("[watcher:quiet]\ncmd = sleep 120\n")
    (child,) = wait_for(daemon.children, message="the child")
    ours = {os.readlink("/proc/%d/fd/%s" % (daemon.proc.pid, fd))
            for fd in os.listdir("/proc/%d/fd" % daemon.proc.pid)}
    for fd in (1, 2):
        target = os.readlink("/proc/%d/fd/%d" % (child.pid, fd))
        assert target.startswith("pipe:") and target in ours


def test_debug_children_write_where_circusd_writes(circusd, tmp_path):
    # debug = true: no pipe in between, so a child on a terminal still sees
    # a terminal (its buffering and colours unchanged)
    daemon = circusd("[circus]\ndebug = true\n[watcher:quiet]\ncmd = sleep 120\n")
    (child,) = wait_for(daemon.children, message="the child")
    for fd in (1, 2):
        assert os.readlink("/proc/%d/fd/%d" % (child.pid, fd)) == \
            os.readlink("/proc/%d/fd/%d" % (daemon.proc.pid, fd))


def test_stdout_stream_from_config_writes_to_circusds_stdout(circusd, tmp_path):
    cmd = script(tmp_path, "talker.py", TALKER)
    daemon = circusd("""
        [watcher:talker]
        cmd = %s 3
        stdout_stream.class = StdoutStream
        stderr_stream.class = StdoutStream
        stderr_stream.prefix = true
        """ % cmd)
    wait_for(lambda: b"err 2" in daemon.read_log(), message="stderr on circusd's stdout")
    wait_for(lambda: b"out 2" in daemon.read_log(), message="stdout on circusd's stdout")
    (pid,) = [c.pid for c in daemon.children()]
    lines = daemon.read_log().splitlines()
    # stdout as is, stderr with its prefix; the two interleave line by line
    assert [line for line in lines if line.startswith(b"out ")] == [b"out 0", b"out 1", b"out 2"]
    assert [line for line in lines if line.startswith(b"[stderr ")] == \
        [b"[stderr %d] err %d" % (pid, n) for n in range(3)]


def test_queue_stream_from_config_in_process(tmp_path):
    cmd = script(tmp_path, "talker.py", TALKER)
    path = tmp_path / "c.ini"
    path.write_text(textwrap.dedent("""
        [circus]
        endpoint =
        pubsub_endpoint =

        [watcher:talker]
        cmd = %s 2
        numprocesses = 2
        stdout_stream.class = QueueStream
        stderr_stream.class = circus.stream.QueueStream
        """ % cmd))

    async def main():
        arbiter = Arbiter.load_from_config(str(path))
        watcher = arbiter.get_watcher("talker")
        task = asyncio.ensure_future(arbiter.run())
        got = {"stdout": b"", "stderr": b""}
        items = []

        def both_lines_twice():
            for stream in (watcher.stdout_stream, watcher.stderr_stream):
                while not stream.empty():
                    item = stream.get_nowait()
                    items.append(item)
                    got[item["name"]] += item["data"]
            return all(got[k].count(b"1\n") >= 2 for k in got)
        try:
            await until(both_lines_twice, timeout=10, interval=0.01,
                        message=lambda: "two lines on each stream; got %r" % got)
            return set(watcher.pids), items
        finally:
            arbiter.request_quit()
            await asyncio.wait_for(task, 30)

    pids, items = asyncio.run(main())
    assert {item["pid"] for item in items} == pids
    assert {item["wid"] for item in items} == {1, 2}
    for pid in pids:
        for name in ("stdout", "stderr"):
            data = b"".join(i["data"] for i in items if i["pid"] == pid and i["name"] == name)
            assert data == (b"out 0\nout 1\n" if name == "stdout" else b"err 0\nerr 1\n")


def test_a_stream_class_by_dotted_path(circusd, tmp_path):
    cmd = script(tmp_path, "talker.py", TALKER)
    out, err = tmp_path / "mine-out.jsonl", tmp_path / "mine-err.jsonl"
    daemon = circusd("""
        [watcher:talker]
        cmd = %s 2
        stdout_stream.class = tests.apps.streams.MyStream
        stdout_stream.path = %s
        stdout_stream.tag = from-config
        stderr_stream.class = tests.apps.streams.MyStream
        stderr_stream.path = %s
        """ % (cmd, out, err))
    wait_for(lambda: out.exists() and "out 1" in out.read_text(), message="MyStream stdout")
    wait_for(lambda: err.exists() and "err 1" in err.read_text(), message="MyStream stderr")
    (pid,) = [c.pid for c in daemon.children()]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["tag"], r["pid"], r["wid"], r["name"]) for r in records} == \
        {("from-config", pid, 1, "stdout")}
    assert "".join(r["data"] for r in records) == "out 0\nout 1\n"
    records = [json.loads(line) for line in err.read_text().splitlines()]
    assert {(r["tag"], r["name"]) for r in records} == {("none", "stderr")}


# --- a flood ----------------------------------------------------------------------
FLOODER = """
import os, sys, time
go, total_file, seconds, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
while not os.path.exists(go):
    time.sleep(0.01)
block = b"x" * 65535 + b"\\n"
out = sys.stdout.buffer
written, start = 0, time.monotonic()
while True:
    elapsed = time.monotonic() - start
    if elapsed >= seconds:
        break
    if written < rate * elapsed:
        out.write(block)
        out.flush()
        written += len(block)
    else:
        time.sleep(0.002)
with open(total_file + ".tmp", "w") as f:
    f.write("%d %f" % (written, time.monotonic() - start))
os.rename(total_file + ".tmp", total_file)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_flooding_child_does_not_stall_circusd(circusd, tmp_path):
    go, total_file = tmp_path / "go", tmp_path / "total"
    cmd = script(tmp_path, "flood.py", FLOODER)
    daemon = circusd("""
        [watcher:flood]
        cmd = %s %s %s 4 16000000
        stdout_stream.class = FileStream
        stdout_stream.filename = flood.log

        [watcher:victim]
        cmd = sleep 120
        """ % (cmd, go, total_file))
    flood_log = tmp_path / "flood.log"
    circusd_ps = psutil.Process(daemon.proc.pid)

    def victims():
        found = []
        for child in children_of(daemon.proc.pid):
            try:
                if child.cmdline()[:1] == ["sleep"]:
                    found.append(child.pid)
            except psutil.Error:  # died since it was listed
                pass
        return found

    wait_for(lambda: len(victims()) == 1, message="the victim")
    wait_for(lambda: len(daemon.children()) == 2, message="the flooder")
    baseline = circusd_ps.memory_info().rss
    go.touch()
    wait_for(lambda: flood_log.exists() and flood_log.stat().st_size > 1 << 20,
             message="the flood to start")

    respawns, peak = [], baseline
    (victim,) = victims()
    seen = time.monotonic()
    while not total_file.exists():
        # a process killed younger than a second counts as a failed start
        # (and would be respawned with a back-off): kill grown-ups only
        wait_for(lambda: time.monotonic() - seen > 1.1, message="the victim to be a second old")
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        (victim,) = wait_for(lambda: (lambda now: len(now) == 1 and now[0] != victim and now)(
            victims()), timeout=1.0, interval=0.005,
            message="the victim's replacement during the flood")
        seen = time.monotonic()
        respawns.append(seen - killed)
        peak = max(peak, circusd_ps.memory_info().rss)
    assert len(respawns) >= 3 and max(respawns) < 1.0, respawns
    assert peak - baseline < 100 << 20, "circusd grew by %d MB" % ((peak - baseline) >> 20)

    written, seconds = total_file.read_text().split()
    written, seconds = int(written), float(seconds)
    assert written / seconds >= 1 << 20  # circusd drained >= 1 MB/s
    # every byte reaches the file, nothing is lost nor held in memory
    wait_for(lambda: flood_log.stat().st_size == written, timeout=10,
             message="all %d bytes in the file" % written)
    assert daemon.proc.poll() is None
