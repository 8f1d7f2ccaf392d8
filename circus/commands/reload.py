from circus.commands.base import ArgumentError, Command, boolean, string


class Reload(Command):
    """Reload the arbiter or a watcher

    Replaces the processes of a watcher (or of every watcher) with new ones.
    The new processes start first, and an old one is stopped only once a new
    one is ready, so a watcher serving a socket never stops serving. With
    "sequential", processes are replaced one at a time. If the watcher has
    send_hup, its processes get SIGHUP instead. Stopping an old process
    sends stop_signal, waits up to graceful_timeout, then SIGKILL
    ("graceful": false: SIGKILL at once).

    ZMQ Message
    -----------

    ::

        {
            "command": "reload",
            "properties": {"name": "<name>", "graceful": true, "sequential": false}
        }

    The response returns the status "ok". Without a name, every watcher is
    reloaded, by priority.

    Command line
    ------------

    ::

        $ circusctl reload [<name>] [--terminate] [--sequential] [--waiting]

    - <name>: name of the watcher
    - --terminate: kill the old processes at once (not gracefully)
    - --sequential: replace the processes one after the other
    """

    name = "reload"
    usage = "[<name>]"
    spec = {"name": string, "graceful": boolean, "sequential": boolean}
    options = [("terminate", False, "stop the old processes at once, not gracefully"),
               ("sequential", False, "replace the processes one at a time")]
    waits = True

    def message(self, *args, **opts):
        if len(args) > 1:
            raise ArgumentError("reload takes at most one watcher name")
        return self.make_message(name=args[0] if args else None,
                                 graceful=not opts.get("terminate"),
                                 sequential=bool(opts.get("sequential")))

    def validate(self, props):
        super().validate(props)
        props.setdefault("graceful", True)
        props.setdefault("sequential", False)

    async def execute(self, arbiter, props):
        self.refuse_while_stopping(arbiter, "reload")
        if "name" in props:
            watcher = self.watcher(arbiter, props)
            await watcher.reload(graceful=props["graceful"], sequential=props["sequential"])
        else:
            await arbiter.reload(graceful=props["graceful"], sequential=props["sequential"])
        return {}


command = Reload()
