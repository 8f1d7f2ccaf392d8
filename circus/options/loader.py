"""The ini configuration: read, include, validate.

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

from circus.errors import ConfigError, describe
from circus.options.schema import CIRCUS_SCHEMA, PLUGIN_SCHEMA, SOCKET_SCHEMA, Section, Where
from circus.options.sections import check_variables, convert_section, warn_compat, watcher_section

_ENV_REF = re.compile(r"\$\(\s*circus\.env\.([\w\-]+)\s*\)", re.IGNORECASE)

# sections whose name is KIND:NAME
_NAMED = ("watcher", "socket", "plugin", "env")


def _expand_env(value):
    """$(circus.env.NAME) from circusd's environment; unknown ones stay for
    the spawn, where the watcher's own env is known."""
    environ = {k.lower(): v for k, v in os.environ.items()}

    def repl(match):
        return environ.get(match.group(1).lower(), match.group(0))
    return _ENV_REF.sub(repl, value)


class _Raw:
    """One section as read, before any conversion."""

    def __init__(self, name, items, filename):
        self.name, self.items, self.filename = name, items, filename


def _read_file(filename, seen, chain=()):
    """The sections of filename and of what it includes. seen: every file
    read so far (a file included twice is read once); chain: the files
    whose includes led here (one of them again is a loop)."""
    filename = os.path.abspath(filename)
    if filename in chain:
        loop = list(chain[chain.index(filename):]) + [filename]
        raise ConfigError("circular include: %s" % " -> ".join(loop), chain[-1], "circus",
                          "include")
    if filename in seen:
        return []
    seen.add(filename)
    chain = tuple(chain) + (filename,)
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",),
                                          comment_prefixes=("#", ";"),
                                          inline_comment_prefixes=None)
    parser.optionxform = str  # env names keep their case
    try:
        parser.read_string(_text_of(filename), source=filename)
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
    if len(chain) == 1 and not parser.sections():
        # an empty file would stop every watcher: almost always the wrong file
        raise ConfigError("no section at all: is this the configuration file?", filename)
    sections = []
    base = os.path.dirname(filename)
    for name in parser.sections():
        items = {k: _expand_env(v) for k, v in parser.items(name)}
        sections.append(_Raw(name, items, filename))
        if name == "circus":
            for pattern in (items.get("include") or "").split():
                pattern = os.path.join(base, os.path.expanduser(pattern))
                paths = sorted(glob.glob(pattern))
                if not paths and not glob.has_magic(pattern):
                    # a glob may match nothing (conf.d/*.ini, as in nginx); a
                    # plain path names one file, which must be there
                    raise ConfigError("no such file: %s" % pattern, filename, "circus",
                                      "include")
                for path in paths:
                    if glob.has_magic(pattern) and os.path.abspath(path) == filename:
                        continue  # include = *.ini next to this file matches itself
                    sections.extend(_read_file(path, seen, chain))
            for directory in (items.get("include_dir") or "").split():
                directory = os.path.join(base, os.path.expanduser(directory))
                if not os.path.isdir(directory):
                    raise ConfigError("%s is not a directory" % directory, filename,
                                      "circus", "include_dir")
                for path in sorted(glob.glob(os.path.join(directory, "*.ini"))):
                    sections.extend(_read_file(path, seen, chain))
    return sections


def _text_of(filename):
    """The file's text: UTF-8, or a ConfigError naming the line that is not."""
    try:
        with open(filename, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError("no such file", filename) from None
    except OSError as exc:
        raise ConfigError(describe(exc), filename) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("line %d: not UTF-8 text (byte 0x%02x)" % (line, data[exc.start]),
                          filename) from None


def load(filename):
    """Read filename (and what it includes) into a validated mapping:
    {'filename': ..., 'circus': Section, 'watchers': [Section...],
    'sockets': [Section...], 'plugins': [Section...]}; each Section is a
    mapping of converted options that knows where it was written.
    """
    filename = os.path.abspath(filename)
    raws = _read_file(filename, set())
    config = {"filename": filename, "circus": Section(Where(filename, "circus")),
              "watchers": [], "sockets": [], "plugins": []}
    owners = {}
    env_sections = []
    for raw in raws:
        kind, _, name = raw.name.partition(":")
        kind = kind.strip().lower()
        name = name.strip()
        where = Where(raw.filename, raw.name)
        if kind == "circus" and not name:
            # included files may have a [circus] of their own (for their
            # own includes, or options nobody else sets)
            _merge_circus(config["circus"], raw, where)
            continue
        if kind not in _NAMED or not name:
            raise ConfigError("unknown section (use circus, watcher:NAME, socket:NAME, "
                              "plugin:NAME or env:NAME)", raw.filename, raw.name)
        key = (kind, name.lower())
        if key in owners:
            raise ConfigError("duplicate name: also defined in %s" % owners[key],
                              raw.filename, raw.name)
        owners[key] = raw.filename
        if kind == "socket":
            sock = convert_section(SOCKET_SCHEMA, where, raw.items, first={"name": name})
            warn_compat(SOCKET_SCHEMA, raw.items, where)
            config["sockets"].append(sock)
        elif kind == "plugin":
            plugin = convert_section(PLUGIN_SCHEMA, where, raw.items, first={"name": name})
            config["plugins"].append(plugin)
        elif kind == "env":
            env_sections.append((name, raw))
        else:
            config["watchers"].append(watcher_section(name, raw.items, where))

    for names, raw in env_sections:
        matched = False
        for pattern in (n.strip() for n in names.split(",")):
            for watcher in config["watchers"]:
                if fnmatch.fnmatchcase(watcher["name"].lower(), pattern.lower()):
                    matched = True
                    env = dict(watcher.get("env") or {})
                    env.update(raw.items)
                    watcher["env"] = env
        if not matched:
            raise ConfigError("no watcher named %r" % names, raw.filename, raw.name)

    socket_names = {s["name"].lower() for s in config["sockets"]}
    for watcher in config["watchers"]:
        check_variables(watcher, socket_names)
    circus = config["circus"]
    for plugin in config["plugins"]:
        for option in ("endpoint", "pubsub_endpoint"):
            if option in circus and not circus[option]:
                raise plugin.where.error("a plugin talks to circusd through its endpoint and "
                                         "pubsub_endpoint, but [circus] %s is empty" % option)
    return config


def _merge_circus(merged, raw, where):
    section = convert_section(CIRCUS_SCHEMA, where, raw.items)
    warn_compat(CIRCUS_SCHEMA, section, where)
    for key, value in section.items():
        if key in ("include", "include_dir"):
            # they were followed by _read_file, relative to their own file
            merged.setdefault(key, value)
            continue
        first = merged.origins.get(key)
        if first is not None and merged[key] != value:
            raise where.error("%r conflicts with %r set in %s" % (value, merged[key],
                                                                 first.filename), key)
        merged[key] = value
        merged.origins[key] = where.at(key)
