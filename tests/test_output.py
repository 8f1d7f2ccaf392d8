"""What circusd keeps of its children's output (circus.watcher.output): the
rings of live processes, the record of failed exits, and where a failure's
last stderr lines show: circusd's log, the reap and max_retry events,
status and stats."""
import asyncio
import json
import logging
import os
import resource
import signal
import sys
import textwrap

import pytest

from circus.watcher import Watcher
from circus.watcher.output import EXIT_BYTES, EXIT_LINES, RING_BYTES, Ring
from support import BIN, ROOT, LogRecords, aio, children_of, wait_for
from support.events import EventLog

PY = sys.executable
CIRCUSCTL = os.path.join(BIN, "circusctl")


# --- the ring on its own ----------------------------------------------------------
def test_ring_keeps_the_last_bytes_cut_at_lines():
    ring = Ring(size=32)
    ring.write(b"one\ntwo\nthr")
    assert ring.tail() == (["one", "two"], 8)  # an unfinished line waits
    assert ring.tail(unfinished=True) == (["one", "two", "thr"], 11)
    ring.write(b"ee\n")
    assert ring.tail(2) == (["two", "three"], 14)
    # past its size the ring loses the oldest bytes, and the line they cut
    ring.write(b"four\nfive\nsix\nseven\n")  # 34 bytes: "one" loses "on"
    assert ring.end == 34 and len(ring.data) == 32
    assert ring.tail() == (["two", "three", "four", "five", "six", "seven"], 34)
    ring.write(b"x\n")  # the rest of "one" goes: "two" starts the ring, whole
    assert ring.tail()[0] == ["two", "three", "four", "five", "six", "seven", "x"]
    ring.write(b"y")  # "two" loses its "t": it is left out
    assert ring.tail(unfinished=True)[0] == ["three", "four", "five", "six", "seven", "x", "y"]


def test_ring_chunk_larger_than_the_ring():
    ring = Ring(size=16)
    ring.write(b"a" * 40 + b"\nlast line\n")
    assert ring.tail() == (["last line"], 51)
    ring = Ring(size=16)
    ring.write(b"b" * 10 + b"\n" + b"c" * 5)
    ring.write(b"0123456789abcdef")  # exactly the size, after an unfinished line
    assert ring.torn and ring.tail(unfinished=True)[0] == ["0123456789abcdef"]
    ring = Ring(size=16)
    ring.write(b"done\n")
    ring.write(b"0123456789abcde\n")  # exactly the size, after a finished line
    assert not ring.torn and ring.tail()[0] == ["0123456789abcde"]


def test_ring_tail_bounded_in_bytes_and_lines():
    ring = Ring(size=4096)
    ring.write(b"".join(b"line %03d\n" % n for n in range(300)))
    lines, _ = ring.tail(max_bytes=45)  # 9 bytes a line: 5 whole lines
    assert lines == ["line %03d" % n for n in range(295, 300)]
    assert ring.tail(3)[0] == ["line 297", "line 298", "line 299"]
    assert ring.tail(0)[0] == []
    # one line longer than max_bytes: its end is kept
    ring = Ring()
    ring.write(b"x" * 100 + b"END")
    assert ring.tail(max_bytes=10, unfinished=True)[0] == ["xxxxxxxEND"]


def test_ring_follow_with_cursor():
    ring = Ring(size=32)
    lines, cursor = ring.tail()
    assert (lines, cursor) == ([], 0)
    ring.write(b"a1\na2\na")
    assert ring.since(cursor) == (["a1", "a2"], 6, 0)
    assert ring.since(6) == ([], 6, 0)
    ring.write(b"3\n")
    assert ring.since(6) == (["a3"], 9, 0)
    # the ring turns past a cursor: what was lost is counted, whole lines follow
    ring.write(b"".join(b"b%d\n" % n for n in range(20)))
    lines, cursor, skipped = ring.since(9)
    assert lines[-1] == "b19" and cursor == ring.end
    assert skipped == ring.end - 9 - sum(len(line) + 1 for line in lines)
    assert ["b%d" % n for n in range(20)][-len(lines):] == lines
    # a cursor from elsewhere (past the end, negative) is clamped
    assert ring.since(10 ** 9) == ([], ring.end, 0)


