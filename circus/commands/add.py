from circus.commands.base import (
    ArgumentError,
    Command,
    MessageError,
    bad_data,
    boolean,
    mapping,
    non_empty_string,
    text_or_list,
)


class Add(Command):
    """Add a watcher

    This command adds a watcher dynamically to the arbiter. Its options are
    validated exactly like a [watcher:NAME] section of the config file.

    ZMQ Message
    -----------

    ::

        {
            "command": "add",
            "properties": {
                "cmd": "/path/to/commandline --option",
                "name": "nameofwatcher",
                "args": [],
                "options": {},
                "start": false
            }
        }

    - cmd: full command line to execute in a process
    - args: array, arguments passed to the command (optional)
    - name: name of the watcher
    - options: options of the watcher (as in the config file)
    - start: start the watcher after its creation

    The response returns the status "ok".

    Command line
    ------------

    ::

        $ circusctl add [--start] <name> <cmd>

    - <name>: name of the watcher to create
    - <cmd>: full command line to execute in a process (quote it, or give
      the words as separate arguments)
    - --start: start the watcher immediately
    """

    name = "add"
    spec = {"name": non_empty_string, "cmd": non_empty_string, "args": text_or_list,
            "options": mapping, "start": boolean}
    properties = ["name", "cmd"]
    options = [("start", False, "start the watcher immediately")]
    usage = "<name> <cmd>"

    def message(self, *args, **opts):
        if len(args) < 2:
            raise ArgumentError("add needs a name and a command")
        if len(args) == 2:
            cmd = args[1]
        else:
            import shlex
            cmd = shlex.join(args[1:])
        return self.make_message(name=args[0], cmd=cmd, start=bool(opts.get("start")))

    async def execute(self, arbiter, props):
        from circus.errors import ArbiterError, ConfigError, LimitError
        self.refuse_while_stopping(arbiter, "add")
        name = props["name"].strip()
        options = dict(props.get("options") or {})
        if props.get("args") is not None:
            options["args"] = props["args"]
        for key in ("name", "cmd", "start"):
            options.pop(key, None)
        try:
            arbiter.get_watcher(name)
        except KeyError:
            pass
        else:
            raise MessageError("watcher %s already exists" % name)
        try:
            await arbiter.add_watcher(name, props["cmd"], start=props.get("start", False),
                                      **options)
        except LimitError:
            raise  # errno 3, naming the limit
        except ArbiterError as exc:
            raise MessageError(str(exc)) from None
        except (ValueError, ConfigError) as exc:
            raise bad_data(str(exc)) from None
        return {}


command = Add()
