from circus.commands.base import Command


class Quit(Command):
    """Quit the arbiter immediately

    Every watcher is stopped gracefully, then circusd exits.

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
        if props.get("waiting"):
            await arbiter.stop_watchers()
        # answer first: the reply must leave before the endpoint closes
        asyncio.get_running_loop().call_later(0.05, arbiter.request_quit)
        return {}


command = Quit()
