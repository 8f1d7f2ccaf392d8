"""The command registry: one module per command, imported on first use so
that a client which runs one command imports only that one."""
import importlib
import importlib.util

from circus.commands.base import CommandError, errors, short

# command name -> module under circus.commands
NAMES = ("add", "decr", "dstats", "get", "globaloptions", "incr", "kill", "list", "listen",
         "listsockets", "metrics", "numprocesses", "numwatchers", "options", "output", "quit",
         "reload", "reloadconfig", "restart", "rm", "set", "signal", "start", "stats", "status",
         "stop")

_cache = {}


def available():
    return [n for n in NAMES if _module_exists(n)]


def _module_exists(name):
    return importlib.util.find_spec("circus.commands." + name) is not None


def get_command(name):
    """The command instance for name (case-insensitive); errno 2 if unknown."""
    key = str(name).lower()
    command = _cache.get(key)
    if command is None:
        if key not in NAMES:
            raise CommandError(errors.UNKNOWN_COMMAND, "unknown command: %r" % short(str(name)))
        module = importlib.import_module("circus.commands." + key)
        command = module.command
        _cache[key] = command
    return command
