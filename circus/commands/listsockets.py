from circus.commands.base import Command


class ListSockets(Command):
    """Get the list of sockets

    ZMQ Message
    -----------

    ::

        {"command": "listsockets"}

    The response has the list "sockets" of mappings with the keys name, fd,
    family, type, backlog, and host and port (path for a unix socket),
    sorted by fd.

    Command line
    ------------

    ::

        $ circusctl listsockets
        3:web 127.0.0.1:8080
    """

    name = "listsockets"

    async def execute(self, arbiter, props):
        sockets = [s.info() for s in arbiter.sockets.values()]
        sockets.sort(key=lambda s: (s["fd"] is None, s["fd"] or 0, s["name"]))
        return {"sockets": sockets}

    def console_msg(self, msg):
        if "sockets" in msg:
            lines = []
            for sock in msg["sockets"]:
                where = ("unix:%s" % sock["path"]) if sock.get("path") else \
                    "%s:%s" % (sock.get("host"), sock.get("port"))
                lines.append("%s:%s %s" % (sock.get("fd"), sock.get("name"), where))
            return "\n".join(lines)
        return super().console_msg(msg)


command = ListSockets()
