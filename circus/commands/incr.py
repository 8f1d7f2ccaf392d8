from circus.commands.base import ArgumentError, Command, int_arg, integer, string


class Incr(Command):
    """Increment the number of processes in a watcher

    ZMQ Message
    -----------

    ::

        {"command": "incr", "properties": {"name": "<watchername>", "nb": <nbprocess>}}

    The response returns the number of processes in the 'numprocesses'
    property::

        {"status": "ok", "numprocesses": <n>, "time": <timestamp>}

    Without "waiting": true the answer comes as soon as the processes are
    spawned; with it, once they are ready.

    Command line
    ------------

    ::

        $ circusctl incr <name> [<nb>] [--waiting]

    - <name>: name of the watcher
    - <nb>: the number of processes to add (default 1)
    """

    name = "incr"
    spec = {"name": string, "nb": integer(0)}
    properties = ["name"]
    usage = "<name> [<nb>]"
    waits = True
    sign = 1

    def message(self, *args, **opts):
        if not 1 <= len(args) <= 2:
            raise ArgumentError("%s takes a watcher name and an optional number" % self.name)
        nb = int_arg(args[1], "<nb>") if len(args) == 2 else 1
        return self.make_message(name=args[0], nb=nb)

    def validate(self, props):
        super().validate(props)
        props.setdefault("nb", 1)

    def accepted(self, arbiter, props):
        watcher = self.watcher(arbiter, props)
        if watcher.singleton:
            return {"numprocesses": 1}
        return {"numprocesses": max(0, watcher.numprocesses + self.sign * props["nb"])}

    async def execute(self, arbiter, props):
        watcher = self.watcher(arbiter, props)
        if self.sign > 0:
            self.refuse_while_stopping(arbiter, "incr")
            # answered (errno 3) before anything is accepted
            arbiter.check_numprocesses(watcher.name, 1 if watcher.singleton else
                                       watcher.numprocesses + props["nb"],
                                       watcher.max_numprocesses)
        return {"numprocesses": await watcher.incr(props["nb"])}

    def console_msg(self, msg):
        if "numprocesses" in msg:
            return str(msg["numprocesses"])
        return super().console_msg(msg)


command = Incr()
