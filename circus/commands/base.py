"""What every command shares: errors, validation, the run protocol."""


class errors:
    INVALID_JSON = 1
    UNKNOWN_COMMAND = 2
    INVALID_MESSAGE = 3
    OS_ERROR = 4
    COMMAND_ERROR = 5
    BAD_DATA = 6


class CommandError(Exception):
    """A failure answered as {"status": "error", "reason": ..., "errno": ...}."""

    def __init__(self, errno, reason):
        super().__init__(reason)
        self.errno = errno
        self.reason = reason

    def reply(self):
        return {"status": "error", "reason": self.reason, "errno": self.errno}


class MessageError(Exception):
    """The request is malformed (errno 3)."""


class Command:
    """A command: `name`, required `properties`, `validate`, `execute`,
    `console_msg`; its docstring is its circusctl help."""

    name = ""
    properties = []
    # operations that may take long: unless the request says "waiting": true,
    # the reply is sent once the operation has been accepted
    waits = False

    def validate(self, props):
        for prop in self.properties:
            if prop not in props:
                raise MessageError("missing property %r" % prop)

    async def run(self, arbiter, props):
        if self.waits and not props.get("waiting", False):
            import asyncio
            task = asyncio.get_running_loop().create_task(self.execute(arbiter, props))
            # errors raised before the first await still reach the client
            await asyncio.sleep(0)
            if task.done():
                return task.result()
            task.add_done_callback(_log_failure)
            return {}
        return await self.execute(arbiter, props)

    async def execute(self, arbiter, props):
        raise NotImplementedError

    def console_msg(self, msg):
        if msg.get("status") == "ok":
            return "ok"
        return msg.get("reason", "error")

    # helpers --------------------------------------------------------------
    @staticmethod
    def watcher(arbiter, props, key="name"):
        name = props.get(key)
        if not isinstance(name, str):
            raise MessageError("property %r must be a watcher name" % key)
        try:
            return arbiter.get_watcher(name)
        except KeyError:
            raise MessageError("program %s not found" % name) from None

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


def _log_failure(task):
    if not task.cancelled() and task.exception() is not None:
        import logging
        logging.getLogger("circus").error("command failed", exc_info=task.exception())
