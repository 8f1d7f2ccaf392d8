from circus.commands.base import ArgumentError, Command, string


class List(Command):
    """Get list of watchers or processes in a watcher

    ZMQ Message
    -----------

    To get the list of all the watchers::

        {"command": "list"}

    To get the list of active processes in a watcher::

        {"command": "list", "properties": {"name": "nameofwatcher"}}

    The response returns the list asked: the mapping returned is either
    'watchers' or 'pids' depending on the request.

    Command line
    ------------

    ::

        $ circusctl list [<name>]
    """

    name = "list"
    spec = {"name": string}
    usage = "[<name>]"

    def message(self, *args, **opts):
        if len(args) > 1:
            raise ArgumentError("list takes at most one watcher name")
        return self.make_message(name=args[0] if args else None)

    async def execute(self, arbiter, props):
        if "name" in props:
            watcher = self.watcher(arbiter, props)
            return {"pids": sorted(watcher.processes)}
        return {"watchers": sorted(w.name for w in arbiter.watchers)}

    def console_msg(self, msg):
        if msg.get("status") != "ok":
            return self.console_error(msg)
        items = msg.get("watchers", msg.get("pids", []))
        return ",".join(str(i) for i in items)


command = List()
