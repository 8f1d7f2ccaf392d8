"""What circusd keeps of its children's output: the last few KB each live
process wrote on stdout and on stderr, and the stderr of each watcher's last
failed exits. This is why a dying process can say why in circusd's log, in
the `reap` and `max_retry` events and in `status`/`stats`; a log tail (the
web console's) reads the same rings.

Costs: nothing for a process that writes nothing (a ring is made at its
stream's first byte); at most RING_BYTES per stream for one that does; the
pipe read itself is the one a configured stream needs anyway (see
circus.watcher.streams: one reader feeds both).

Reading: a ring is a window on a stream whose every byte has an offset
(Ring.end counts them all); an offset is the cursor a follower gives back
to get what came after it. What is read is cut at line boundaries: a line
the ring has lost the start of is left out, and so is a last line not
finished yet (except in the record of an exit: nothing more will come).
A read costs what it returns: it finds its line boundaries in the rings it
reads, and nothing is done for a ring nobody reads. A read bounded in bytes
shares them over the rings it reads, so one flooding process cannot crowd
the others out, and says how many bytes each ring's reader did not get.
"""
import time
from collections import deque

STREAMS = ("stdout", "stderr")
# kept per stream of a live process
RING_BYTES = 4096
# of stderr kept per failed exit, in lines and bytes, and failed exits kept
# per watcher: enough for a traceback's end, small in an event
EXIT_LINES = 20
EXIT_BYTES = 2048
EXITS_KEPT = 5


def _decode(region):
    text = region.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    return [line.rstrip("\r") for line in text.split("\n")] if text else []


class Ring:
    """The last `size` bytes written to one stream."""

    __slots__ = ("data", "end", "size", "torn")

    def __init__(self, size=RING_BYTES):
        self.data = bytearray()
        self.size = size
        self.end = 0  # bytes ever written: the offset after data[-1]
        self.torn = False  # data[0] is not the start of a line

    @property
    def start(self):
        """The offset of data[0] in the stream."""
        return self.end - len(self.data)

    def write(self, chunk):
        self.end += len(chunk)
        if len(chunk) >= self.size:
            # the byte before the window decides whether it starts a line
            before = chunk[-self.size - 1] if len(chunk) > self.size else (
                self.data[-1] if self.data else 0x0A)
            self.torn = before != 0x0A
            self.data[:] = chunk[-self.size:]
            return
        self.data += chunk
        excess = len(self.data) - self.size
        if excess > 0:
            # CPython drops the front of a bytearray without moving the rest
            self.torn = self.data[excess - 1] != 0x0A
            del self.data[:excess]

    def _first_line(self):
        """Where the first whole line starts in data."""
        if not self.torn:
            return 0
        return self.data.find(b"\n") + 1  # 0 when data is one cut line

    def tail(self, count=None, max_bytes=None, unfinished=False):
        """(lines, cursor): the last count lines kept (all by default),
        within max_bytes; the cursor is the offset after them."""
        data = self.data
        end = len(data) if unfinished else data.rfind(b"\n") + 1
        begin = self._first_line()
        if max_bytes is not None and end - begin > max_bytes:
            cut = end - max_bytes
            begin = data.find(b"\n", cut - 1, end - 1) + 1 or cut
        lines = _decode(bytes(data[begin:end])) if end > begin else []
        if count is not None:
            lines = lines[-count:] if count > 0 else []
        return lines, self.start + max(end, begin)

    def since(self, cursor):
        """(lines, cursor, skipped): the whole lines written after cursor,
        the offset after them, and how many bytes after cursor the ring had
        already lost."""
        begin, end, lost = self.span_since(cursor)
        lines, _ = self.read(begin, end)
        return lines, self.start + end, lost

    # --- bounded reads: a span of data, then its newest lines ----------------
    def span_tail(self):
        """(begin, end, 0): the whole lines kept, as indexes into data."""
        begin = self._first_line()
        return begin, max(begin, self.data.rfind(b"\n") + 1), 0

    def span_since(self, cursor):
        """(begin, end, lost): the whole lines written after cursor, as
        indexes into data, and how many bytes after cursor the ring had
        already lost."""
        start = self.start
        cursor = min(max(0, int(cursor)), self.end)
        lost = 0
        if cursor < start:
            begin = self._first_line()
            lost = start + begin - cursor
        else:
            begin = cursor - start
        return begin, max(begin, self.data.rfind(b"\n", begin) + 1), lost

    def last_lines(self, begin, end, count):
        """Where the last count lines of data[begin:end] start."""
        if count is None or end <= begin:
            return begin
        position = end - 1  # the newline ending the last line
        for _ in range(count):
            position = self.data.rfind(b"\n", begin, position)
            if position < 0:
                return begin
        return position + 1

    def read(self, begin, end, max_bytes=None):
        """(lines, dropped): the newest whole lines of data[begin:end] within
        max_bytes (all by default), and how many bytes of the span they
        leave out. When not even the last line fits: its first max_bytes."""
        data = self.data
        first, stop = begin, end
        if max_bytes is not None and end - begin > max_bytes:
            cut = data.find(b"\n", end - max_bytes - 1, end - 1) + 1
            if cut > begin:
                first = cut
            else:
                first = data.rfind(b"\n", begin, end - 1) + 1 or begin
                stop = first + max_bytes
        lines = _decode(bytes(data[first:stop])) if stop > first else []
        return lines, (end - begin) - (stop - first)


