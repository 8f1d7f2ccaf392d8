from circus.commands.base import ArgumentError, Command, string


class Status(Command):
    """Get the status of a watcher or all watchers

    ZMQ Message
    -----------

    ::

        {"command": "status", "properties": {"name": "<name>"}}

    The response returns the status "active" or "stopped", "starting" while
    a start spawns the watcher's processes and waits for them to be ready,
    "stopping" while its processes are being stopped (circus.states); or,
    without a name, the mapping "statuses" of every watcher.

    Command line
    ------------

    ::

        $ circusctl status [<name>]
        $ circusctl status
        dummy: active
        refuge: stopped
    """

    name = "status"
    spec = {"name": string}
    usage = "[<name>]"

    def message(self, *args, **opts):
        if len(args) > 1:
            raise ArgumentError("status takes at most one watcher name")
        return self.make_message(name=args[0] if args else None)

    async def execute(self, arbiter, props):
        if "name" in props:
            return {"status": self.watcher(arbiter, props).status}
        return {"statuses": arbiter.statuses()}

    def console_msg(self, msg):
        if "statuses" in msg:
            return "\n".join("%s: %s" % (name, status)
                             for name, status in sorted(msg["statuses"].items()))
        if "reason" in msg:
            return self.console_error(msg)
        return msg.get("status", "error")


command = Status()
