"""What every command shares: errors, validation, the run protocol, and the
command-line side (turning circusctl arguments into a message).

A command module is imported both by circusd and by circusctl, so keep its
top level light: import asyncio, psutil or circus.config inside the methods
that run in circusd.
"""
from circus.errors import ArgumentError, CommandError, MessageError, errors  # noqa: F401


def bad_data(reason):
    return CommandError(errors.BAD_DATA, reason)


class Command:
    """A command: `name`, required `properties`, `validate`, `execute`,
    `console_msg`; its docstring is its circusctl help."""

    name = ""
    properties = []
    # circusctl flags besides the positional arguments: (dest, default, help)
    # or (dest, default, help, choices); a False default makes a switch
    options = []
    # the positional arguments, for circusctl's usage line
    usage = ""
    # operations that may take long: unless the request says "waiting": true,
    # the reply is sent once the operation has been accepted
    waits = False

    # --- circusd side -------------------------------------------------------
    def validate(self, props):
        for prop in self.properties:
            if prop not in props:
                raise MessageError("missing property %r" % prop)

    async def run(self, arbiter, props):
        if self.waits and not props.get("waiting", False):
            import asyncio
            accepted = self.accepted(arbiter, props)
            task = asyncio.get_running_loop().create_task(self.execute(arbiter, props))
            # errors raised before the first await still reach the client
            await asyncio.sleep(0)
            if task.done():
                return task.result()
            arbiter.background.hold(task)
            return accepted
        return await self.execute(arbiter, props)

    def accepted(self, arbiter, props):
        """The reply fields of a waiting command answered before it is done."""
        return {}

    async def execute(self, arbiter, props):
        raise NotImplementedError

    # --- circusctl side -----------------------------------------------------
    @property
    def help(self):
        import textwrap
        doc = self.__doc__ or self.name
        first, _, rest = doc.partition("\n")
        return (first.strip() + "\n" + textwrap.dedent(rest)).strip()

    @property
    def short(self):
        return (self.__doc__ or self.name).strip().splitlines()[0]

    def make_message(self, **props):
        return {"command": self.name,
                "properties": {k: v for k, v in props.items() if v is not None}}

    def message(self, *args, **opts):
        """The request for circusctl's positional args and flags."""
        if args:
            raise ArgumentError("%s takes no arguments" % self.name)
        return self.make_message()

    def build_message(self, args, opts):
        msg = self.message(*args, **opts)
        if self.waits and opts.get("waiting"):
            msg.setdefault("properties", {})["waiting"] = True
        return msg

    def cli_options(self):
        options = list(self.options)
        if self.waits:
            options.append(("waiting", False, "answer only once the operation is complete"))
        return options

    def console_msg(self, msg):
        if msg.get("status") == "ok":
            return "ok"
        return self.console_error(msg)

    def console_error(self, msg):
        return "error: %s" % msg.get("reason", "unknown error")

    # --- helpers for execute ------------------------------------------------
    @staticmethod
    def refuse_while_stopping(arbiter, what):
        """An error reply (errno 5) once circusd is stopping: nothing may be
        started then, or it would outlive the quit."""
        if getattr(arbiter, "stopping", False):
            raise CommandError(errors.COMMAND_ERROR,
                               "circusd is stopping: %s refused" % what)

    @staticmethod
    def watcher(arbiter, props, key="name"):
        name = props.get(key)
        if not isinstance(name, str):
            raise MessageError("property %r must be a watcher name" % key)
        try:
            return arbiter.get_watcher(name)
        except KeyError:
            raise MessageError("program %s not found" % name) from None

    @classmethod
    def matching_watchers(cls, arbiter, props):
        """The watchers that props' "name" designates, by its "match" mode:
        simple (the name, the default), glob or regex (on lower-case names)."""
        match = props.get("match", "simple") or "simple"
        if match == "simple":
            return [cls.watcher(arbiter, props)]
        pattern = props.get("name")
        if not isinstance(pattern, str):
            raise MessageError("property 'name' must be a pattern with match=%s" % match)
        import re
        if match == "glob":
            import fnmatch
            regex = re.compile(fnmatch.translate(pattern.lower()))
        elif match == "regex":
            try:
                regex = re.compile(pattern.lower())
            except re.error as exc:
                raise MessageError("invalid regex %r: %s" % (pattern, exc)) from None
        else:
            raise MessageError("unknown match method %r (simple, glob or regex)" % match)
        return [w for w in arbiter.iter_watchers() if regex.match(w.name.lower())]

    @staticmethod
    def int_prop(props, key, default=None, minimum=None):
        value = props.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise MessageError("property %r must be an integer" % key)
        try:
            value = int(value)
        except ValueError:
            raise MessageError("property %r must be an integer, not %r" % (key, value)) from None
        if minimum is not None and value < minimum:
            raise MessageError("property %r must be at least %d" % (key, minimum))
        return value

    @staticmethod
    def bool_prop(props, key, default=False):
        value = props.get(key, default)
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
        elif isinstance(value, (bool, int)) or value is None:
            return bool(value)
        raise MessageError("property %r must be a boolean, not %r" % (key, value))

    @staticmethod
    def signum_prop(props, *keys, required=True):
        for key in keys:
            if key in props:
                from circus.util import to_signum
                value = props[key]
                if isinstance(value, bool) or not isinstance(value, (int, str)):
                    raise MessageError("property %r must be a signal name or number" % key)
                try:
                    return to_signum(value)
                except ValueError as exc:
                    raise MessageError(str(exc)) from None
        if required:
            raise MessageError("missing property %r" % keys[0])
        return None

    @staticmethod
    def process(watcher, pid):
        try:
            process = watcher.get_process(pid)
        except (TypeError, ValueError):
            raise MessageError("%r is not a process id" % (pid,)) from None
        if process is None:
            raise MessageError("process %s not found in %s" % (pid, watcher.name))
        return process


def stop_report_lines(msg):
    """circusctl's lines for what a reply says of a stopped watcher (see
    Watcher.stop_report): why it stopped, and the end of the stderr of its
    last failed exit (--json shows every exit kept)."""
    lines = []
    if msg.get("stop_reason"):
        lines.append("why: %s" % msg["stop_reason"])
    exits = msg.get("last_exits") or []
    if exits and isinstance(exits[-1], dict):
        import time
        last = exits[-1]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.get("time", 0)))
        more = " (%d before it: --json)" % (len(exits) - 1) if len(exits) > 1 else ""
        lines.append("last failed exit%s: pid %s exited with %s after %.2fs, at %s"
                     % (more, last.get("pid"), last.get("exit_code"), last.get("uptime") or 0,
                        when))
        stderr = last.get("stderr") or []
        lines.append("  its stderr ended with:" if stderr else "  it wrote nothing on stderr")
        lines.extend("  | %s" % line for line in stderr)
    return lines


def int_arg(value, what):
    """A command-line integer, or an ArgumentError naming what it should be."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ArgumentError("%s must be an integer, not %r" % (what, value)) from None


