from circus.commands.base import Command


class Dstats(Command):
    """Get circusd stats

    ZMQ Message
    -----------

    ::

        {"command": "dstats"}

    The response returns the mapping "info" describing circusd's own
    process: pid, cpu, mem, mem_info1, mem_info2, ctime, nice, username,
    cmdline, children, age...

    Command line
    ------------

    ::

        $ circusctl dstats
    """

    name = "dstats"

    async def execute(self, arbiter, props):
        return {"info": arbiter.info()}

    def console_msg(self, msg):
        info = msg.get("info")
        if isinstance(info, dict):
            return "\n".join("%s: %s" % (k, info[k]) for k in sorted(info))
        if info is not None:
            return str(info)
        return super().console_msg(msg)


command = Dstats()
