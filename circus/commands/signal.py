from circus.commands.base import (
    ArgumentError,
    Command,
    MessageError,
    boolean,
    int_arg,
    integer,
    signal_number,
    string,
)


class Signal(Command):
    """Send a signal

    Sends a signal to all the processes of a watcher, to one of them, to
    their children, or to both.

    ZMQ Message
    -----------

    To all the processes of a watcher::

        {"command": "signal", "properties": {"name": <name>, "signum": <signal>}}

    To one process::

        {"command": "signal", "properties": {"name": <name>, "pid": <pid>, "signum": <signal>}}

    "children": true sends the signal to the children of the process (or of
    every process) instead of the process itself; "child_pid": <pid> to one
    child only; "recursive": true to the process and all its descendants.
    "signum" (or "signal") is a number or a name (9, "KILL", "SIGKILL").

    The response returns the status "ok" and the list "pids" of the
    processes it signalled (or whose children it signalled).

    Command line
    ------------

    ::

        $ circusctl signal <name> [<pid>] [<child_pid>] [--children] [--recursive] <signal>

    - <name>: the name of the watcher
    - <pid>: integer, the process id
    - <child_pid>: the pid of a child of that process
    - <signal>: the signal number or name
    - --children: send the signal to the children, not the processes
    - --recursive: send the signal to the processes and all their children
    """

    name = "signal"
    spec = {"name": string, "signum": signal_number, "signal": signal_number,
            "pid": integer(1), "process": integer(1), "child_pid": integer(1),
            "childpid": integer(1), "children": boolean, "recursive": boolean}
    properties = ["name"]
    usage = "<name> [<pid>] [<child_pid>] <signal>"
    options = [("children", False, "signal the children of the process(es) instead"),
               ("recursive", False, "signal the process(es) and all their children")]

    def message(self, *args, **opts):
        if not 2 <= len(args) <= 4:
            raise ArgumentError("signal takes a watcher name, an optional pid and "
                                "child pid, and a signal")
        props = {"name": args[0], "signum": args[-1]}
        if len(args) >= 3:
            props["pid"] = int_arg(args[1], "<pid>")
        if len(args) == 4:
            props["child_pid"] = int_arg(args[2], "<child_pid>")
        if opts.get("children"):
            props["children"] = True
        if opts.get("recursive"):
            props["recursive"] = True
        return self.make_message(**props)

    def validate(self, props):
        super().validate(props)
        props["signum"] = props.get("signum", props.get("signal"))
        if props["signum"] is None:
            raise MessageError("missing property 'signum'")
        props.setdefault("children", False)
        props.setdefault("recursive", False)
        child = props.get("child_pid", props.get("childpid"))
        if child is not None and props.get("pid", props.get("process")) is None:
            raise MessageError("property 'pid' is needed with 'child_pid'")

    async def execute(self, arbiter, props):
        watcher = self.watcher(arbiter, props)
        pid = props.get("pid", props.get("process"))
        if pid is not None:
            self.process(watcher, pid)
        child_pid = props.get("child_pid", props.get("childpid"))
        try:
            pids = await watcher.signal(props["signum"], pid=pid, children=props["children"],
                                        recursive=props["recursive"], child_pid=child_pid)
        except ValueError as exc:  # child_pid is not a child of pid
            raise MessageError(str(exc)) from None
        return {"pids": pids}


command = Signal()
