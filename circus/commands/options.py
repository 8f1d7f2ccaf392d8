from circus.commands.base import ArgumentError, Command, string


class Options(Command):
    """Get the value of all options for a watcher

    ZMQ Message
    -----------

    ::

        {"command": "options", "properties": {"name": "nameofwatcher"}}

    The response has the mapping "options" of every option of the watcher
    (names as in the config file) to its value::

        {"status": "ok", "options": {"numprocesses": 1, "graceful_timeout": 30.0, ...},
         "time": 1332202594.754644}

    Among them: numprocesses, warmup_delay, working_dir, uid, gid, send_hup,
    shell, cmd, args, env, copy_env, copy_path, max_retry, graceful_timeout,
    priority, singleton, use_sockets, max_age, max_age_variance, stop_signal,
    stop_children, autostart, respawn, ready, ready_delay, ready_timeout,
    rlimit_*, hooks.*, stdout_stream.*, stderr_stream.*.

    Command line
    ------------

    ::

        $ circusctl options <name>
    """

    name = "options"
    spec = {"name": string}
    properties = ["name"]
    usage = "<name>"

    def message(self, *args, **opts):
        if len(args) != 1:
            raise ArgumentError("options takes one watcher name")
        return self.make_message(name=args[0])

    async def execute(self, arbiter, props):
        from circus.commands.watcheroptions import all_options
        return {"options": all_options(self.watcher(arbiter, props))}

    def console_msg(self, msg):
        if "options" in msg:
            return "\n".join("%s: %s" % (k, v) for k, v in sorted(msg["options"].items()))
        return super().console_msg(msg)


command = Options()
