from circus.commands.base import Command


class Quit(Command):
    """Quit the arbiter immediately

    Every watcher is stopped gracefully, then circusd exits. From the
    moment circusd receives it, start, restart, reload, add, incr and
    reloadconfig are refused (an error reply, errno 5).

    ZMQ Message
    -----------

    ::

        {"command": "quit", "properties": {"waiting": false}}

    The response returns the status "ok" (with "waiting": true, once every
    process has stopped).

    Command line
    ------------

    ::

        $ circusctl quit [--waiting]
    """

    name = "quit"
    options = [("waiting", False, "answer once every process has stopped")]

    def message(self, *args, **opts):
        msg = super().message(*args)
        if opts.get("waiting"):
            msg["properties"]["waiting"] = True
        return msg

    async def execute(self, arbiter, props):
        import asyncio
        # from now on nothing starts: a plugin reacting to the stops below
        # (a restart, a start) must not bring anything back
        arbiter.prepare_quit()
        if props.get("waiting"):
            await arbiter.stop_watchers()
        # answer first: the reply must leave before the endpoint closes
        asyncio.get_running_loop().call_later(0.05, arbiter.request_quit)
        return {}


command = Quit()