def test_ring_decodes_and_strips_carriage_returns():
    ring = Ring()
    ring.write("café\r\n".encode() + b"\xff\n")
    assert ring.tail()[0] == ["café", "\ufffd"]


def test_ring_bounded_reads_keep_the_newest_lines_and_count_the_rest():
    ring = Ring(size=4096)
    ring.write(b"".join(b"line %03d\n" % n for n in range(100)))  # 9 bytes a line
    begin, end, lost = ring.span_tail()
    assert (begin, end, lost) == (0, 900, 0)
    first = ring.last_lines(begin, end, 3)
    assert ring.read(first, end) == (["line 097", "line 098", "line 099"], 0)
    assert ring.last_lines(begin, end, 0) == end
    assert ring.last_lines(begin, end, 1000) == begin
    # within 40 bytes: 4 whole lines, the other 860 bytes counted
    assert ring.read(begin, end, 40) == (["line %03d" % n for n in range(96, 100)], 864)
    assert ring.read(begin, end, 0) == ([], 900)
    # a line longer than the bound: its beginning, the rest counted
    ring.write(b"head" + b"x" * 200 + b"\n")
    begin, end, _ = ring.span_since(900)
    assert ring.read(begin, end, 10) == (["headxxxxxx"], 195)
    # since a cursor the ring has turned past: what it lost, then the span
    ring = Ring(size=32)
    ring.write(b"".join(b"n%02d\n" % n for n in range(20)))  # 80 bytes, 4 a line
    begin, end, lost = ring.span_since(0)
    assert lost == 48 and ring.read(begin, end)[0] == ["n%02d" % n for n in range(12, 20)]


def test_shares_meet_small_needs_and_split_the_rest():
    from circus.watcher.output import _shares
    assert _shares([10, 20], None) == [None, None]
    assert _shares([10, 20], 100) == [10, 20]
    assert _shares([10, 1000, 500], 300) == [10, 145, 145]
    assert _shares([0, 0, 5000], 64) == [0, 0, 64]
    assert sum(_shares([7] * 1000, 100)) <= 100


# --- in a watcher -----------------------------------------------------------------
TALKER = textwrap.dedent("""
    import sys, time
    for n in range(int(sys.argv[1])):
        print("out %d" % n, flush=True)
        print("err %d" % n, file=sys.stderr, flush=True)
    time.sleep(300)
""")


def test_quiet_processes_have_no_rings_and_talkers_do(tmp_path):
    talker = tmp_path / "talker.py"
    talker.write_text(TALKER)

    async def main():
        quiet = Watcher("quiet", "sleep 300", numprocesses=2)
        loud = Watcher("loud", "%s %s 3" % (PY, talker), numprocesses=2)
        async with aio.running([quiet, loud]):
            await aio.until(lambda: all(p.output and p.output.stderr and p.output.stdout and
                                        p.output.stderr.end == p.output.stdout.end == 18
                                        for p in loud.processes.values()),
                            message="the talkers' output")
            assert [p.output for p in quiet.processes.values()] == [None, None]
            tail = loud.output_tail(lines=2)
            pids = sorted(loud.processes)
            assert sorted((o["pid"], o["stream"], o["lines"][-1]) for o in tail["output"]) == \
                sorted((pid, name, "%s 2" % name[3:]) for pid in pids
                       for name in ("stdout", "stderr"))
            assert all(len(o["lines"]) == 2 for o in tail["output"])
            assert tail["cursor"] == {str(pid): {"stdout": 18, "stderr": 18} for pid in pids}
            # follow: nothing new, then what a new process writes from its start
            assert loud.output_since(tail["cursor"])["output"] == []
            only = loud.output_since({}, pid=pids[0], streams=("stderr",))
            assert only["output"] == [{"pid": pids[0], "wid": loud.processes[pids[0]].wid,
                                       "stream": "stderr", "lines": ["err 0", "err 1", "err 2"],
                                       "skipped": 0}]
            assert quiet.output_tail()["output"] == []
            assert loud.output_tail(pid=12345678) == {"output": [], "cursor": {}}

    asyncio.run(main())


