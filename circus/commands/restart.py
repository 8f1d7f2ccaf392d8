from circus.commands.start import Start


class Restart(Start):
    """Restart the arbiter or a watcher

    Stops the processes of a watcher (or of every watcher), then starts new
    ones. `reload` replaces them without a gap instead.

    ZMQ Message
    -----------

    ::

        {"command": "restart", "properties": {"name": "<name>", "match": "simple"}}

    The response returns the status "ok". Without a name, every watcher is
    restarted. "match" may be "glob" or "regex", making the name a pattern
    (see `start`).

    Command line
    ------------

    ::

        $ circusctl restart [<name>] [--match=simple|glob|regex] [--waiting]
    """

    name = "restart"

    async def on_arbiter(self, arbiter, props):
        await arbiter.restart()

    async def on_watcher(self, watcher, props):
        started = await watcher.restart()
        if started is False:
            self.refuse_while_stopping(watcher.arbiter, self.name)
            if watcher.refusal and watcher.is_active():
                from circus.commands.stop import refused
                raise refused(watcher)


command = Restart()
