"""Every change the console can ask of circusd, in one table: the role it
needs, the command it sends, and how its parameters are checked. Forms and
the JSON API both go through run_action, so they cannot differ.

Audit: each command carries an ``audit`` property (user, role, client
address, "circushttpd"). circusd writes the command, its target, that user
and the result to its log and publishes them as an ``audit.<command>``
event: the record is made by the daemon that ran the command, from the
reply it sent, not by the console. The console also logs every action and
every refusal itself (its stderr is circusd's log when circusd runs it).
"""
import logging
import re

from circus.client import CallError
from circus.web.users import ADMIN, OPERATOR

logger = logging.getLogger("circus.web")

# signals an operator may send from the console
SIGNALS = ("TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TTIN", "TTOU", "CONT",
           "STOP", "WINCH", "ALRM")
_WATCHER_NAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")


class ActionError(ValueError):
    """Bad parameters: the request is refused before circusd sees it."""


def _int(props, key, minimum=0, maximum=10000, default=None):
    value = props.get(key, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise ActionError("%s is required" % key)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ActionError("%s must be a whole number" % key) from None
    if not minimum <= value <= maximum:
        raise ActionError("%s must be between %d and %d" % (key, minimum, maximum))
    return value


def _signal(props):
    name = str(props.get("signum") or props.get("signal") or "").upper().removeprefix("SIG")
    if name not in SIGNALS:
        raise ActionError("signal must be one of %s" % ", ".join(SIGNALS))
    return name


def _bool(props, key, default):
    value = props.get(key, default)
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes", "on")


def _add_props(props):
    name = str(props.get("name") or "").strip()
    if not _WATCHER_NAME.match(name):
        raise ActionError("a watcher name is 1 to 128 letters, digits or _.:@+-")
    cmd = str(props.get("cmd") or "").strip()
    if not cmd:
        raise ActionError("cmd is required")
    options = {"numprocesses": _int(props, "numprocesses", 0, 1000, default=1)}
    for key in ("working_dir", "uid", "gid", "stop_signal"):
        value = str(props.get(key) or "").strip()
        if value:
            options[key] = value
    if props.get("graceful_timeout") not in (None, ""):
        options["graceful_timeout"] = _int(props, "graceful_timeout", 0, 3600)
    for key in ("singleton", "use_sockets", "copy_env"):
        if key in props:
            options[key] = _bool(props, key, False)
    message = {"name": name, "cmd": cmd, "options": options,
               "start": _bool(props, "start", True)}
    args = str(props.get("args") or "").strip()
    if args:
        message["args"] = args
    return message


class Action:
    def __init__(self, name, role, build, target=True, label=None):
        self.name = name
        self.role = role
        self.build = build  # props -> (command, properties)
        self.target = target  # acts on the watcher named in the URL
        self.label = label or name


ACTIONS = {a.name: a for a in (
    Action("start", OPERATOR, lambda p: ("start", {})),
    Action("stop", OPERATOR, lambda p: ("stop", {})),
    Action("restart", OPERATOR, lambda p: ("restart", {})),
    Action("reload", OPERATOR,
           lambda p: ("reload", {"graceful": _bool(p, "graceful", True)})),
    Action("incr", OPERATOR, lambda p: ("incr", {"nb": _int(p, "nb", 1, 1000, default=1)})),
    Action("decr", OPERATOR, lambda p: ("decr", {"nb": _int(p, "nb", 1, 1000, default=1)})),
    Action("numprocesses", OPERATOR,
           lambda p: ("set", {"options": {"numprocesses": _int(p, "numprocesses", 0, 1000)}}),
           label="set numprocesses"),
    Action("kill", OPERATOR,
           lambda p: ("kill", {"pid": _int(p, "pid", 1, 2 ** 31)}), label="kill process"),
    Action("signal", OPERATOR,
           lambda p: ("signal", dict({"signum": _signal(p)},
                                     **({"pid": _int(p, "pid", 1, 2 ** 31)}
                                        if p.get("pid") not in (None, "") else {})))),
    Action("rm", ADMIN, lambda p: ("rm", {}), label="remove watcher"),
    Action("add", ADMIN, lambda p: ("add", _add_props(p)), target=False, label="add watcher"),
    Action("reloadconfig", ADMIN, lambda p: ("reloadconfig", {}), target=False),
)}


class Outcome:
    def __init__(self, ok, message, reply=None, status=200):
        self.ok = ok
        self.message = message
        self.reply = reply or {}
        self.status = status


def run_action(connection, action, watcher, props, identity):
    """Send the action's command; identity: {"user", "role", "addr"}."""
    command, properties = action.build(props)
    if action.target:
        properties["name"] = watcher
    target = properties.get("name") or "circusd"
    properties["audit"] = {"user": identity["user"], "role": identity["role"],
                           "addr": identity["addr"], "via": "circushttpd"}
    try:
        reply = connection.call(command, **properties)
    except CallError as exc:
        logger.warning("audit: %s (%s) %s %s: circusd unreachable: %s", identity["user"],
                       identity["role"], action.name, target, exc)
        return Outcome(False, "circusd did not answer: %s" % exc, status=502)
    ok = reply.get("status") != "error"
    result = "ok" if ok else "error: %s" % reply.get("reason", "unknown error")
    logger.info("audit: %s (%s) from %s: %s %s%s: %s", identity["user"], identity["role"],
                identity["addr"], action.name, target, _detail(properties), result)
    if ok:
        if command == "rm":
            connection.model.remove_watcher(target)
        elif command == "reloadconfig":
            connection.refresh("*")
        else:
            connection.refresh(target)
    return Outcome(ok, "%s %s: %s" % (action.label, target, result), reply,
                   200 if ok else 409)


def _detail(properties):
    shown = {k: v for k, v in properties.items() if k not in ("name", "audit")}
    return " %s" % shown if shown else ""