def test_configured_stream_gets_every_byte_and_the_ring_the_last(tmp_path):
    flood = tmp_path / "flood.py"
    flood.write_text(textwrap.dedent("""
        import sys, time
        for n in range(2000):
            sys.stderr.write("line %04d\\n" % n)
        sys.stderr.flush()
        time.sleep(300)
    """))

    async def main():
        watcher = Watcher("flood", "%s %s" % (PY, flood),
                          stderr_stream={"class": "QueueStream"})
        async with aio.running([watcher]):
            (process,) = await aio.until(lambda: list(watcher.processes.values()))
            total = 2000 * 10
            await aio.until(lambda: process.output and process.output.stderr
                            and process.output.stderr.end == total, message="the flood")
            got = b""
            while not watcher.stderr_stream.empty():
                got += watcher.stderr_stream.get_nowait()["data"]
            assert got == b"".join(b"line %04d\n" % n for n in range(2000))
            assert len(process.output.stderr.data) == RING_BYTES
            assert process.output.stdout is None
            lines = watcher.output_tail(lines=1000)["output"][0]["lines"]
            assert lines[-1] == "line 1999" and len(lines) == RING_BYTES // 10

    asyncio.run(main())


def test_a_chatty_process_without_a_stream_is_read_in_batches(tmp_path, monkeypatch):
    # a line every 2 ms: read as it comes, that is a wake-up and a read per
    # line; only the ring wants it, so lines gather in the pipe a moment
    script = tmp_path / "chatty.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        for n in range(300):
            print("request %d" % n, file=sys.stderr, flush=True)
            time.sleep(0.002)
        time.sleep(300)
    """))
    from circus.watcher import streams
    reads = []
    real_read = os.read

    def counting_read(fd, size):
        reads.append(fd)
        return real_read(fd, size)

    monkeypatch.setattr(streams.os, "read", counting_read)

    async def main():
        watcher = Watcher("chatty", "%s %s" % (PY, script))
        async with aio.running([watcher]):
            (process,) = await aio.until(lambda: list(watcher.processes.values()))
            await aio.until(lambda: watcher.output_tail(1)["output"] and
                            watcher.output_tail(1)["output"][0]["lines"] == ["request 299"],
                            timeout=20, message="the last line")
            fd = process.stderr.fileno()
            return reads.count(fd)

    count = asyncio.run(main())
    assert count < 100, count


def test_a_fast_writer_without_a_stream_is_not_held_back(tmp_path):
    # 20 MB of lines as fast as it can: the pauses that gather a slow
    # writer's lines must not make a fast one wait on a full pipe (a fixed
    # 50 ms pause held it to 64 KiB per pause: 16 s for this)
    script = tmp_path / "fast.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        chunk = b"x" * 99 + b"\\n"
        started = time.monotonic()
        for _ in range(200000):
            os.write(1, chunk)
        print("%.3f" % (time.monotonic() - started), file=sys.stderr, flush=True)
        time.sleep(300)
    """))

    async def main():
        watcher = Watcher("fast", "%s %s" % (PY, script))
        async with aio.running([watcher]):
            (process,) = await aio.until(lambda: list(watcher.processes.values()))

            def done():  # two pipes: either may be read first
                rings = process.output
                return rings and rings.stdout and rings.stdout.end == 200000 * 100 and \
                    rings.stderr and rings.stderr.tail()[0]
            await aio.until(done, timeout=60, message="the writer to finish")
            return float(process.output.stderr.tail()[0][0])

    elapsed = asyncio.run(main())
    assert elapsed < 5, elapsed


