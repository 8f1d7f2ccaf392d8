"""The ini configuration: read, include, validate.

The same option converters check a config file, the `add` and `set`
commands and the keyword arguments of the library, so a value that one
accepts the others accept too.

`include` globs and `include_dir` directories are relative to the file that
names them; an included file may have a [circus] section of its own (for
its own includes, or options no other file sets: a conflicting value is an
error, as is a watcher, socket or plugin name defined twice). Everything
that can be checked without starting anything is checked here (dotted
names of hooks, stream classes and their options, plugin modules, socket
families, users and groups...), so that circusd refuses a bad file before
it binds or spawns anything, and a SIGHUP with a bad file changes nothing.
"""
import configparser
import fnmatch
import glob
import os
import re

from circus.errors import ConfigError
from circus.process import rlimit_id
from circus.util import (DEFAULT_ENDPOINT, DEFAULT_PUBSUB, find_references, resolve_name,
                         to_bool, to_gid, to_signum, to_uid)


# --- converters: each raises ValueError with a message for the user -------
def _int(minimum=None, maximum=None):
    def convert(value):
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise ValueError("%r is not an integer" % (value,)) from None
        if isinstance(number, bool):
            raise ValueError("%r is not an integer" % (value,))
        if minimum is not None and number < minimum:
            raise ValueError("%d is below the minimum of %d" % (number, minimum))
        if maximum is not None and number > maximum:
            raise ValueError("%d is above the maximum of %d" % (number, maximum))
        return number
    return convert


def _float(minimum=0.0):
    def convert(value):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("%r is not a number" % (value,)) from None
        if minimum is not None and number < minimum:
            raise ValueError("%s is below the minimum of %s" % (number, minimum))
        return number
    return convert


def _str(value):
    if not isinstance(value, str):
        raise ValueError("%r is not a string" % (value,))
    return value


def _optional_str(value):
    if value is None:
        return None
    text = _str(value).strip()
    return text or None


def _args(value):
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return _str(value)


def _choice(*choices):
    def convert(value):
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError("%r is not one of %s" % (value, ", ".join(choices)))
        return text
    return convert


