from circus.commands.base import ArgumentError, Command, MessageError, anything, mapping, string


class Set(Command):
    """Set a watcher option

    The options are validated exactly as in the config file. numprocesses
    resizes the watcher; options that change how processes are spawned (cmd,
    args, env, uid, gid, working_dir, shell, rlimit_*...) apply to new
    processes, so an active watcher is reloaded gracefully; the others
    (graceful_timeout, max_age, max_retry, priority...) take effect at once.
    A `watcher.<name>.updated` event reports the change.

    ZMQ Message
    -----------

    ::

        {
            "command": "set",
            "properties": {
                "name": "nameofwatcher",
                "options": {"key1": "val1", "key2": "val2"}
            }
        }

    ("key": ..., "value": ... instead of "options" sets one option.)

    The response returns the status "ok". See the command `options` for the
    keys.

    Command line
    ------------

    ::

        $ circusctl set <name> <key1> <value1> [<key2> <value2> ...] [--waiting]
    """

    name = "set"
    spec = {"name": string, "options": mapping, "key": string, "value": anything}
    properties = ["name"]
    usage = "<name> <key> <value> [<key> <value> ...]"
    waits = True

    def message(self, *args, **opts):
        if len(args) < 3 or len(args) % 2 != 1:
            raise ArgumentError("set needs a watcher name and pairs of option and value")
        options = dict(zip(args[1::2], args[2::2]))
        return self.make_message(name=args[0], options=options)

    def validate(self, props):
        super().validate(props)
        if "options" not in props:
            if "key" not in props or "value" not in props:
                raise MessageError("missing property 'options'")
            props["options"] = {props["key"]: props["value"]}
        from circus.commands.watcheroptions import convert_options
        # all of them or none: a bad value must not leave half the options set
        props["_converted"] = convert_options(props["options"])

    async def execute(self, arbiter, props):
        from circus.commands.watcheroptions import apply_options, check_options
        watcher = self.watcher(arbiter, props)
        converted = props["_converted"]
        check_options(watcher, converted, {n.lower() for n in arbiter.sockets})
        if "numprocesses" in converted:
            # answered (errno 3) before anything is accepted
            arbiter.check_numprocesses(
                watcher.name, 1 if watcher.singleton else converted["numprocesses"],
                converted.get("max_numprocesses", watcher.max_numprocesses))
        await apply_options(watcher, dict(props["_converted"]))
        return {}


command = Set()
