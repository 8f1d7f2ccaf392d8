"""The live log tail: what a watcher's processes write, on its page.

circusd keeps the last 4 KiB of each stream of each live process and hands
them out with its `output` command (nothing is done there for a stream
nobody reads). The console asks only while a page shows the tail: the
first page of a watcher to open its event stream starts one Tail (a thread
of this console process) that asks for the last lines, then every
POLL_INTERVAL for what was written since its cursor, and publishes each
batch to the pages of that watcher (kind "output", circus.web.fanout); the
last page to close stops it. A Tail keeps the last KEEP_LINES lines, so a
page opening while it runs starts with them.

Bounds, so that a process flooding its output costs neither circusd nor
the console nor the browser more than a little: circusd answers at most
64 KiB of lines per request (the newest, with "N bytes skipped" for the
rest), so a Tail reads at most 128 KiB/s; every line is cleaned of control
sequences (circus.util.printable) and cut to LINE_CHARS; a Tail keeps
KEEP_LINES; a page's queue merges the batches waiting for it into one of
at most KEEP_LINES lines (merge); the browser keeps KEEP_LINES in the page.

Lines are mappings: {"pid", "stream", "text"}, or a gap: {"pid", "stream",
"skipped": bytes circusd did not send} or {"dropped": lines this console
did not pass on because the page was behind}.
"""
import collections
import threading

from circus.client import CallError
from circus.util import printable

POLL_INTERVAL = 0.5
RETRY_INTERVAL = 2.0
# a circusd older than the output command: ask again now and then (it may
# be upgraded) but not every half second
UNSUPPORTED_INTERVAL = 30.0
FIRST_LINES = 100  # per stream of each process: a tail's first request
KEEP_LINES = 500
LINE_CHARS = 1000
UNSUPPORTED = "this circusd does not hand out its processes' output (it has no output command)"


class TailError(Exception):
    """No output to show: the HTTP status and why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def ask(connection, name, **props):
    """circusd's reply to `output` for the watcher name; TailError when
    there is none to show."""
    try:
        reply = connection.call("output", name=name, **props)
    except CallError as exc:
        raise TailError(502, "circusd did not answer: %s" % exc) from None
    if reply.get("status") == "error":
        errno = reply.get("errno")
        if errno == 2:
            raise TailError(501, UNSUPPORTED)
        raise TailError(400 if errno == 3 else 502, str(reply.get("reason", "error"))[:300])
    return reply


def first_view(connection, name):
    """What a watcher's page shows as it opens: the lines of the Tail
    running for it, or else circusd's last lines."""
    with connection.model.lock:
        view = connection.tails.view(name)
    if view is not None and view["ready"]:
        return view
    try:
        reply = ask(connection, name, lines=FIRST_LINES)
    except TailError as exc:
        return {"ready": False, "lines": [], "note": exc.message}
    return {"ready": True, "lines": trim(lines_of(reply.get("output"))), "note": None}


def clean(line):
    text = printable(str(line))
    return text if len(text) <= LINE_CHARS else text[:LINE_CHARS] + "\u2026"


def lines_of(output):
    """circusd's `output` entries as the pages' lines."""
    found = []
    for entry in output if isinstance(output, list) else ():
        if not isinstance(entry, dict):
            continue
        pid, stream = entry.get("pid"), entry.get("stream")
        skipped = entry.get("skipped")
        if isinstance(skipped, int) and skipped > 0:
            found.append({"pid": pid, "stream": stream, "skipped": skipped})
        lines = entry.get("lines")
        for line in lines if isinstance(lines, list) else ():
            found.append({"pid": pid, "stream": stream, "text": clean(line)})
    return found


def trim(lines, keep=KEEP_LINES):
    """The newest keep lines, the older ones counted in a leading gap."""
    if len(lines) <= keep:
        return lines
    cut = len(lines) - keep + 1
    dropped = sum(line.get("dropped", 0) + ("text" in line) for line in lines[:cut])
    return [{"dropped": dropped}] + lines[cut:]


def merge(waiting, item):
    """One output item for a page that has not taken `waiting` yet."""
    if item["data"]["reset"]:
        return item
    data = waiting["data"]
    lines = trim(data["lines"] + item["data"]["lines"])
    return dict(waiting, data=dict(data, lines=lines, note=item["data"]["note"]))


class Tail(threading.Thread):
    """Follows one watcher's output while pages show it."""

    def __init__(self, connection, name):
        super().__init__(daemon=True, name="circushttpd-tail")
        self.connection = connection
        self.watcher = name
        self.viewers = 0
        self.lines = collections.deque(maxlen=KEEP_LINES)
        self.ready = False  # the first answer came: lines are the tail
        self.note = None  # why there is nothing to show, if something is wrong
        self.stopping = threading.Event()

    def view(self):
        """What a page opening now starts with (model lock held)."""
        return {"ready": self.ready, "lines": list(self.lines), "note": self.note}

    def run(self):
        cursor = None
        while not self.stopping.is_set():
            props = {"name": self.watcher}
            if cursor is None:
                props["lines"] = FIRST_LINES
            else:
                props["cursor"] = cursor
            try:
                reply = ask(self.connection, **props)
            except TailError as exc:
                self._publish([], False, exc.message)
                self.stopping.wait(UNSUPPORTED_INTERVAL if exc.status == 501
                                   else RETRY_INTERVAL)
                continue
            self._publish(lines_of(reply.get("output")), cursor is None, None)
            found = reply.get("cursor")
            cursor = found if isinstance(found, dict) else {}
            self.stopping.wait(POLL_INTERVAL)

    def _publish(self, lines, reset, note):
        model = self.connection.model
        with model.lock:
            if self.stopping.is_set():
                return  # a newer Tail may follow this watcher already
            if not (lines or reset or note != self.note):
                return
            if reset:
                self.lines.clear()
                self.ready = True
            self.lines.extend(lines)
            self.note = note
            model.broadcaster.publish("output", {
                "watcher": self.watcher, "reset": reset, "lines": trim(lines), "note": note},
                self.watcher)


class Tails:
    """The Tails of one circusd's connection, by watcher; their number of
    viewers is changed under the model's lock, as their lines are."""

    def __init__(self, connection):
        self.connection = connection
        self._tails = {}

    def watch(self, name):
        with self.connection.model.lock:
            tail = self._tails.get(name)
            if tail is None:
                tail = self._tails[name] = Tail(self.connection, name)
                tail.start()
            tail.viewers += 1

    def unwatch(self, name):
        with self.connection.model.lock:
            tail = self._tails.get(name)
            if tail is None:
                return
            tail.viewers -= 1
            if tail.viewers <= 0:
                del self._tails[name]
                tail.stopping.set()

    def view(self, name):
        """The view of name's tail, or None when no page follows it (model
        lock held)."""
        tail = self._tails.get(name)
        return tail.view() if tail is not None else None

    def stop(self):
        with self.connection.model.lock:
            tails, self._tails = list(self._tails.values()), {}
        for tail in tails:
            tail.stopping.set()
        for tail in tails:
            tail.join(5)
