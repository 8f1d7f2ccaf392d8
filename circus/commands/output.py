from circus.commands.base import ArgumentError, Command, MessageError, int_arg, integer, string

STREAMS = ("stdout", "stderr")
# at most, per ring and per reply: circusd answers with what its rings hold
# already (4 KiB per stream of a live process), so a reply costs what it
# carries and nothing is kept for anybody between two requests
MAX_LINES = 200
DEFAULT_LINES = 20
REPLY_BYTES = 64 * 1024


# the kinds of its properties (see circus.commands.base)
def _streams(key, value):
    """stdout and/or stderr: a list of them, or one alone."""
    chosen = [value] if isinstance(value, str) else value
    if not isinstance(chosen, list) or not chosen or \
            not all(isinstance(s, str) and s in STREAMS for s in chosen):
        raise MessageError("property %r must be a list of stdout and/or stderr" % key)
    return tuple(s for s in STREAMS if s in chosen)


def _lines(key, value):
    lines = integer(0)(key, value)
    if lines > MAX_LINES:
        raise MessageError("property %r must be at most %d" % (key, MAX_LINES))
    return lines


def _cursor(key, value):
    """The cursor of an earlier reply: pid -> stream -> offset."""
    refused = MessageError("property %r must be the cursor of an earlier reply "
                           "(pid -> stream -> offset)" % key)
    if not isinstance(value, dict):
        raise refused
    for pid, offsets in value.items():
        if not (pid.isascii() and pid.isdigit()) or not isinstance(offsets, dict):
            raise refused
        for stream, offset in offsets.items():
            if stream not in STREAMS or isinstance(offset, bool) or \
                    not isinstance(offset, int) or offset < 0:
                raise refused
    return value


class Output(Command):
    """Get the recent output of a watcher's processes

    circusd keeps the last 4 KiB each live process wrote on stdout and on
    stderr. This command reads them: the last lines, or what was written
    since a cursor (follow mode).

    ZMQ Message
    -----------

    ::

        {
            "command": "output",
            "properties": {
                "name": "<watcher>",
                "pid": <pid>,                   (optional: one process)
                "streams": ["stdout", "stderr"],  (optional: both by default)
                "lines": <n>,                   (optional)
                "cursor": <cursor>              (optional: follow mode)
            }
        }

    Without a cursor, the answer holds the last "lines" lines (20 by
    default, at most 200) of each stream of each process::

        {"status": "ok", "name": "web",
         "output": [{"pid": 123, "wid": 1, "stream": "stderr",
                     "lines": ["GET / 200", ...]}, ...],
         "cursor": {"123": {"stdout": 0, "stderr": 4096}}}

    Given back as "cursor", the cursor gets what was written since (at most
    "lines" per stream, 200 by default): the newest of it when there is
    more, each entry then saying how many bytes it leaves out ("skipped":
    the ring turned since, or the bounds), and a new cursor. A process the
    cursor does not know is read from its start. A reply carries at most
    64 KiB of lines, shared among the streams read. Only whole lines are
    sent; bytes that are not UTF-8 come as U+FFFD.

    Command line
    ------------

    ::

        $ circusctl output <name> [<pid>] [--lines N] [--stream stdout|stderr] [--follow]

    - <name>: the watcher
    - <pid>: only this process
    - --lines N: how many lines per stream (20)
    - --stream: stdout or stderr only
    - --follow: keep printing what they write, until interrupted

    Each line is printed as ``name[pid] stream | text``, with terminal
    control sequences removed.
    """

    name = "output"
    spec = {"name": string, "pid": integer(1), "streams": _streams, "lines": _lines,
            "cursor": _cursor}
    properties = ["name"]
    usage = "<name> [<pid>]"
    options = [("lines", None, "lines per stream (default %d, at most %d)"
                % (DEFAULT_LINES, MAX_LINES)),
               ("stream", None, "only this stream", list(STREAMS)),
               ("follow", False, "keep printing what the processes write (Ctrl-C stops)")]
    # circusctl --follow asks again with the reply's cursor (Runner.follow)
    follows = True
    follow_interval = 0.5

    def message(self, *args, **opts):
        if not 1 <= len(args) <= 2:
            raise ArgumentError("output takes a watcher name and an optional pid")
        props = {"name": args[0]}
        if len(args) == 2:
            props["pid"] = int_arg(args[1], "<pid>")
        if opts.get("lines") is not None:
            props["lines"] = int_arg(opts["lines"], "--lines")
        if opts.get("stream"):
            props["streams"] = [opts["stream"]]
        return self.make_message(**props)

    def validate(self, props):
        super().validate(props)
        props["streams"] = props.get("streams", STREAMS)
        if "lines" not in props:
            props["lines"] = MAX_LINES if "cursor" in props else DEFAULT_LINES

    async def execute(self, arbiter, props):
        watcher = self.watcher(arbiter, props)
        if props.get("pid") is not None:
            self.process(watcher, props["pid"])
        if props.get("cursor") is not None:
            read = watcher.output_since(props["cursor"], props.get("pid"), props["streams"],
                                        props["lines"], REPLY_BYTES)
        else:
            read = watcher.output_tail(props["lines"], props.get("pid"), props["streams"],
                                       REPLY_BYTES)
        return dict(read, name=watcher.name)

    def follow_message(self, msg, reply):
        """The request that gets what was written after reply."""
        props = dict(msg.get("properties") or {}, cursor=reply.get("cursor") or {})
        props.pop("lines", None)
        return dict(msg, properties=props)

    def console_msg(self, msg):
        if "output" not in msg:
            return super().console_msg(msg)
        from circus.util import printable
        lines = []
        name = msg.get("name", "")
        for entry in msg["output"]:
            head = "%s[%s] %s |" % (name, entry.get("pid"), entry.get("stream"))
            if entry.get("skipped"):
                lines.append("%s ... %d bytes skipped" % (head, entry["skipped"]))
            lines.extend("%s %s" % (head, printable(line)) for line in entry.get("lines", ()))
        return "\n".join(lines)


command = Output()