def _env(value):
    """A mapping, or 'K=V, K2=V2' as written in an ini file."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    env = {}
    for item in re.split(r"[,\n]", _str(value)):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("%r is not KEY=VALUE" % item)
        env[key.strip()] = val.strip()
    return env


def _uid(value):
    return to_uid(value)


def _gid(value):
    return to_gid(value)


def _signal(value):
    return to_signum(value)


def _socket_family(value):
    from circus.sockets import _family
    _family(value)
    return value


def _socket_type(value):
    from circus.sockets import _type
    _type(value)
    return value


def _octal(value):
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 8)
    except ValueError:
        raise ValueError("%r is not an octal number (like 022)" % (value,)) from None


def _dotted(default_module=None):
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


WATCHER_OPTIONS = {
    "cmd": _str,
    "args": _args,
    "shell": to_bool,
    "working_dir": _optional_str,
    "uid": _uid,
    "gid": _gid,
    "env": _env,
    "copy_env": to_bool,
    "copy_path": to_bool,
    "warmup_delay": _float(),
    "numprocesses": _int(0),
    "send_hup": to_bool,
    "max_retry": _int(-1),
    "priority": _int(),
    "singleton": to_bool,
    "use_sockets": to_bool,
    "max_age": _float(),
    "max_age_variance": _float(),
    # seconds between stop_signal and SIGKILL; 0: SIGKILL right after the
    # stop signal (no grace), never "wait forever"
    "graceful_timeout": _float(),
    "executable": _optional_str,
    "stop_signal": _signal,
    "stop_children": to_bool,
    "autostart": to_bool,
    "respawn": to_bool,
    "ready": _choice("spawn", "notify"),
    "ready_delay": _float(),
    "ready_timeout": _float(),
    "stream_backend": _choice("thread", "gevent", "asyncio"),
}
# options whose name is a prefix followed by a key of the user's choice
WATCHER_PREFIXES = ("stdout_stream.", "stderr_stream.", "hooks.", "rlimit_")

CIRCUS_OPTIONS = {
    "endpoint": _optional_str,
    "pubsub_endpoint": _optional_str,
    "stats_endpoint": _optional_str,
    "check_delay": _float(),
    "include": _str,
    "include_dir": _str,
    "stream_backend": _choice("thread", "gevent", "asyncio"),
    "warmup_delay": _float(),
    "httpd": to_bool,
    "httpd_host": _str,
    "httpd_port": _int(0, 65535),
    "debug": to_bool,
    "pidfile": _optional_str,
    "loglevel": _choice("debug", "info", "warning", "error", "critical"),
    "logoutput": _str,
    "umask": _str,
    "curve_secret_key": _optional_str,
    "curve_authorized_keys": _optional_str,
    "statsd": to_bool,
}

SOCKET_OPTIONS = {
    "host": _str,
    "port": _int(0, 65535),
    "family": _socket_family,
    "type": _socket_type,
    "backlog": _int(0),
    "path": _optional_str,
    "umask": _octal,
    "replace": to_bool,
    "so_reuseport": to_bool,
    "blocking": to_bool,
    "interface": _optional_str,
}


def convert_watcher_option(key, value):
    """Validate one watcher option; returns (key, converted value).

    Raises ValueError naming what is wrong.
    """
    key = key.strip()
    lower = key.lower()
    if lower in WATCHER_OPTIONS:
        return lower, WATCHER_OPTIONS[lower](value)
    if lower.startswith("rlimit_"):
        rlimit_id(lower[len("rlimit_"):])
        return lower, _int(-1)(value)
    if lower.startswith("hooks."):
        from circus.watcher import HOOK_NAMES
        if lower[len("hooks."):] not in HOOK_NAMES:
            raise ValueError("unknown hook %r (one of %s)" % (key[6:], ", ".join(HOOK_NAMES)))
        return lower, _dotted()(value)
    if lower in ("stdout_stream.class", "stderr_stream.class"):
        return key, _dotted("circus.stream")(value)
    if "." in key:
        # stdout_stream.*, stderr_stream.* and plugin-specific options
        return key, value
    raise ValueError("unknown option")


def watcher_kwargs(options):
    """Flat validated options -> keyword arguments of Watcher."""
    kwargs, extra = {}, {}
    for key, value in options.items():
        lower = key.lower()
        if lower.startswith("rlimit_"):
            kwargs.setdefault("rlimits", {})[lower[7:]] = value
        elif lower.startswith("hooks."):
            kwargs.setdefault("hooks", {})[lower[6:]] = value
        elif lower.startswith("stdout_stream."):
            kwargs.setdefault("stdout_stream", {})[key[14:]] = value
        elif lower.startswith("stderr_stream."):
            kwargs.setdefault("stderr_stream", {})[key[14:]] = value
        elif lower in WATCHER_OPTIONS:
            kwargs[lower] = value
        else:
            extra[key] = value
    kwargs.update(extra)
    return kwargs


# --- reading files --------------------------------------------------------
_ENV_REF = re.compile(r"\$\(\s*circus\.env\.([\w\-]+)\s*\)", re.IGNORECASE)


def _expand_env(value):
    """$(circus.env.NAME) from circusd's environment; unknown ones stay for
    the spawn, where the watcher's own env is known."""
    environ = {k.lower(): v for k, v in os.environ.items()}

    def repl(match):
        return environ.get(match.group(1).lower(), match.group(0))
    return _ENV_REF.sub(repl, value)


class _Section:
    def __init__(self, name, items, filename):
        self.name, self.items, self.filename = name, items, filename