def test_the_end_of_a_flood_written_just_before_exit_is_kept(tmp_path):
    # more than a pipe holds, then the last line and exit: the reap must not
    # be told before that line is read (SIGCHLD may come first)
    script = tmp_path / "dying.py"
    script.write_text(textwrap.dedent("""
        import sys
        sys.stderr.write("noise\\n" * 20000)
        sys.stderr.write("fatal: the last words\\n")
        sys.exit(3)
    """))

    async def main():
        watcher = Watcher("dying", "%s %s" % (PY, script), max_retry=0, respawn=False)
        async with aio.running([watcher]) as arbiter:
            _, reap = await arbiter.events.topic("watcher.dying.reap")
            assert reap["exit_code"] == 3
            assert reap["stderr"][-1] == "fatal: the last words"
            assert len(reap["stderr"]) == EXIT_LINES
            assert sum(len(line) + 1 for line in reap["stderr"]) <= EXIT_BYTES
            await aio.until(watcher.is_stopped, message="the give-up")
            assert watcher.last_exits[-1]["stderr"] == reap["stderr"]
            assert watcher.stop_report()["stop_reason"].endswith("gave up after 0 retries")

    asyncio.run(main())


def test_expected_exits_carry_no_stderr_and_are_not_recorded(tmp_path):
    script = tmp_path / "polite.py"
    script.write_text(textwrap.dedent("""
        import signal, sys, time
        def bye(*_):
            sys.stderr.write("stopping on request\\n")
            sys.exit(1)
        signal.signal(signal.SIGTERM, bye)
        sys.stderr.write("started\\n"); sys.stderr.flush()
        time.sleep(300)
    """))

    async def main():
        watcher = Watcher("polite", "%s %s" % (PY, script), graceful_timeout=10)
        async with aio.running([watcher]) as arbiter:
            (process,) = await aio.until(lambda: list(watcher.processes.values()))
            await aio.until(lambda: process.output is not None, message="started")
            await watcher.stop()
            _, reap = await arbiter.events.topic("watcher.polite.reap")
            assert reap["exit_code"] == 1 and "stderr" not in reap
            assert list(watcher.last_exits) == []
            assert watcher.stop_report() == {}

    asyncio.run(main())


def test_a_crash_after_its_start_logs_its_stderr(tmp_path):
    script = tmp_path / "crash.py"
    marker = tmp_path / "crashed"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        time.sleep(1.2)  # past MIN_UPTIME: a crash, not a failed start
        if not os.path.exists(%r):
            open(%r, "w").close()
            sys.exit("RuntimeError: lost the database connection")
        time.sleep(300)
    """ % (str(marker), str(marker))))

    async def main():
        watcher = Watcher("crash", "%s %s" % (PY, script))
        async with aio.running([watcher]) as arbiter:
            _, reap = await arbiter.events.topic("watcher.crash.reap", timeout=20)
            assert reap["stderr"] == ["RuntimeError: lost the database connection"]
            await arbiter.events.wait(lambda t, m: t == "watcher.crash.spawn"
                                      and m["process_pid"] != reap["process_pid"])
            assert watcher.is_active() and watcher.stop_report() == {}
            assert len(watcher.last_exits) == 1
            return reap["process_pid"]

    with LogRecords() as logged:
        pid = asyncio.run(main())
    (record,) = [r for r in logged.records
                 if r.levelno >= logging.INFO and "exited with 1" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert record.getMessage().splitlines() == [
        "watcher crash: process %d exited with 1 after %s; its stderr ended with:"
        % (pid, record.getMessage().split(" after ")[1].split(";")[0]),
        "    crash[%d] | RuntimeError: lost the database connection" % pid]


def test_a_process_killed_for_not_being_ready_says_why(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        print("waiting for the database at db:5432", file=sys.stderr, flush=True)
        time.sleep(300)
    """))

    async def main():
        watcher = Watcher("stuck", "%s %s" % (PY, script), ready="notify", ready_timeout=1.0,
                          max_retry=0, graceful_timeout=0)
        async with aio.running([watcher]) as arbiter:
            _, reap = await arbiter.events.topic("watcher.stuck.reap", timeout=20)
            assert reap["stderr"] == ["waiting for the database at db:5432"]
            assert watcher.last_exits[-1]["stderr"] == reap["stderr"]
            return reap["process_pid"]

    with LogRecords() as logged:
        pid = asyncio.run(main())
    assert any(r.levelno == logging.WARNING and r.getMessage().endswith(
        "(it was not ready in time); its stderr ended with:\n"
        "    stuck[%d] | waiting for the database at db:5432" % pid) for r in logged.records)


