from circus.commands.base import Command


class Metrics(Command):
    """Get circusd's counters and its watchers' gauges

    ZMQ Message
    -----------

    ::

        {"command": "metrics"}

    The response holds what circusd-metrics turns into Prometheus metrics
    (see README.rst, "Metrics"): circusd's ``version``, ``pid``,
    ``started_at`` and ``state``; ``watchers``, a mapping of each watcher's
    ``state``, ``autostart``, ``wanted``, ``running`` and ``ready``
    processes, ``pids`` and ``counters`` (spawns, respawns, recycles,
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

    async def execute(self, arbiter, props):
        return arbiter.metrics()

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
