"""What every command shares: errors, validation, the run protocol, and the
command-line side (turning circusctl arguments into a message).

A command module is imported both by circusd and by circusctl, so keep its
top level light: import asyncio, psutil or circus.config inside the methods
that run in circusd.
"""
from circus.errors import ArgumentError, CommandError, MessageError, errors  # noqa: F401


def bad_data(reason):
    return CommandError(errors.BAD_DATA, reason)


# --- the kinds of property ------------------------------------------------------
# Each command declares its properties in `spec` (name -> kind); a kind is a
# function (name, value) -> the value the command uses, raising MessageError
# (errno 3) that names the property. JSON has one type of number and no
# separate integers: 2.0 is 2; the booleans of the config file ("true",
# "off"...) are booleans here too. null is a value like any other: a
# property that is given must have its kind (a null name would otherwise
# mean "every watcher").

def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong(key, expected, value):
    return MessageError("property %r must be %s, not %s" % (key, expected, _json_type(value)))


def string(key, value):
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)
    return value


def non_empty_string(key, value):
    if not string(key, value).strip():
        raise MessageError("property %r must be a non-empty string" % key)
    return value


def boolean(key, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and len(value) < 8:
        from circus.util import to_bool
        try:
            return to_bool(value)
        except ValueError:
            pass
    raise _wrong(key, "a boolean", value)


def _to_int(value):
    """The integer value is, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and 0 < len(value.strip()) <= 20:
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def integer(minimum=None):
    def convert(key, value):
        number = _to_int(value)
        if number is None:
            raise _wrong(key, "an integer", value)
        if minimum is not None and number < minimum:
            raise MessageError("property %r must be at least %d" % (key, minimum))
        return number
    return convert


def number(key, value):
    """A finite number of seconds, 0 or more."""
    import math
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _wrong(key, "a number", value)
    try:
        result = float(value) if not isinstance(value, str) or len(value) <= 30 else None
    except (ValueError, OverflowError):
        result = None
    if result is None or not math.isfinite(result):
        raise _wrong(key, "a finite number", value)
    if result < 0:
        raise MessageError("property %r must be 0 or more" % key)
    return result


def signal_number(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _wrong(key, "a signal name or number", value)
    if isinstance(value, str) and len(value) > 20:
        raise MessageError("property %r: unknown signal" % key)
    from circus.util import to_signum
    try:
        return to_signum(value)
    except ValueError as exc:
        raise MessageError("property %r: %s" % (key, exc)) from None


def one_of(*choices):
    def convert(key, value):
        if not isinstance(value, str) or value not in choices:
            raise MessageError("property %r must be one of %s" % (key, ", ".join(choices)))
        return value
    return convert


def mapping(key, value):
    if not isinstance(value, dict):
        raise _wrong(key, "an object", value)
    return value


def names(key, value):
    """One name or a list of names: always a list."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(key, "a list of strings", value)
    return value


def text_or_list(key, value):
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(key, "a string or a list of strings", value)
    return value


def anything(key, value):
    return value


MATCH = one_of("simple", "glob", "regex")
# a watcher name pattern (match = glob or regex) is short; a long one is
# either a mistake or an attempt to make circusd compile a huge regex
MAX_PATTERN = 256
# what every command takes: "waiting" asks for the reply once the operation
# is complete (commands that answer at once ignore it)
COMMON = {"waiting": boolean}


def short(text, limit=40):
    """text, cut for an error message: a property name may be a megabyte."""
    return text if len(text) <= limit else text[:limit] + "..."


class Command:
    """A command: `name`, its properties (`spec`, the required ones in
    `properties`), `validate`, `execute`, `console_msg`; its docstring is its
    circusctl help."""

    name = ""
    # every property the command takes, name -> kind (above), besides COMMON;
    # a request with any other property, or one of the wrong kind, is refused
    # (errno 3) before anything is done: a typo must not widen what a stop acts on
    spec = {}
    # the properties that must be given
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
        """Check props against spec and convert them in place; commands add
        what concerns several properties together."""
        kinds = dict(COMMON, **self.spec)
        for key in props:
            if key not in kinds:
                raise MessageError("unknown property %r (%s takes %s)" % (
                    short(key), self.name, ", ".join(sorted(kinds))))
        for prop in self.properties:
            if prop not in props:
                raise MessageError("missing property %r" % prop)
        for key, value in props.items():
            props[key] = kinds[key](key, value)

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
            raise MessageError("program %s not found" % short(name, 100)) from None

    @classmethod
    def matching_watchers(cls, arbiter, props):
        """The watchers that props' "name" designates, by its "match" mode:
        simple (the name, the default), glob or regex (on lower-case names)."""
        match = props.get("match", "simple")
        if match == "simple":
            return [cls.watcher(arbiter, props)]
        pattern = props["name"]
        if len(pattern) > MAX_PATTERN:
            raise MessageError("property 'name': a pattern of more than %d characters"
                               % MAX_PATTERN)
        import re
        try:
            if match == "glob":
                import fnmatch
                regex = re.compile(fnmatch.translate(pattern.lower()))
            else:
                regex = re.compile(pattern.lower())
        except (re.error, RecursionError, OverflowError) as exc:
            raise MessageError("invalid %s pattern %r: %s" % (match, short(pattern),
                                                              short(str(exc), 80))) from None
        return [w for w in arbiter.iter_watchers() if regex.match(w.name.lower())]

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


