"""The live stream of a page: Server-Sent Events.

One stream per page: GET /e/<id>/stream?view=overview|watcher|sockets|events
(&name=W for a watcher). It starts with a ``snapshot`` event (the whole view,
with the id of the last change it includes), then one named event per
change: ``watcher``, ``process``, ``event`` (those carry an ``id:`` and are
replayed to a browser that reconnects with Last-Event-ID, as long as the
ring still holds them; otherwise it gets a fresh snapshot), and ``stats``,
``pstats``, ``sockets``, ``endpoint`` (latest value only); on a watcher's
page, for a user who may read logs, ``output`` (batches of the lines its
processes write: circus.web.tail; the snapshot has the tail's lines so far,
and a resumed stream starts with them). A comment line every HEARTBEAT
seconds keeps proxies from closing an idle stream and tells the server
when the browser has gone.

Each stream holds a server thread, so their number is bounded
(--max-streams): past it, 503 and the page falls back to reloading.
"""
import json
import time

from circus.web.fanout import VIEWS, Subscriber
from circus.web.wsgi import HTTPError, Response

HEARTBEAT = 15.0
WAKE = 1.0  # how often a quiet stream checks that its browser is still there
RETRY_MS = 2000


def _event(kind, data, event_id=None):
    lines = "event: %s\n" % kind
    if event_id:
        lines += "id: %s\n" % event_id
    return (lines + "data: %s\n\n" % json.dumps(data, separators=(",", ":"))).encode()


class Stream:
    """The response body: iterated by the server thread, closed by it when
    the browser goes away (WSGI calls close() on the iterable)."""

    def __init__(self, console, connection, subscriber, first_chunk, environ):
        self.console = console
        self.connection = connection
        self.subscriber = subscriber
        self.first_chunk = first_chunk
        self.environ = environ
        self._closed = False

    def __iter__(self):
        return self._run()

    def _snapshot(self):
        with self.connection.model.lock:
            data = _snapshot_data(self.connection, self.subscriber)
            return _event("snapshot", data, data["id"])

    def _run(self):
        yield self.first_chunk
        disconnected = self.environ.get("waitress.client_disconnected")
        last_write = time.monotonic()
        while not self._closed and not self.console.closing.is_set():
            if disconnected is not None and disconnected():
                return
            if self.console.hub.get(self.connection.id) is not self.connection:
                yield _event("endpoint", {"state": "removed"})
                return
            need_snapshot, items = self.subscriber.take(WAKE)
            chunks = [self._snapshot()] if need_snapshot else []
            chunks += [_event(i["kind"], i["data"], i.get("id")) for i in items]
            now = time.monotonic()
            if chunks:
                yield b"".join(chunks)
                last_write = now
            elif now - last_write >= HEARTBEAT:
                yield b": ping\n\n"
                last_write = now

    def close(self):
        if self._closed:
            return
        self._closed = True
        with self.connection.model.lock:
            self.connection.model.broadcaster.unsubscribe(self.subscriber)
            if self.subscriber.logs:
                self.connection.tails.unwatch(self.subscriber.watcher)
        self.console.streams.release()


def _snapshot_data(connection, subscriber):
    """The subscriber's view now (model lock held)."""
    data = connection.model.snapshot(subscriber.view, subscriber.watcher)
    if subscriber.logs:
        data["output"] = connection.tails.view(subscriber.watcher)
    return data


def stream(console, request, identity, eid):
    connection = console.hub.get(eid)
    if connection is None:
        raise HTTPError(404, "no such circusd in this console")
    view = request.arg("view", "overview")
    if view not in VIEWS:
        raise HTTPError(400, "unknown view")
    name = request.arg("name") if view == "watcher" else None
    if not console.streams.acquire():
        raise HTTPError(503, "too many live streams open on this console (%d)"
                        % console.streams.limit, [("Retry-After", "10")])
    subscriber = Subscriber(view, name, logs=view == "watcher" and identity.logs)
    last_id = request.header("Last-Event-ID") or request.arg("last_event_id")
    model = connection.model
    with model.lock:
        try:
            replay = model.broadcaster.replay_since(last_id) if last_id else None
            if replay is None:
                data = _snapshot_data(connection, subscriber)
                first = _event("snapshot", data, data["id"])
            else:
                first = b"".join(_event(i["kind"], i["data"], i["id"])
                                 for i in replay if subscriber.wants(i))
                tail = connection.tails.view(name) if subscriber.logs else None
                if tail is not None and tail["ready"]:
                    # output is not replayed: the lines so far replace the page's
                    first += _event("output", {"watcher": name, "reset": True,
                                               "lines": tail["lines"], "note": tail["note"]})
        except BaseException:
            console.streams.release()
            raise
        # under the same lock as the snapshot: no change falls between them
        model.broadcaster.subscribe(subscriber)
        if subscriber.logs:
            connection.tails.watch(name)
    body = Stream(console, connection, subscriber, b"retry: %d\n\n" % RETRY_MS + first,
                  request.environ)
    return Response(body, 200, "text/event-stream; charset=utf-8",
                    [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")])