def _read_file(filename, seen):
    filename = os.path.abspath(filename)
    if filename in seen:
        return []
    seen.add(filename)
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",),
                                          comment_prefixes=("#", ";"),
                                          inline_comment_prefixes=None)
    parser.optionxform = str  # env names keep their case
    try:
        with open(filename) as handle:
            parser.read_file(handle, source=filename)
    except FileNotFoundError:
        raise ConfigError("no such file", filename) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError("section defined twice (line %s)" % exc.lineno, filename,
                          exc.section) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError("option set twice (line %s)" % exc.lineno, filename,
                          exc.section, exc.option) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError("line %d: %r is outside of any [section]"
                          % (exc.lineno, exc.line.strip()), filename) from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0]
        raise ConfigError("line %d: cannot parse %r (expected: option = value)"
                          % (lineno, line.strip()), filename) from None
    except configparser.Error as exc:
        raise ConfigError(str(exc).splitlines()[0], filename) from None
    sections = []
    base = os.path.dirname(filename)
    for name in parser.sections():
        items = {k: _expand_env(v) for k, v in parser.items(name)}
        sections.append(_Section(name, items, filename))
        if name == "circus":
            for pattern in (items.get("include") or "").split():
                pattern = os.path.join(base, os.path.expanduser(pattern))
                for path in sorted(glob.glob(pattern)):
                    sections.extend(_read_file(path, seen))
            for directory in (items.get("include_dir") or "").split():
                directory = os.path.join(base, os.path.expanduser(directory))
                if not os.path.isdir(directory):
                    raise ConfigError("%s is not a directory" % directory, filename,
                                      "circus", "include_dir")
                for path in sorted(glob.glob(os.path.join(directory, "*.ini"))):
                    sections.extend(_read_file(path, seen))
    return sections


def _convert(table, section, key, value):
    try:
        return table[key](value)
    except KeyError:
        raise ConfigError("unknown option", section.filename, section.name, key) from None
    except ValueError as exc:
        raise ConfigError(str(exc), section.filename, section.name, key) from None


def load(filename):
    """Read filename (and what it includes) into a validated mapping:
    {'circus': {...}, 'watchers': [...], 'sockets': [...], 'plugins': [...]}.
    """
    sections = _read_file(filename, set())
    config = {"filename": os.path.abspath(filename), "circus": {}, "watchers": [],
              "sockets": [], "plugins": []}
    owners = {}
    env_sections = []
    for section in sections:
        kind, _, name = section.name.partition(":")
        kind = kind.strip().lower()
        name = name.strip()
        if kind == "circus" and not name:
            key = ("circus", "")
        elif kind in ("watcher", "socket", "plugin", "env") and name:
            key = (kind, name.lower())
        else:
            raise ConfigError("unknown section (use circus, watcher:NAME, socket:NAME, "
                              "plugin:NAME or env:NAME)", section.filename, section.name)
        if kind == "circus":
            # included files may have a [circus] of their own (for their
            # own includes, or options nobody else sets)
            _merge_circus(config["circus"], section, owners)
            continue
        if key in owners:
            raise ConfigError("duplicate name: also defined in %s" % owners[key],
                              section.filename, section.name)
        owners[key] = section.filename
        if kind == "socket":
            sock = {"name": name}
            for k, v in section.items.items():
                sock[k.lower()] = _convert(SOCKET_OPTIONS, section, k.lower(), v)
            config["sockets"].append(sock)
        elif kind == "plugin":
            plugin = {"name": name}
            plugin.update(section.items)
            if not plugin.get("use"):
                raise ConfigError("missing option 'use' (the plugin's dotted class name)",
                                  section.filename, section.name, "use")
            _check_plugin_class(plugin["use"], section)
            plugin["_where"] = (section.filename, section.name)
            config["plugins"].append(plugin)
        elif kind == "env":
            env_sections.append((name, section))
        else:
            config["watchers"].append(_load_watcher(name, section))

    for names, section in env_sections:
        matched = False
        for pattern in (n.strip() for n in names.split(",")):
            for watcher in config["watchers"]:
                if fnmatch.fnmatchcase(watcher["name"].lower(), pattern.lower()):
                    matched = True
                    env = dict(watcher.get("env") or {})
                    env.update(section.items)
                    watcher["env"] = env
        if not matched:
            raise ConfigError("no watcher named %r" % names, section.filename, section.name)

    socket_names = {s["name"].lower() for s in config["sockets"]}
    for watcher in config["watchers"]:
        check_variables(watcher, socket_names)
    for plugin in config["plugins"]:
        where = plugin.pop("_where")
        for option in ("endpoint", "pubsub_endpoint"):
            if option in config["circus"] and not config["circus"][option]:
                raise ConfigError("a plugin talks to circusd through its endpoint and "
                                  "pubsub_endpoint, but [circus] %s is empty" % option, *where)
    return config


