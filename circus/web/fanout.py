"""Fan one circusd's updates out to every open page, none waiting for another.

An item is a mapping: ``kind`` (the SSE event name), ``watcher`` (the
watcher it concerns, or None) and ``data``. Discrete items (a watcher's
state, a process spawned or reaped, a timeline event) get a sequence
number and stay in a bounded replay ring, so a page that reconnects with
Last-Event-ID gets what it missed; statistics are not replayed (the next
tick brings fresh ones).

Each page has a Subscriber: a bounded queue of its own. Publishing only
appends to those queues, under the endpoint's lock, and never waits for a
browser. A page that does not keep up loses its own updates only: a newer
statistics item replaces the one still waiting, a batch of output lines is
merged into the one waiting (keeping the newest lines: circus.web.tail),
and past `limit` waiting items the queue is dropped and the page is sent a
fresh snapshot instead. Output is not replayed either: a page that resumes
gets the tail's current lines (circus.web.sse).
"""
import collections
import secrets
import threading

from circus.web.tail import merge

# kinds where only the latest matters: a newer one replaces a waiting one
COALESCED = ("stats", "pstats", "sockets", "endpoint")
# kinds whose waiting items are merged into one
MERGED = ("output",)

# which kinds each view is sent (the watcher view: only its own watcher's)
VIEWS = {
    "overview": ("watcher", "stats", "endpoint", "event"),
    "watcher": ("watcher", "process", "pstats", "endpoint", "event", "output"),
    "sockets": ("sockets", "endpoint"),
    "events": ("event", "endpoint"),
}


class Subscriber:
    def __init__(self, view, watcher=None, limit=256, logs=False):
        if view not in VIEWS:
            raise ValueError("unknown view %r" % view)
        self.view = view
        self.watcher = watcher
        self.logs = logs  # may see the output of the watcher's processes
        self.limit = limit
        self.kinds = VIEWS[view]
        self.need_snapshot = False
        self.dropped = 0
        self._items = collections.deque()
        self._cond = threading.Condition(threading.Lock())

    def wants(self, item):
        if item["kind"] not in self.kinds:
            return False
        if item["kind"] == "output" and not self.logs:
            return False
        if self.view == "watcher" and item["kind"] != "endpoint":
            return item.get("watcher") == self.watcher
        return True

    def offer(self, item):
        with self._cond:
            if self.need_snapshot:
                return  # a snapshot is coming anyway
            if item["kind"] in COALESCED or item["kind"] in MERGED:
                for index, waiting in enumerate(self._items):
                    if waiting["kind"] == item["kind"]:
                        del self._items[index]
                        if item["kind"] in MERGED:
                            item = merge(waiting, item)
                        break
            if len(self._items) >= self.limit:
                self._items.clear()
                self.need_snapshot = True
                self.dropped += 1
            else:
                self._items.append(item)
            self._cond.notify()

    def take(self, timeout):
        """(need_snapshot, items) once something waits or timeout passes."""
        with self._cond:
            if not self._items and not self.need_snapshot:
                self._cond.wait(timeout)
            need, self.need_snapshot = self.need_snapshot, False
            items = list(self._items)
            self._items.clear()
            return need, items


class Broadcaster:
    """The replay ring and subscribers of one endpoint. Callers hold `lock`
    (the endpoint model's) while publishing, subscribing or snapshotting,
    so a snapshot and the items queued after it never overlap or miss."""

    def __init__(self, lock, ring_size=1000):
        self.lock = lock
        # ids name this console process's run: an id from an earlier run
        # (or another console) cannot be resumed and gets a snapshot
        self.run_id = secrets.token_hex(4)
        self.seq = 0
        self.ring = collections.deque(maxlen=ring_size)
        self.subscribers = set()

    def event_id(self, seq=None):
        return "%s-%d" % (self.run_id, self.seq if seq is None else seq)

    def publish(self, kind, data, watcher=None):
        item = {"kind": kind, "watcher": watcher, "data": data}
        if kind not in COALESCED and kind not in MERGED:
            self.seq += 1
            item["seq"] = self.seq
            item["id"] = self.event_id()
            self.ring.append(item)
        for subscriber in list(self.subscribers):
            if subscriber.wants(item):
                subscriber.offer(item)
        return item

    def replay_since(self, last_event_id):
        """The ring's items after last_event_id, or None when they are not
        all there any more (or the id is not this run's)."""
        run, _, seq = (last_event_id or "").partition("-")
        if run != self.run_id or not seq.isdigit():
            return None
        seq = int(seq)
        if seq > self.seq:
            return None
        oldest = self.seq - len(self.ring) + 1
        if seq + 1 < oldest:
            return None
        return [item for item in self.ring if item["seq"] > seq]

    def subscribe(self, subscriber):
        self.subscribers.add(subscriber)

    def unsubscribe(self, subscriber):
        self.subscribers.discard(subscriber)
