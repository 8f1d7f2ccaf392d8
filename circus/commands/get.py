from circus.commands.base import ArgumentError, Command, names, string


class Get(Command):
    """Get the value of specific watcher options

    ZMQ Message
    -----------

    ::

        {"command": "get", "properties": {"keys": ["key1", "key2"], "name": "nameofwatcher"}}

    - keys: list, the option keys whose values you want
    - name: name of the watcher

    The response has the mapping "options" of each key to its value::

        {"status": "ok", "options": {"graceful_timeout": 30.0, "numprocesses": 2},
         "time": 1332202594.754644}

    The keys are the option names of the config file (see `options`).

    Command line
    ------------

    ::

        $ circusctl get <name> <key1> [<key2> ...]
    """

    name = "get"
    spec = {"name": string, "keys": names}
    properties = ["name", "keys"]
    usage = "<name> <key> [<key> ...]"

    def message(self, *args, **opts):
        if len(args) < 2:
            raise ArgumentError("get needs a watcher name and at least one option name")
        return self.make_message(name=args[0], keys=list(args[1:]))

    async def execute(self, arbiter, props):
        from circus.commands.watcheroptions import get_option
        watcher = self.watcher(arbiter, props)
        return {"options": {key: get_option(watcher, key) for key in props["keys"]}}

    def console_msg(self, msg):
        if "options" in msg:
            return "\n".join("%s: %s" % (k, v) for k, v in msg["options"].items())
        return super().console_msg(msg)


command = Get()
