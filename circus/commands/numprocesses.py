from circus.commands.base import ArgumentError, Command, string


class NumProcesses(Command):
    """Get the number of processes

    ZMQ Message
    -----------

    ::

        {"command": "numprocesses", "properties": {"name": "<watchername>"}}

    The response returns the number of processes in the 'numprocesses'
    property::

        {"status": "ok", "numprocesses": <n>, "time": <timestamp>}

    With a name: the number of processes the watcher is set to run; without:
    the number of processes running in all watchers.

    Command line
    ------------

    ::

        $ circusctl numprocesses [<name>]
    """

    name = "numprocesses"
    spec = {"name": string}
    usage = "[<name>]"

    def message(self, *args, **opts):
        if len(args) > 1:
            raise ArgumentError("numprocesses takes at most one watcher name")
        return self.make_message(name=args[0] if args else None)

    async def execute(self, arbiter, props):
        if "name" in props:
            return {"numprocesses": self.watcher(arbiter, props).numprocesses}
        return {"numprocesses": arbiter.numprocesses()}

    def console_msg(self, msg):
        if "numprocesses" in msg:
            return str(msg["numprocesses"])
        return super().console_msg(msg)


command = NumProcesses()
