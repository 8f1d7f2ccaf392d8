from circus.commands.start import Start


class Stop(Start):
    """Stop the arbiter or a watcher

    Each process gets the watcher's stop_signal, then SIGKILL if it has not
    exited after graceful_timeout ("graceful": false: SIGKILL at once).
    circusd keeps running: `quit` stops it.

    ZMQ Message
    -----------

    ::

        {"command": "stop", "properties": {"name": "<name>", "match": "simple"}}

    The response returns the status "ok". With a name, that watcher is
    stopped; without, every watcher is. "match" may be "glob" or "regex",
    making the name a pattern (on lower-case names; a regex matches from
    the start of the name); the response then lists the "watchers" it
    matched.

    Command line
    ------------

    ::

        $ circusctl stop [<name>] [--match=simple|glob|regex] [--waiting]
    """

    name = "stop"
    starts = False

    def validate(self, props):
        super().validate(props)
        props["graceful"] = self.bool_prop(props, "graceful", True)

    async def on_arbiter(self, arbiter, props):
        await arbiter.stop_watchers()

    async def on_watcher(self, watcher, props):
        await watcher.stop(graceful=props["graceful"])


command = Stop()
