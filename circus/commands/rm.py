from circus.commands.base import ArgumentError, Command, MessageError, boolean, string


class Rm(Command):
    """Remove a watcher

    The watcher's processes are stopped gracefully, then the watcher is
    removed.

    ZMQ Message
    -----------

    ::

        {"command": "rm", "properties": {"name": "nameofwatcher"}}

    The response returns the status "ok".

    Command line
    ------------

    ::

        $ circusctl rm <name> [--waiting]
    """

    name = "rm"
    # nostop: the original Circus could leave the processes running
    spec = {"name": string, "nostop": boolean}
    properties = ["name"]
    usage = "<name>"
    waits = True

    def message(self, *args, **opts):
        if len(args) != 1:
            raise ArgumentError("rm takes one watcher name")
        return self.make_message(name=args[0])

    def validate(self, props):
        super().validate(props)
        if props.get("nostop"):
            raise MessageError("nostop is not supported: rm stops the watcher's processes")

    async def execute(self, arbiter, props):
        watcher = self.watcher(arbiter, props)
        await arbiter.rm_watcher(watcher.name)
        return {}


command = Rm()
