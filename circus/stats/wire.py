"""The messages of circusd-stats' stream, built and read in one place.

Two families of topics share the stats socket, each message two frames
(topic, JSON body):

- ``stat.<watcher>.<pid>`` per process, ``stat.<watcher>`` per watcher (the
  aggregate), ``stat.circus[.<pid>]`` for circusd and circusd-stats,
  ``stat.sockets[.<fd>]`` for circus sockets: the original circusd-stats'
  stream, one message per process per tick. Circus 0.19's circus-top and
  every client written against it subscribe to ``stat.``.
- ``batch.stat.<watcher>`` (``batch.stat.circus``, ``batch.stat.sockets``):
  one message per watcher per tick with the aggregate and every process,
  for circus's own clients (circus.stats.client)::

      {"total": <the body of stat.<watcher>>,
       "common": {"watcher": ..., "time": ..., "name": null},
       "key": "pid", "fields": ["pid", "cpu", ...], "rows": [[...], ...]}

  Each row expands (item_body) to exactly the body of
  ``stat.<watcher>.<row's pid>``: the keys of `common`, the fields, the
  strings derived from them, and ``subtopic``. Sockets, whose keys differ
  from one kind to another, have ``"key": "fd"``, no fields, and a mapping
  per row. A subscriber to ``stat.`` never sees a batch.

circusd-stats publishes a message only to subscribers whose prefix covers
its topic (see circus.stats.publisher), so each family costs only while
somebody reads it.
"""
from circus.util import bytes2human

STAT = "stat."
BATCH = "batch.stat."

# one row per process, in this order (the collector adds "children" when
# asked to, the streamer "name" for circus's own processes)
PROCESS_FIELDS = ("pid", "cpu", "mem", "rss", "vms", "cpu_time", "nice", "username",
                  "cmdline", "create_time", "age")
NOT_AVAILABLE = "N/A"


def add_derived(body):
    """The human-readable strings a process body carries besides its numbers."""
    if "cpu_time" not in body:
        return body
    for key, source in (("mem_info1", "rss"), ("mem_info2", "vms")):
        value = body.get(source)
        body[key] = bytes2human(value) if isinstance(value, (int, float)) else NOT_AVAILABLE
    cpu_time = body["cpu_time"]
    body["ctime"] = ("%d:%05.2f" % divmod(cpu_time, 60)
                     if isinstance(cpu_time, (int, float)) else NOT_AVAILABLE)
    return body


def item_body(fields, row, common, key="pid"):
    """The body of stat.<watcher>.<row[key]>: common, the row (values in
    the order of fields, or a mapping), the derived strings and the subtopic."""
    body = dict(common)
    body.update(row if isinstance(row, dict) else zip(fields, row))
    add_derived(body)
    body["subtopic"] = body[key]
    return body


def batch_body(total, common, fields, rows, key="pid"):
    return {"total": total, "common": common, "key": key, "fields": list(fields),
            "rows": rows}


def expand_batch(body):
    """[(subtopic, item body), ...] then (None, total) of a batch body."""
    fields = body.get("fields") or ()
    common = body.get("common") or {}
    key = body.get("key", "pid")
    out = []
    for row in body.get("rows") or ():
        item = item_body(fields, row, common, key)
        out.append((item["subtopic"], item))
    total = body.get("total")
    if isinstance(total, dict):
        out.append((None, total))
    return out
