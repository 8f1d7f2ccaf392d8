from circus.commands.base import Command, boolean, mapping


class Metrics(Command):
    """Get circusd's counters and its watchers' gauges

    ZMQ Message
    -----------

    ::

        {"command": "metrics", "properties": {"known": {"web": "<pids_version>"}}}

    The response holds what circusd-metrics turns into Prometheus metrics
    (see README.rst, "Metrics"): circusd's ``version``, ``pid``,
    ``started_at`` and ``state``; ``watchers``, a mapping of each watcher's
    ``state``, ``autostart``, ``wanted``, ``running`` and ``ready``
    processes, ``pids`` and their ``pids_version`` (``pids`` is left out
    for a watcher whose version the optional ``known`` property names:
    a steady scrape carries no pid; ``"pids": false`` leaves them all
    out), ``counters`` (spawns, respawns, recycles,
    exits by cause, spawn_failures and give_ups by cause, reload_duration);
    ``sockets`` as ``listsockets`` answers them; ``commands``, the latency
    histogram of each command name and status; and the histograms'
    ``buckets`` (upper bounds in seconds). Counting is done as events
    happen: the reply reads no /proc file.

    Command line
    ------------

    ::

        $ circusctl metrics
    """

    name = "metrics"
    spec = {"known": mapping, "pids": boolean}

    async def execute(self, arbiter, props):
        return arbiter.metrics(props.get("known") or {}, props.get("pids", True))

    def console_msg(self, msg):
        if "watchers" not in msg:
            return super().console_msg(msg)
        lines = ["circusd %s (pid %s): %s" % (msg.get("version"), msg.get("pid"),
                                              msg.get("state"))]
        for name, watcher in sorted(msg["watchers"].items()):
            counters = watcher.get("counters", {})
            lines.append("%s: %s, %s/%s running, %s ready; spawns %s, respawns %s, "
                         "exits %s" % (name, watcher.get("state"), watcher.get("running"),
                                       watcher.get("wanted"), watcher.get("ready"),
                                       counters.get("spawns"), counters.get("respawns"),
                                       sum((counters.get("exits") or {}).values())))
        return "\n".join(lines)


command = Metrics()
