from circus.commands.base import (
    ArgumentError,
    Command,
    boolean,
    int_arg,
    integer,
    stop_report_lines,
    string,
)


class Stats(Command):
    """Get process infos

    ZMQ Message
    -----------

    For every watcher::

        {"command": "stats"}

    answers {"infos": {<watcher>: {<pid>: <info>, ...}, ...}}. For a
    watcher::

        {"command": "stats", "properties": {"name": <name>}}

    answers {"name": <name>, "info": {<pid>: <info>, ...}}. For a process::

        {"command": "stats", "properties": {"name": <name>, "process": <pid>}}

    answers {"process": <pid>, "info": <info>, "watcher": <name>} (no "name":
    Circus 0.19's circusctl reads a reply with one as a watcher's), where an
    info is::

        {
            "pid": 47864, "cpu": 0.1, "mem": 0.1, "mem_info1": "3M",
            "mem_info2": "2G", "ctime": "0:00.41", "nice": 0,
            "username": "root", "cmdline": "python", "children": [],
            "age": 12.5, ...
        }

    (or a string such as "No such process (stopped?)" for a process that
    just went away). Pids are mapping keys, so strings in JSON. For a
    stopped watcher the reply may add "stop_reason" and "last_exits", as
    the status command's does.

    Command line
    ------------

    ::

        $ circusctl stats [<watchername>] [<pid>]
    """

    name = "stats"
    usage = "[<name>] [<pid>]"
    # extended: the original Circus's extended_stats hook, which circus has not
    spec = {"name": string, "process": integer(1), "pid": integer(1), "extended": boolean}

    def message(self, *args, **opts):
        if len(args) > 2:
            raise ArgumentError("stats takes an optional watcher name and pid")
        props = {}
        if args:
            props["name"] = args[0]
        if len(args) == 2:
            props["process"] = int_arg(args[1], "<pid>")
        return self.make_message(**props)

    async def execute(self, arbiter, props):
        from circus import heap
        with heap.paused():  # thousands of infos, all gone once sent
            return await self._describe(arbiter, props)

    async def _describe(self, arbiter, props):
        # the processes are listed before the look at /proc, which gives the
        # loop turns: one spawned meanwhile is not in it, and would read as
        # stopped
        if "name" not in props:
            listed = [(w.name, list(w.processes.values())) for w in arbiter.iter_watchers()]
            snapshot = await look()
            infos = {}
            for name, processes in listed:
                infos[name] = await _infos(processes, snapshot)
            return {"infos": infos}
        watcher = self.watcher(arbiter, props)
        pid = props.get("process", props.get("pid"))
        if pid is not None:
            process = self.process(watcher, pid)
            snapshot = await look()
            # gone meanwhile: "No such process", not an unknown pid
            return {"watcher": watcher.name, "process": process.pid,
                    "info": snapshot.info(process.pid, process.started)}
        processes = list(watcher.processes.values())
        snapshot = await look()
        return dict(watcher.stop_report(), name=watcher.name,
                    info=await _infos(processes, snapshot))

    def console_msg(self, msg):
        if "infos" in msg:
            return "\n".join(_watcher_table(name, infos)
                             for name, infos in sorted(msg["infos"].items()))
        if "process" in msg:
            return _watcher_table(msg.get("watcher", msg.get("name", "")),
                                  {str(msg["process"]): msg["info"]})
        if "info" in msg:
            return "\n".join([_watcher_table(msg.get("name", ""), msg["info"])]
                             + ["  " + line for line in stop_report_lines(msg)])
        return super().console_msg(msg)


# processes described between two turns given to circusd's loop (and
# procstats.SCAN_CHUNK looked at): with thousands of them, other commands
# are answered while stats works
INFOS_PER_TURN = 256


async def look():
    """One look at /proc (a procstats Snapshot), taken giving the loop turns."""
    from circus.procstats import Snapshot
    snapshot = Snapshot()
    await snapshot.scan()
    return snapshot


async def _infos(processes, snapshot):
    """What Watcher.info(snapshot) answers, for these processes, giving the
    loop a turn now and then."""
    import asyncio  # here: circusctl imports this module and never needs it
    infos = {}
    for count, process in enumerate(processes, 1):
        infos[process.pid] = snapshot.info(process.pid, process.started)
        if count % INFOS_PER_TURN == 0:
            await asyncio.sleep(0)
    return infos


_COLUMNS = (("PID", "pid", "%-8s"), ("CPU%", "cpu", "%6s"), ("MEM%", "mem", "%6s"),
            ("RSS", "mem_info1", "%7s"), ("VMS", "mem_info2", "%7s"),
            ("AGE", "age", "%8s"), ("USER", "username", " %-10s"))


def _age(seconds):
    seconds = int(seconds or 0)
    if seconds < 3600:
        return "%d:%02d" % divmod(seconds, 60)
    hours, seconds = divmod(seconds, 3600)
    return "%dh%02d" % (hours, seconds // 60)


def _watcher_table(name, infos):
    lines = ["%s:" % name]
    if not infos:
        lines.append("  (no processes)")
        return "\n".join(lines)
    lines.append("  " + " ".join(fmt % title for title, _, fmt in _COLUMNS) + " CMDLINE")
    for pid in sorted(infos, key=lambda p: int(p)):
        info = infos[pid]
        if not isinstance(info, dict):
            lines.append("  %-8s %s" % (pid, info))
            continue
        cells = []
        for _, key, fmt in _COLUMNS:
            value = info.get(key, "")
            if key == "age":
                value = _age(value)
            cells.append(fmt % (value,))
        lines.append("  " + " ".join(cells) + " " + str(info.get("cmdline", "")))
    return "\n".join(lines)


command = Stats()