# --- through circusd, as users see it ---------------------------------------------
# a shell starts fast: its exit counts as a failed start even on a busy machine
FAILING = """
[watcher:broken]
cmd = sh -c "echo starting; echo 'config error: /etc/app.conf is missing' >&2; exit 1"
max_retry = 2
autostart = false
"""


def ctl(daemon, *args):
    import subprocess
    env = dict(os.environ, PYTHONPATH=ROOT, HOME=str(daemon.tmp_path))
    return subprocess.run([CIRCUSCTL, "--endpoint", daemon.endpoint] + list(args),
                          capture_output=True, text=True, env=env, timeout=20)


def test_a_failing_command_says_why_everywhere(circusd):
    daemon = circusd(FAILING)
    with EventLog(daemon).sync("broken") as events:
        daemon.call("start", name="broken")
        _, reap = events.topic("watcher.broken.reap")
        assert reap["exit_code"] == 1
        assert reap["stderr"] == ["config error: /etc/app.conf is missing"]
        _, gave_up = events.topic("watcher.broken.max_retry")
        assert gave_up["stderr"] == ["config error: /etc/app.conf is missing"]
        assert gave_up["reason"].endswith("gave up after 2 retries")
        events.topic("watcher.broken.stop")
    # circusd's log: the failure line, then the stderr line, prefixed
    log = daemon.read_log().decode()
    pid = reap["process_pid"]
    assert ("watcher broken: process %d exited with 1 after " % pid) in log
    line = log[log.index("watcher broken: process %d exited" % pid):].splitlines()
    assert line[0].endswith("(failure 1); its stderr ended with:")
    assert line[1] == "    broken[%d] | config error: /etc/app.conf is missing" % pid
    # status and stats, raw and as circusctl prints them
    status = daemon.call("status", name="broken")
    assert status["status"] == "stopped"
    assert status["stop_reason"] == gave_up["reason"]
    assert len(status["last_exits"]) == 3
    assert [e["stderr"] for e in status["last_exits"]] == \
        [["config error: /etc/app.conf is missing"]] * 3
    assert status["last_exits"][-1]["exit_code"] == 1
    stats = daemon.call("stats", name="broken")
    assert stats["info"] == {} and stats["last_exits"] == status["last_exits"]
    result = ctl(daemon, "status", "broken")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "stopped"
    assert lines[1] == "why: " + gave_up["reason"]
    assert lines[2].startswith("last failed exit (2 before it: --json): pid ")
    assert lines[-1] == "  | config error: /etc/app.conf is missing"
    result = ctl(daemon, "stats", "broken")
    assert result.stdout.splitlines()[-1] == "    | config error: /etc/app.conf is missing"
    # stdout was kept too, but is not what a failure reports
    assert "starting" not in json.dumps(status)
    # a new start forgets the old failures
    daemon.call("set", name="broken", options={"cmd": "sleep 300"})
    daemon.call("start", name="broken", waiting=True)
    status = daemon.call("status", name="broken")
    assert status["status"] == "active"
    assert "last_exits" not in status and "stop_reason" not in status


@pytest.mark.parametrize("spawner", ["1", "0"], ids=["spawner", "in-process"])
def test_without_file_descriptors_processes_start_uncaptured(circusd, spawner):
    # a hard limit too low for two pipes per process: the processes start
    # anyway, the first ones with their output kept (the pipes are made
    # before the request to the spawner, by Popen in circusd without it)
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (80, 80))

    daemon = circusd("[watcher:many]\ncmd = sleep 300\nnumprocesses = 60\n", start=False,
                     env={"CIRCUS_SPAWNER": spawner})
    daemon.preexec_fn = low_limit
    daemon.start()
    children = wait_for(lambda: len(daemon.children()) == 60 and daemon.children(),
                        timeout=30, message="60 children")
    targets = [os.readlink("/proc/%d/fd/2" % c.pid) for c in children]
    assert "/dev/null" in targets and any(t.startswith("pipe:") for t in targets)
    log = daemon.read_log().decode()
    assert log.count("out of file descriptors") == 1
    assert "gave up" not in log
    assert daemon.call("status", name="many")["status"] == "active"


