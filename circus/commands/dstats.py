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
        from circus import heap
        from circus.commands.stats import look
        with heap.paused():  # its children's infos: thousands, gone once sent
            return {"info": arbiter.info(await look())}

    def console_msg(self, msg):
        info = msg.get("info")
        if isinstance(info, dict):
            return "\n".join("%s: %s" % (k, info[k]) for k in sorted(info))
        if info is not None:
            return str(info)
        return super().console_msg(msg)


command = Dstats()