class ProcessOutput:
    """A live process's rings, one per stream it wrote on."""

    __slots__ = STREAMS

    def __init__(self):
        self.stdout = None
        self.stderr = None

    def write(self, name, chunk):
        ring = getattr(self, name)
        if ring is None:
            ring = Ring()
            setattr(self, name, ring)
        ring.write(chunk)

    def ring(self, name):
        return getattr(self, name)


def keep(process, name, chunk):
    """Add chunk, read from process's stream name, to its rings."""
    if process.output is None:
        process.output = ProcessOutput()
    process.output.write(name, chunk)


def last_stderr(process):
    """The last lines of stderr of a process that has exited (the last
    unfinished one included), bounded by EXIT_LINES and EXIT_BYTES."""
    ring = process.output.stderr if process.output is not None else None
    if ring is None:
        return []
    return ring.tail(EXIT_LINES, EXIT_BYTES, unfinished=True)[0]


def describe_exit(pid, returncode, uptime):
    return "process %d exited with %s after %.2fs" % (pid, returncode, uptime)


def with_stderr(text, name, pid, lines):
    """text, then the stderr lines as continuation lines, each prefixed with
    whose they are, so a log reader tells them from circusd's own."""
    if not lines:
        return text
    return "%s; its stderr ended with:\n%s" % (
        text, "\n".join("    %s[%d] | %s" % (name, pid, line) for line in lines))


class OutputKeeping:
    """Watcher's side of its processes' output: the rings of the live ones
    and the record of the last failed exits. Expects processes and name."""

    def _init_output(self):
        self.last_exits = deque(maxlen=EXITS_KEPT)

    def _record_exit(self, process, stderr):
        """Keep a failed exit (newest last): its pid, code, uptime and the
        end of its stderr."""
        self.last_exits.append({
            "pid": process.pid, "wid": process.wid, "exit_code": process.returncode,
            "time": time.time(), "uptime": round(process.age(), 3), "stderr": stderr})

    def _selected(self, pid):
        if pid is None:
            return list(self.processes.values())
        process = self.processes.get(int(pid))
        return [process] if process is not None else []

    def output_tail(self, lines=10, pid=None, streams=STREAMS, max_bytes=None):
        """The last lines of every live process (or of pid), per stream:
        {"output": [{"pid", "wid", "stream", "lines"}...], "cursor": C}.
        C, given to output_since, follows from there. With max_bytes, the
        lines of all the rings read fit in it (see _shares)."""
        return self._read_output(None, lines, pid, streams, max_bytes)

    def output_since(self, cursor, pid=None, streams=STREAMS, lines=None, max_bytes=None):
        """The whole lines written since cursor (from output_tail or an
        earlier output_since) by every live process or by pid, at most
        `lines` per ring and max_bytes in all (the newest are kept); a
        process the cursor does not know is read from its start. Each
        entry also says how many bytes written since the cursor it leaves
        out ("skipped"): lost by the ring in between, or over the bounds."""
        return self._read_output(cursor or {}, lines, pid, streams, max_bytes)

    def _read_output(self, cursor, lines, pid, streams, max_bytes):
        follow = cursor is not None
        reads, after = [], {}
        for process in self._selected(pid):
            rings = process.output
            key = str(process.pid)
            known = cursor.get(key, {}) if follow else {}
            offsets = after.setdefault(key, {})
            for name in streams:
                ring = rings.ring(name) if rings is not None else None
                if ring is None:
                    offsets[name] = int(known.get(name, 0))
                    continue
                begin, end, lost = ring.span_since(known.get(name, 0)) if follow \
                    else ring.span_tail()
                first = ring.last_lines(begin, end, lines)
                reads.append((process, name, ring, first, end, lost + first - begin))
                offsets[name] = ring.start + end
        shares = _shares([end - first for _, _, _, first, end, _ in reads], max_bytes)
        output = []
        for (process, name, ring, first, end, skipped), share in zip(reads, shares):
            kept, dropped = ring.read(first, end, share)
            entry = {"pid": process.pid, "wid": process.wid, "stream": name, "lines": kept}
            if follow:
                if not (kept or skipped or dropped):
                    continue
                entry["skipped"] = skipped + dropped
            elif not kept:
                continue
            output.append(entry)
        return {"output": output, "cursor": after}


def _shares(needs, budget):
    """budget split over readers needing needs bytes: the smaller needs are
    met in full, the others share what is left equally (None: no bound)."""
    if budget is None:
        return [None] * len(needs)
    shares = [0] * len(needs)
    left, count = budget, len(needs)
    for index in sorted(range(len(needs)), key=needs.__getitem__):
        shares[index] = min(needs[index], left // count)
        left -= shares[index]
        count -= 1
    return shares
