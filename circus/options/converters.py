"""Converters: each takes what a file, a program or a command gave and
returns the value circus uses, or raises ValueError with a message for the
user (the same message whichever way the value came in)."""
import importlib.util
import math
import os
import re

from circus.options import facts
from circus.util import parse_listen_address, resolve_name, to_bool, to_gid, to_signum, to_uid

# The one boolean vocabulary: true/false, yes/no, on/off, 1/0, y/n, t/f ('',
# 'none': false). It lives in circus.util because streams and plugins, which
# must not import the daemon's options, parse booleans too.
boolean = to_bool


def integer(minimum=None, maximum=None):
    def convert(value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one kind of number: 2.0 and 1e9 are integers
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("%s is not an integer" % _shown(value))
        try:
            number = int(value.strip()) if isinstance(value, str) else value
        except ValueError:
            raise ValueError("%s is not an integer" % _shown(value)) from None
        if minimum is not None and number < minimum:
            raise ValueError("%d is below the minimum of %d" % (number, minimum))
        if maximum is not None and number > maximum:
            raise ValueError("%d is above the maximum of %d" % (number, maximum))
        return number
    return convert


def _shown(value, limit=60):
    """A value in an error message, cut: a client may send a megabyte."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def number(minimum=0.0):
    def convert(value):
        if isinstance(value, bool):
            raise ValueError("%s is not a number" % _shown(value))
        try:
            result = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError("%s is not a number" % _shown(value)) from None
        if not math.isfinite(result):
            # an infinite graceful_timeout would wait forever, a NaN compares false
            raise ValueError("%s is not a finite number" % _shown(value))
        if minimum is not None and result < minimum:
            raise ValueError("%s is below the minimum of %s" % (result, minimum))
        return result
    return convert


def string(value):
    if not isinstance(value, str):
        raise ValueError("%r is not a string" % (value,))
    return value


def optional_string(value):
    """None for nothing or blanks (an empty endpoint means: none)."""
    if value is None:
        return None
    text = string(value).strip()
    return text or None


def listen_address(value):
    """HOST:PORT to listen on, or None for nothing or blanks."""
    text = optional_string(value)
    if text is not None:
        parse_listen_address(text)
    return text


def command(value):
    """cmd: a command line (split like a shell would, at each spawn); that
    it is not blank, the schema checks (a required option)."""
    _split(string(value))
    return value


# what libzmq binds (tcp:// and ipc:// are what circusd's clients speak)
ENDPOINT_SCHEMES = ("tcp", "ipc", "inproc", "pgm", "epgm", "tipc", "vmci", "ws", "wss")


def endpoint(value):
    """An optional ZeroMQ endpoint (empty: none): a scheme libzmq knows, and
    for tcp:// a port (or *), so that a typo fails here, not at the bind
    (or, on a reload, never)."""
    text = optional_string(value)
    if text is None:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ENDPOINT_SCHEMES or not rest:
        raise ValueError("%s is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)"
                         % _shown(text))
    if scheme.lower() == "tcp":
        port = rest.rpartition(":")[2]
        if ":" not in rest or not (port.isdigit() or port == "*"):
            raise ValueError("%s has no port (tcp://HOST:PORT)" % _shown(text))
    return text


def existing_directory(value):
    """An optional directory, which must exist (checked when the option is
    read: a missing one would fail every spawn)."""
    path = optional_string(value)
    if path is not None and not os.path.isdir(path):
        raise ValueError("no such directory: %s" % _shown(path))
    return path


def arguments(value):
    """args: one string (split like a shell would at spawn) or a list."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return _split(string(value)) and value


def _split(text):
    import shlex
    try:
        return shlex.split(text) or True
    except ValueError as exc:  # No closing quotation...
        raise ValueError("cannot split %s into words: %s" % (_shown(text), exc)) from None


def choice(*choices):
    def convert(value):
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError("%r is not one of %s" % (value, ", ".join(choices)))
        return text
    return convert


def environment(value):
    """A mapping, or 'K=V, K2=V2' as written in an ini file."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    env = {}
    for item in re.split(r"[,\n]", string(value)):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("%r is not KEY=VALUE" % item)
        env[key.strip()] = val.strip()
    return env


def user(value):
    return to_uid(value)


def group(value):
    return to_gid(value)


def signal_number(value):
    return to_signum(value)


def socket_family(value):
    facts.socket_family(value)
    return value  # CircusSocket converts; a reload compares what was written


def socket_type(value):
    facts.socket_type(value)
    return value


def octal(value):
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 8)
    except ValueError:
        raise ValueError("%r is not an octal number (like 022)" % (value,)) from None


def dotted(default_module=None):
    """A dotted name that must be importable now, not at the first spawn."""
    def convert(value):
        if not isinstance(value, str):
            return value  # a class or callable given by a program
        try:
            resolve_name(value, default_module=default_module)
        except Exception as exc:
            raise ValueError("cannot import %r: %s" % (value, exc)) from None
        return value
    return convert


def findable_class(value):
    """A plugin class: it runs in a process of its own, so its module must be
    findable but is not imported into circusd."""
    use = string(value).strip()
    module, _, attr = use.replace(":", ".").rpartition(".")
    try:
        found = bool(module and attr) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValueError("cannot find the plugin class %r (no module %r)" % (use, module))
    return value


def rlimit_name(name):
    facts.rlimit_id(name)
    return name.lower()


def hook_name(name):
    if name.lower() not in facts.HOOK_NAMES:
        raise ValueError("unknown hook %r (one of %s)" % (name, ", ".join(facts.HOOK_NAMES)))
    return name.lower()


def anything(value):
    return value
