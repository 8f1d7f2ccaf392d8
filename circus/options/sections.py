"""Whole sections checked against the schema, whichever way they came in: an
ini file, get_arbiter's keyword arguments, the add and set commands.

Errors are ConfigErrors naming the section and option (and the file, when
there is one); each way in words them for its users, the reason stays the
same.
"""
import logging
import os
import re

from circus.options.schema import (
    CIRCUS_SCHEMA,
    WATCHER_SCHEMA,
    Family,
    Option,
    Section,
    Where,
    missing,
)
from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB, find_references

logger = logging.getLogger("circus")

STREAM_FAMILIES = tuple(WATCHER_SCHEMA.family(k) for k in ("stdout_stream", "stderr_stream"))


def convert_section(schema, where, items, first=()):
    """A Section of items converted by schema, after the (key, value) pairs of
    first (a watcher's name); the first bad option raises a ConfigError."""
    section = Section(where, first)
    for key, value in items.items():
        try:
            key, value = schema.convert(key, value)
        except ValueError as exc:
            raise where.error(str(exc), key.strip()) from None
        section[key] = value
    for spec in schema:
        if spec.required and not str(section.get(spec.name) or "").strip():
            raise where.error(missing(spec), spec.name)
    return section


def warn_compat(schema, keys, where):
    """One warning naming every option of keys that is accepted only for
    compatibility (once per section read, never per spawn)."""
    found = schema.compat(keys)
    if found:
        logger.warning("%s: accepted for compatibility and ignored: %s", where,
                       "; ".join("%s (%s)" % item for item in sorted(found.items())))
    return found


def watcher_section(name, items, where=None):
    """The options of watcher name, validated as a [watcher:NAME] section;
    items are flat (stdout_stream.class) or as a program gives them
    (stdout_stream={"class": ...}, see flatten)."""
    where = where or Where(None, "watcher:%s" % name)
    items = flatten(items)
    section = convert_section(WATCHER_SCHEMA, where, items, first={"name": name})
    check_streams(section)
    warn_compat(WATCHER_SCHEMA, items, where)
    return section


def flatten(options):
    """Watcher options as a program gives them (stdout_stream={...},
    hooks={...}, rlimits={...}) under their config-file names."""
    flat = {}
    for key, value in options.items():
        family = WATCHER_SCHEMA.family(key)
        if family is not None and isinstance(value, dict):
            for sub, item in value.items():
                flat[family.prefix + str(sub)] = item
        else:
            flat[key] = value
    return flat


def check_streams(section):
    """Each stream's class imports and takes the options given to it."""
    for family in STREAM_FAMILIES:
        conf = family.collect(section)
        if conf:
            from circus.stream import check_stream
            try:
                check_stream(conf)
            except ValueError as exc:
                option, message = exc.args
                raise section.where.error(message, family.prefix + option) from None


def watcher_kwargs(options):
    """Flat validated options -> keyword arguments of Watcher (without name)."""
    kwargs, extra = {}, {}
    for key, value in options.items():
        if key == "name":
            continue
        spec = WATCHER_SCHEMA.spec(key)
        if isinstance(spec, Family):
            kwargs.setdefault(spec.keyword, {})[spec.subkey(key)] = value
        elif isinstance(spec, Option):
            kwargs[spec.name] = value
        else:
            extra[key] = value
    kwargs.update(extra)
    return kwargs


def diff(old, new):
    """{option: (old value, new value)} of what differs between two watcher
    sections; an option left out counts as its default, and where they were
    written does not count."""
    changed = {}
    for key in sorted(set(old) | set(new), key=str):
        before = old.get(key, WATCHER_SCHEMA.default(key))
        after = new.get(key, WATCHER_SCHEMA.default(key))
        if before != after:
            changed[key] = (before, after)
    return changed


_KNOWN_NAMES = set(WATCHER_SCHEMA.options) | {"name", "wid"}
_ENV_NAME = re.compile(r"env\.([\w\-]+)", re.IGNORECASE)


def check_variables(options, socket_names):
    """Every $(circus.X) in cmd, args and env must be resolvable at spawn."""
    where = getattr(options, "where", None) or Where(None, "watcher:%s" % options.get("name"))
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
                        raise where.error("unknown socket %r in %s" % (name[8:], written),
                                          option)
                    if not options.get("use_sockets"):
                        raise where.error("%s needs use_sockets = true" % written, option)
                elif name.startswith("env."):
                    if name[4:] not in env:
                        raise where.error("environment variable %r is not set for %s"
                                          % (_ENV_NAME.search(written).group(1), written),
                                          option)
                elif name not in _KNOWN_NAMES:
                    raise where.error("unknown variable %s" % written, option)


def arbiter_kwargs(config):
    """The validated mapping of load() -> keyword arguments of Arbiter."""
    circus = dict(config["circus"])
    kwargs = {
        "endpoint": circus.pop("endpoint", DEFAULT_ENDPOINT),
        "pubsub_endpoint": circus.pop("pubsub_endpoint", DEFAULT_PUBSUB),
    }
    for key in ("include", "include_dir"):
        circus.pop(key, None)
    kwargs.update(circus)
    return kwargs


def arbiter_options(arbiter):
    """The [circus] options a running Arbiter holds, by their config names
    (the globaloptions command)."""
    return {spec.name: getattr(arbiter, spec.attribute, spec.default)
            for spec in CIRCUS_SCHEMA if spec.attribute}


def option_error(exc):
    """A ConfigError of a section given by a program or a command, worded for
    them: 'option KEY: REASON'."""
    return "option %s: %s" % (exc.option, exc.reason) if exc.option else exc.reason
