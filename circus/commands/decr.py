from circus.commands.incr import Incr


class Decr(Incr):
    """Decrement the number of processes in a watcher

    The processes that go are stopped gracefully, the oldest first.

    ZMQ Message
    -----------

    ::

        {"command": "decr", "properties": {"name": "<watchername>", "nb": <nbprocess>}}

    The response returns the number of processes in the 'numprocesses'
    property::

        {"status": "ok", "numprocesses": <n>, "time": <timestamp>}

    Without "waiting": true the answer comes once the processes are told to
    stop; with it, once they have exited.

    Command line
    ------------

    ::

        $ circusctl decr <name> [<nb>] [--waiting]

    - <name>: name of the watcher
    - <nb>: the number of processes to remove (default 1)
    """

    name = "decr"
    sign = -1

    async def execute(self, arbiter, props):
        watcher = self.watcher(arbiter, props)
        return {"numprocesses": await watcher.decr(props["nb"])}


command = Decr()
