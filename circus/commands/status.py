from circus.commands.base import ArgumentError, Command, stop_report_lines, string


class Status(Command):
    """Get the status of a watcher or all watchers

    ZMQ Message
    -----------

    ::

        {"command": "status", "properties": {"name": "<name>"}}

    The response returns the status "active" or "stopped", "starting" while
    a start spawns the watcher's processes and waits for them to be ready,
    "stopping" while its processes are being stopped (circus.states); or,
    without a name, the mapping "statuses" of every watcher.

    For a stopped watcher it may add "stop_reason" (why it stopped, when
    the stop said: "... gave up after 5 retries") and "last_exits", its
    failed exits since it last started, newest last, each::

        {"pid": 7232, "wid": 1, "exit_code": 2, "time": 1700000000.0,
         "uptime": 0.1, "stderr": ["the last lines", "it wrote on stderr"]}

    Command line
    ------------

    ::

        $ circusctl status [<name>]
        $ circusctl status
        dummy: active
        refuge: stopped
        $ circusctl status web
        stopped
        why: process 7232 exited with 2 after 0.10s; gave up after 5 retries
        last failed exit (4 before it: --json): pid 7232 exited with 2 after 0.1s, at ...
          its stderr ended with:
          | ... [ERROR] circus.worker: cannot import application module 'myapp' ...
    """

    name = "status"
    spec = {"name": string}
    usage = "[<name>]"

    def message(self, *args, **opts):
        if len(args) > 1:
            raise ArgumentError("status takes at most one watcher name")
        return self.make_message(name=args[0] if args else None)

    async def execute(self, arbiter, props):
        if "name" in props:
            watcher = self.watcher(arbiter, props)
            return dict(watcher.stop_report(), status=watcher.status)
        return {"statuses": arbiter.statuses()}

    def console_msg(self, msg):
        if "statuses" in msg:
            return "\n".join("%s: %s" % (name, status)
                             for name, status in sorted(msg["statuses"].items()))
        if "reason" in msg:
            return self.console_error(msg)
        return "\n".join([msg.get("status", "error")] + stop_report_lines(msg))


command = Status()
