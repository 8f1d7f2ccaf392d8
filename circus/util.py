"""Small helpers shared by every layer: conversions, names, substitution."""
import grp
import importlib
import os
import pwd
import re
import signal
import sys

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_PUBSUB = "tcp://127.0.0.1:5556"
DEFAULT_STATS = "tcp://127.0.0.1:5557"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", "none", ""}


def to_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("%r is not a boolean (use true or false)" % (value,))


def to_signum(value):
    """Accept 15, '15', 'TERM', 'SIGTERM', 'sigterm'."""
    if isinstance(value, signal.Signals):
        return int(value)
    if isinstance(value, int):
        return signal.Signals(value).value
    text = str(value).strip().upper()
    if text.isdigit():
        return signal.Signals(int(text)).value
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text].value
    except KeyError:
        raise ValueError("%r is not a signal name or number" % (value,)) from None


def to_uid(value):
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError("no such user: %r" % text) from None


def to_gid(value):
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError("no such group: %r" % text) from None


def resolve_name(dotted, default_module=None):
    """Import 'pkg.mod:attr.sub' or 'pkg.mod.attr.sub'; a bare name is looked
    up in default_module first (so 'FileStream' means circus.stream.FileStream).
    Without a colon the longest importable prefix is the module."""
    if callable(dotted) and not isinstance(dotted, str):
        return dotted
    name = str(dotted).strip()
    if default_module is not None and "." not in name and ":" not in name:
        module = importlib.import_module(default_module)
        if hasattr(module, name):
            return getattr(module, name)
    missing = None  # why the longest prefix was not a module
    if ":" in name:
        module_name, _, attr = name.partition(":")
        module = importlib.import_module(module_name)
    else:
        parts = name.split(".")
        module = None
        for i in range(len(parts) - 1, 0, -1):
            module_name, attr = ".".join(parts[:i]), ".".join(parts[i:])
            try:
                module = importlib.import_module(module_name)
                break
            except ModuleNotFoundError as exc:
                # only "this prefix is not a module" means try a shorter one;
                # an import failing inside the module must surface
                if not exc.name or not (module_name == exc.name
                                        or module_name.startswith(exc.name + ".")):
                    raise
                missing = missing or exc
        if module is None:
            if missing is not None:
                raise missing
            raise ImportError("%r is not a dotted name (module.attribute)" % name)
    obj = module
    for part in attr.split(".") if attr else ():
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if missing is not None:
                raise missing from None
            raise ImportError("module %r has no attribute %r" % (module_name, attr)) from None
    return obj


def which(program, path=None):
    """Find program on PATH, then beside the running interpreter so that a
    circusd started from a virtualenv finds that virtualenv's scripts."""
    if os.sep in program:
        return program
    search = path if path is not None else os.environ.get("PATH", os.defpath)
    search = search + os.pathsep + os.path.dirname(sys.executable)
    # every spawn looks its program up: a search stats each directory of
    # PATH, a check of the last answer is one access()
    found = _found.get((program, search))
    if found is not None and os.access(found, os.X_OK):
        return found
    import shutil  # here: circusctl imports this module and never needs it
    found = shutil.which(program, path=search)
    if found is None:
        return program
    if len(_found) >= 256:
        _found.clear()
    _found[(program, search)] = found
    return found


_found = {}  # (program, search path) -> what which() found there last


# $(circus.x.y) in any case; the legacy $(WID), $WID and $(ENV.X) of the
# original documentation; and ${socket:NAME} from the socket section docs.
_SUBST = re.compile(
    r"\$\(\s*(circus\.[\w.\-]+|wid|env\.[\w\-]+)\s*\)|\$\{socket:([\w.\-]+)\}|\$WID\b",
    re.IGNORECASE,
)


def find_variables(text):
    """Return the lower-cased names referenced in text ('sockets.web', 'wid'...)."""
    names = []
    for match in _SUBST.finditer(text or ""):
        names.append(_variable_name(match))
    return names


def find_references(text):
    """(lower-cased name, the text as written) of every variable in text."""
    return [(_variable_name(match), match.group(0)) for match in _SUBST.finditer(text or "")]


def _variable_name(match):
    name, socket_name = match.group(1), match.group(2)
    if socket_name:
        return "sockets." + socket_name.lower()
    if name is None:
        return "wid"
    name = name.lower()
    return name[len("circus."):] if name.startswith("circus.") else name


def substitute(text, variables):
    """Replace variables in text. variables maps lower-cased names
    ('wid', 'sockets.web', 'env.home', 'numprocesses') to values; an unknown
    name raises KeyError naming it."""
    if not text or "$" not in text:
        return text

    def repl(match):
        name = _variable_name(match)
        try:
            return str(variables[name])
        except KeyError:
            raise KeyError("unknown variable $(circus.%s)" % name) from None

    return _SUBST.sub(repl, text)


def env_variables(env):
    return {"env." + k.lower(): v for k, v in env.items()}


# terminal control sequences: CSI (colours, cursor moves), OSC (titles,
# links), the string controls (DCS, SOS, PM, APC), other escapes, 8-bit CSI
_ESCAPES = re.compile(r"""
    \x1b\[[0-?]*[ -/]*[@-~]?
  | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?
  | \x1b[PX^_][^\x1b]*(?:\x1b\\)?
  | \x1b[ -/]*[0-~]?
  | \x9b[0-?]*[ -/]*[@-~]?
""", re.VERBOSE)
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text):
    """text without terminal control sequences or control characters (tabs
    are kept): what a process wrote, made safe to show in a terminal and
    plain in a page (colour codes would show as garbage there)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def bytes2human(n):
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return "%.0f%s" % (n / size, unit) if n / size >= 10 else "%.1f%s" % (n / size, unit)
    return "%dB" % n



async def wait_event(event, timeout):
    """Wait for an asyncio.Event at most `timeout` seconds; True if it was set.

    asyncio.timeout, never asyncio.wait_for: on Python 3.11 wait_for swallows a
    cancel that lands as its awaitable completes, and a task that loses its
    cancel hangs whoever gathers it at shutdown.
    """
    import asyncio
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False


def parse_listen_address(text):
    """(host, port) of "HOST:PORT" or "[IPV6]:PORT", the form of
    `[circus] prometheus`; ValueError saying what is wrong."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("%r is not HOST:PORT (like 127.0.0.1:9102, or 0.0.0.0:9102 for every "
                         "interface)" % text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("%r: write an IPv6 address in brackets, [::1]:9102" % text)
    try:
        number = int(port)
    except ValueError:
        raise ValueError("%r: the port %r is not a number" % (text, port)) from None
    if not 0 < number < 65536:
        raise ValueError("%r: the port must be between 1 and 65535" % text)
    return host, number
