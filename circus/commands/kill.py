from circus.commands.base import (
    ArgumentError,
    Command,
    int_arg,
    integer,
    number,
    signal_number,
    string,
)


class Kill(Command):
    """Kill the processes of a watcher, or one of them

    Each process gets the watcher's stop_signal (or "signum"), then SIGKILL
    if it has not exited after graceful_timeout (or "graceful_timeout"; 0
    sends SIGKILL right after the signal). An active watcher replaces the
    processes it lost.

    ZMQ Message
    -----------

    ::

        {
            "command": "kill",
            "properties": {
                "name": <name>,
                "pid": <processid>,
                "signum": <signum>,
                "graceful_timeout": <seconds>
            }
        }

    Only "name" is required; without "pid", every process of the watcher is
    killed.

    Command line
    ------------

    ::

        $ circusctl kill <name> [<pid>] [<signum>] [<graceful_timeout>] [--waiting]
    """

    name = "kill"
    spec = {"name": string, "pid": integer(1), "signum": signal_number,
            "signal": signal_number, "graceful_timeout": number}
    properties = ["name"]
    usage = "<name> [<pid>] [<signum>] [<graceful_timeout>]"
    waits = True

    def message(self, *args, **opts):
        if not 1 <= len(args) <= 4:
            raise ArgumentError("kill takes a watcher name, then an optional pid, "
                                "signal and graceful timeout")
        props = {"name": args[0]}
        if len(args) > 1:
            props["pid"] = int_arg(args[1], "<pid>")
        if len(args) > 2:
            props["signum"] = args[2]
        if len(args) > 3:
            try:
                props["graceful_timeout"] = float(args[3])
            except ValueError:
                raise ArgumentError("<graceful_timeout> must be a number") from None
        return self.make_message(**props)

    def validate(self, props):
        super().validate(props)
        props["signum"] = props.get("signum", props.get("signal"))

    async def execute(self, arbiter, props):
        import asyncio
        watcher = self.watcher(arbiter, props)
        if "pid" in props:
            pids = [self.process(watcher, props["pid"]).pid]
        else:
            pids = [p.pid for p in watcher.live_processes()]
        await asyncio.gather(*(watcher.kill(pid, signum=props["signum"],
                                            graceful_timeout=props.get("graceful_timeout"))
                               for pid in pids))
        return {"pids": pids}


command = Kill()
