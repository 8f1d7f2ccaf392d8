from circus.commands.base import Command


class Status(Command):
    """Get the status of a watcher or all watchers

    ZMQ Message
    -----------

    ::

        {"command": "status", "properties": {"name": "<name>"}}

    The response returns the status "active" or "stopped" (or "starting",
    "stopping"), or, without a name, the mapping "statuses" of every watcher.

    Command line
    ------------

    ::

        $ circusctl status [<name>]
        $ circusctl status
        dummy: active
        refuge: stopped
    """

    name = "status"

    async def execute(self, arbiter, props):
        if "name" in props:
            return {"status": self.watcher(arbiter, props).status}
        return {"statuses": arbiter.statuses()}

    def console_msg(self, msg):
        if "statuses" in msg:
            return "\n".join("%s: %s" % (name, status)
                             for name, status in sorted(msg["statuses"].items()))
        return msg.get("status", "error") if "reason" not in msg else msg["reason"]


command = Status()
