from circus.commands.base import Command


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

    async def execute(self, arbiter, props):
        if "name" in props:
            watcher = self.watcher(arbiter, props)
            return {"pids": sorted(watcher.processes)}
        return {"watchers": sorted(w.name for w in arbiter.watchers)}

    def console_msg(self, msg):
        if msg.get("status") != "ok":
            return msg.get("reason", "error")
        items = msg.get("watchers", msg.get("pids", []))
        return ",".join(str(i) for i in items)


command = List()