def test_circusd_raises_its_open_files_soft_limit(circusd):
    def limited():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))

    daemon = circusd("[watcher:one]\ncmd = sleep 300\n", start=False)
    daemon.preexec_fn = limited
    daemon.start()
    soft, hard = resource.prlimit(daemon.proc.pid, resource.RLIMIT_NOFILE)
    assert (soft, hard) == (4096, 4096)
    assert b"open files limit raised from 256 to 4096" in daemon.read_log()
    (child,) = wait_for(daemon.children, message="the child")
    # children inherit it (see circusd.raise_open_files_limit)
    assert resource.prlimit(child.pid, resource.RLIMIT_NOFILE) == (4096, 4096)


# --- the output command ------------------------------------------------------------
SIGNALLED = textwrap.dedent("""
    import signal, sys, time
    said = 0
    def more(signum, frame):
        global said
        said += 1
        print("more %d" % said, flush=True)
    def flood(signum, frame):
        sys.stdout.write("".join("flood %04d\\n" % n for n in range(1000)))
        sys.stdout.flush()
    signal.signal(signal.SIGUSR1, more)
    signal.signal(signal.SIGUSR2, flood)
    print("\\x1b[31mred\\x1b[0m <b>", flush=True)
    for n in range(30):
        print("out %d" % n, flush=True)
        print("err %d" % n, file=sys.stderr, flush=True)
    while True:
        time.sleep(1)
""")
# 300 lines of 30 bytes on each stream: more than a ring holds
FULL = ("import sys, time\n"
        "for n in range(300):\n"
        "    print('out %05d ' % n + 'o' * 19, flush=True)\n"
        "    print('err %05d ' % n + 'e' * 19, file=sys.stderr, flush=True)\n"
        "time.sleep(300)\n")


def output_config(tmp_path):
    (tmp_path / "signalled.py").write_text(SIGNALLED)
    (tmp_path / "full.py").write_text(FULL)
    return ("[watcher:talk]\ncmd = %s %s\nnumprocesses = 2\n\n"
            "[watcher:full]\ncmd = %s %s\nnumprocesses = 9\n\n"
            "[watcher:quiet]\ncmd = sleep 300\n"
            % (PY, tmp_path / "signalled.py", PY, tmp_path / "full.py"))


def written(daemon, name, count, out, err):
    """Wait until count processes of name wrote these last lines on stdout
    and stderr (two pipes, read each in its turn); their pids."""
    def done():
        reply = daemon.call("output", name=name, lines=1)
        ended = [o["pid"] for o in reply.get("output", [])
                 if o["lines"] == [out if o["stream"] == "stdout" else err]]
        return len(ended) == 2 * count and sorted(set(ended))
    return wait_for(done, timeout=30, message="%d processes of %s to write %r and %r"
                    % (count, name, out, err))