def _merge_circus(merged, section, owners):
    for key, value in section.items.items():
        key = key.lower()
        value = _convert(CIRCUS_OPTIONS, section, key, value)
        if key in ("include", "include_dir"):
            # they were followed by _read_file, relative to their own file
            merged.setdefault(key, value)
            continue
        where = owners.get(("circus", key))
        if where is not None and merged[key] != value:
            raise ConfigError("%r conflicts with %r set in %s" % (value, merged[key], where),
                              section.filename, section.name, key)
        merged[key] = value
        owners[("circus", key)] = section.filename


def _check_plugin_class(use, section):
    """The plugin runs in a process of its own: its module must be findable
    (it is not imported into circusd)."""
    import importlib.util
    module, _, attr = use.strip().replace(":", ".").rpartition(".")
    try:
        found = bool(module and attr) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError("cannot find the plugin class %r (no module %r)" % (use, module),
                          section.filename, section.name, "use")


def _load_watcher(name, section):
    options = {"name": name}
    for key, value in section.items.items():
        try:
            key, value = convert_watcher_option(key, value)
        except ValueError as exc:
            raise ConfigError(str(exc), section.filename, section.name, key) from None
        options[key] = value
    for prefix in ("stdout_stream", "stderr_stream"):
        stream = {k[len(prefix) + 1:]: v for k, v in options.items()
                  if k.lower().startswith(prefix + ".")}
        if stream:
            from circus.stream import check_stream
            try:
                check_stream(stream)
            except ValueError as exc:
                option, message = exc.args
                raise ConfigError(message, section.filename, section.name,
                                  "%s.%s" % (prefix, option)) from None
    if not options.get("cmd", "").strip():
        raise ConfigError("missing option 'cmd' (the command to run)", section.filename,
                          section.name, "cmd")
    options["_where"] = (section.filename, section.name)
    return options


_KNOWN_NAMES = set(WATCHER_OPTIONS) | {"name", "wid"}
_ENV_NAME = re.compile(r"env\.([\w\-]+)", re.IGNORECASE)


def check_variables(options, socket_names):
    """Every $(circus.X) in cmd, args and env must be resolvable at spawn."""
    filename, section = options.get("_where", (None, "watcher:%s" % options.get("name")))
    # circusd's own environment counts too: the spawn falls back to it
    env = {k.lower() for k in (options.get("env") or {})} | {k.lower() for k in os.environ}
    places = [("cmd", options.get("cmd")), ("args", options.get("args"))]
    places += [("env", v) for v in (options.get("env") or {}).values()]
    for option, value in places:
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            for name, written in find_references(text if isinstance(text, str) else ""):
                if name.startswith("sockets."):
                    if name[8:] not in socket_names:
                        raise ConfigError("unknown socket %r in %s" % (name[8:], written),
                                          filename, section, option)
                    if not options.get("use_sockets"):
                        raise ConfigError("%s needs use_sockets = true" % written,
                                          filename, section, option)
                elif name.startswith("env."):
                    if name[4:] not in env:
                        raise ConfigError("environment variable %r is not set for %s"
                                          % (_ENV_NAME.search(written).group(1), written),
                                          filename, section, option)
                elif name not in _KNOWN_NAMES:
                    raise ConfigError("unknown variable %s" % written,
                                      filename, section, option)


def arbiter_kwargs(config):
    """The validated mapping -> keyword arguments of Arbiter."""
    circus = dict(config["circus"])
    kwargs = {
        "endpoint": circus.pop("endpoint", DEFAULT_ENDPOINT),
        "pubsub_endpoint": circus.pop("pubsub_endpoint", DEFAULT_PUBSUB),
    }
    for key in ("include", "include_dir"):
        circus.pop(key, None)
    kwargs.update(circus)
    return kwargs

