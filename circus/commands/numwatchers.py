from circus.commands.base import Command


class NumWatchers(Command):
    """Get the number of watchers

    ZMQ Message
    -----------

    ::

        {"command": "numwatchers"}

    The response returns the number of watchers in the 'numwatchers'
    property::

        {"status": "ok", "numwatchers": <n>, "time": <timestamp>}

    Command line
    ------------

    ::

        $ circusctl numwatchers
    """

    name = "numwatchers"

    async def execute(self, arbiter, props):
        return {"numwatchers": arbiter.numwatchers()}

    def console_msg(self, msg):
        if "numwatchers" in msg:
            return str(msg["numwatchers"])
        return super().console_msg(msg)


command = NumWatchers()