def test_output_command_tail_follow_and_bounds(circusd, tmp_path):
    daemon = circusd(output_config(tmp_path))
    pids = written(daemon, "talk", 2, "out 29", "err 29")
    tail = daemon.call("output", name="talk")
    assert tail["status"] == "ok" and tail["name"] == "talk"
    assert sorted((o["pid"], o["stream"]) for o in tail["output"]) == \
        [(pid, stream) for pid in pids for stream in ("stderr", "stdout")]
    for entry in tail["output"]:  # 20 lines by default, the newest
        assert len(entry["lines"]) == 20, entry
        assert entry["lines"][-1] == entry["stream"][3:] + " 29"
    assert set(tail["cursor"]) == {str(pid) for pid in pids}
    one = daemon.call("output", name="talk", pid=pids[0], streams=["stdout"], lines=2)
    assert one["output"] == [{"pid": pids[0], "wid": one["output"][0]["wid"],
                              "stream": "stdout", "lines": ["out 28", "out 29"]}]
    assert one["cursor"] == {str(pids[0]): {"stdout": tail["cursor"][str(pids[0])]["stdout"]}}
    assert daemon.call("output", name="talk", lines=0)["output"] == []
    quiet = daemon.call("output", name="quiet")
    assert quiet["output"] == [] and list(quiet["cursor"].values()) == [
        {"stdout": 0, "stderr": 0}]

    # follow: nothing new, then exactly what was written since
    cursor = tail["cursor"]
    assert daemon.call("output", name="talk", cursor=cursor)["output"] == []
    assert daemon.call("signal", name="talk", signum="USR1")["status"] == "ok"
    reply = wait_for(lambda: (lambda r: len(r["output"]) == 2 and r)(
        daemon.call("output", name="talk", cursor=cursor)), message="the new lines")
    assert sorted((o["pid"], o["stream"], o["lines"], o["skipped"]) for o in reply["output"]) \
        == [(pid, "stdout", ["more 1"], 0) for pid in pids]
    cursor = reply["cursor"]
    assert daemon.call("output", name="talk", cursor=cursor)["output"] == []

    # a flood between two reads: the newest 200 lines, the rest counted
    assert daemon.call("signal", name="talk", pid=pids[0], signum="USR2")["status"] == "ok"
    flooded = str(pids[0])
    wait_for(lambda: daemon.call("output", name="talk", pid=pids[0], cursor=cursor)["cursor"]
             [flooded]["stdout"] == cursor[flooded]["stdout"] + 11000, message="the flood")
    reply = daemon.call("output", name="talk", pid=pids[0], cursor=cursor)
    (entry,) = reply["output"]
    assert entry["lines"] == ["flood %04d" % n for n in range(800, 1000)]
    assert entry["skipped"] == 11000 - 200 * 11
    # ...or fewer, when asked
    reply = daemon.call("output", name="talk", pid=pids[0], cursor=cursor, lines=5)
    assert reply["output"][0]["lines"] == ["flood %04d" % n for n in range(995, 1000)]
    assert reply["output"][0]["skipped"] == 11000 - 5 * 11

    # a reply carries at most 64 KiB of lines, shared by all the rings read
    written(daemon, "full", 9, "out 00299 " + "o" * 19, "err 00299 " + "e" * 19)
    full = daemon.call("output", name="full", lines=200)["output"]
    assert len(full) == 18 and all(entry["lines"] for entry in full)
    sizes = [sum(len(line) + 1 for line in entry["lines"]) for entry in full]
    assert sum(sizes) <= 64 * 1024 and max(sizes) - min(sizes) <= 30, sizes
    every = daemon.call("output", name="full", cursor={}, lines=200)["output"]
    assert sum(sum(len(line) + 1 for line in e["lines"]) for e in every) <= 64 * 1024
    assert all(e["skipped"] > 0 for e in every)


def test_output_command_checks_its_properties(circusd, tmp_path):
    daemon = circusd("[watcher:quiet]\ncmd = sleep 300\n")
    wait_for(lambda: daemon.call("list", name="quiet")["pids"], message="the process")

    def refused(needle, **props):
        reply = daemon.call("output", **props)
        assert reply["status"] == "error" and reply["errno"] == 3, (props, reply)
        assert needle in reply["reason"], (props, reply)

    refused("missing property 'name'")
    refused("unknown property 'nmae'", name="quiet", nmae="quiet")
    refused("'name'", name=5)
    refused("program nope not found", name="nope")
    for pid in ("x", 1.5, True, 0):
        refused("'pid'", name="quiet", pid=pid)
    refused("process 99999999 not found", name="quiet", pid=99999999)
    for streams in ("both", [], ["stdout", "stdin"], [1], {"stdout": 1}):
        refused("'streams'", name="quiet", streams=streams)
    for lines in (-1, 201, "lots", True, 2.5, [1]):
        refused("'lines'", name="quiet", lines=lines)
    for cursor in ([], "abc", 5, {"x": {}}, {"1": {"stdin": 1}}, {"1": {"stdout": -1}},
                   {"1": {"stdout": "3"}}, {"1": {"stdout": True}}, {"1": []}):
        refused("'cursor'", name="quiet", cursor=cursor)
    # a stream given alone is taken for the list of it
    assert daemon.call("output", name="quiet", streams="stderr")["status"] == "ok"


