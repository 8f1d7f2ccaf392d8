from circus.commands.base import Command, MessageError, names, short


class GlobalOptions(Command):
    """Get the arbiter options

    ZMQ Message
    -----------

    ::

        {"command": "globaloptions", "properties": {"keys": ["endpoint"]}}

    "keys" (or the single "option") is optional: without it every option is
    returned. The response has the mapping "options"::

        {"status": "ok", "options": {"check_delay": 1, ...}, "time": 1332202594.754644}

    Option keys are endpoint (the controller ZMQ endpoint), pubsub_endpoint,
    stats_endpoint, check_delay, warmup_delay, httpd, httpd_host,
    httpd_port, debug, stream_backend, numwatchers, numprocesses.

    Command line
    ------------

    ::

        $ circusctl globaloptions [<key> ...]
    """

    name = "globaloptions"
    usage = "[<key> ...]"
    spec = {"keys": names, "option": names}

    def message(self, *args, **opts):
        return self.make_message(keys=list(args) if args else None)

    async def execute(self, arbiter, props):
        options = arbiter.get_arbiter_options()
        keys = props.get("keys", props.get("option"))
        if keys is None:
            return {"options": options}
        unknown = [k for k in keys if k not in options]
        if unknown:
            raise MessageError("unknown option %r" % short(unknown[0]))
        return {"options": {k: options[k] for k in keys}}

    def console_msg(self, msg):
        if "options" in msg:
            return "\n".join("%s: %s" % (k, v) for k, v in sorted(msg["options"].items()))
        return super().console_msg(msg)


command = GlobalOptions()