def test_circusctl_output_prints_and_follows(circusd, tmp_path):
    import queue
    import subprocess
    import threading
    daemon = circusd(output_config(tmp_path))
    pids = written(daemon, "talk", 2, "out 29", "err 29")
    result = ctl(daemon, "output", "talk", str(pids[0]), "--lines", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "talk[%d] stdout | out 28" % pids[0], "talk[%d] stdout | out 29" % pids[0],
        "talk[%d] stderr | err 28" % pids[0], "talk[%d] stderr | err 29" % pids[0]]
    # control sequences never reach the terminal
    result = ctl(daemon, "output", "talk", str(pids[0]), "--lines", "31", "--stream", "stdout")
    assert result.stdout.splitlines()[0] == "talk[%d] stdout | red <b>" % pids[0]
    assert "\x1b" not in result.stdout
    result = ctl(daemon, "output", "nope")
    assert result.returncode == 1 and "program nope not found" in result.stderr
    result = ctl(daemon, "output", "talk", "--lines", "500")
    assert result.returncode == 1 and "at most 200" in result.stderr

    env = dict(os.environ, PYTHONPATH=ROOT, HOME=str(tmp_path))
    follower = subprocess.Popen([CIRCUSCTL, "--endpoint", daemon.endpoint, "output", "talk",
                                 "--lines", "1", "--follow"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout],
                              daemon=True)
    reader.start()
    seen = []

    def saw(text):
        def found():
            try:
                seen.append(lines.get(timeout=0.2).rstrip("\n"))
            except queue.Empty:
                pass
            return any(text in line for line in seen)
        return wait_for(found, timeout=20, message=lambda: "%r in %r" % (text, seen))
    try:
        saw("err 29")
        assert daemon.call("signal", name="talk", signum="USR1")["status"] == "ok"
        saw("talk[%d] stdout | more 1" % pids[1])
        saw("talk[%d] stdout | more 1" % pids[0])
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        reader.join(5)
    assert seen.count("talk[%d] stdout | more 1" % pids[0]) == 1  # once: the cursor moved


# --- the cost --------------------------------------------------------------------
def rss_kib(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_a_thousand_quiet_processes_cost_less_than_10_mb(circusd, tmp_path):
    """circusd's RSS with 1000 quiet processes, their output kept (a pipe
    pair each, read on the loop) against debug mode (no pipes: children
    write on circusd's own stdout), measured the same way: once all 1000
    run and circusd is idle."""
    config = "[circus]\ndebug = %s\n[watcher:quiet]\ncmd = sleep 600\nnumprocesses = 1000\n"
    measured = {}
    for debug in ("false", "true"):
        daemon = circusd(config % debug, cwd=tmp_path)
        wait_for(lambda: len(children_of(daemon.proc.pid)) == 1000, timeout=120,
                 interval=0.2, message="1000 children")
        wait_for(lambda: daemon.call("status", name="quiet")["status"] == "active",
                 timeout=60, message="the watcher active")
        fds = len(os.listdir("/proc/%d/fd" % daemon.proc.pid))
        measured[debug] = (rss_kib(daemon.proc.pid), fds)
        daemon.stop()
    (captured, captured_fds), (baseline, baseline_fds) = measured["false"], measured["true"]
    # the pipes are there, two per process (the measure is not of nothing)...
    assert captured_fds >= 2000 and baseline_fds < 100, measured
    # ...and cost less than 10 MB
    assert captured - baseline < 10 * 1024, measured
