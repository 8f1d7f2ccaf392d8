"""A running watcher's options by their config-file names, read and changed
through the options schema (circus.options), for the get, options and set
commands (circusd side only)."""
from circus.commands.base import MessageError, bad_data, short


def _jsonable(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return "%s.%s" % (getattr(value, "__module__", "?"),
                          getattr(value, "__qualname__", repr(value)))
    return str(value)


def get_option(watcher, key):
    """The value of one option; MessageError for a name no watcher has."""
    from circus.options import WATCHER_SCHEMA, Family
    spec = WATCHER_SCHEMA.spec(key)
    if isinstance(spec, Family):
        return _jsonable(getattr(watcher, spec.attribute).get(spec.subkey(key)))
    if spec is not None:
        return _jsonable(getattr(watcher, spec.name, None))
    if key in watcher.options:
        return _jsonable(watcher.options[key])
    raise MessageError("unknown option %r" % short(key))


def all_options(watcher):
    from circus.options import WATCHER_SCHEMA
    options = {spec.name: _jsonable(getattr(watcher, spec.name, None))
               for spec in WATCHER_SCHEMA}
    for family in WATCHER_SCHEMA.families:
        for key, value in getattr(watcher, family.attribute).items():
            options[family.prefix + key] = _jsonable(value)
    for key, value in watcher.options.items():
        options[key] = _jsonable(value)
    return options


def convert_options(options):
    """Validate {key: value} as the config loader does: {key: converted}.
    All of them or none: a bad value must not leave half the options set."""
    from circus.options import WATCHER_SCHEMA, Family
    if not isinstance(options, dict) or not options:
        raise MessageError("property 'options' must be a non-empty mapping")
    converted = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise MessageError("option names must be strings")
        if key.strip().lower() == "name":
            raise bad_data("option name: a watcher cannot be renamed")
        spec = WATCHER_SCHEMA.spec(key)
        if isinstance(spec, Family) and not spec.live:
            raise bad_data("option %s: streams cannot be changed while circusd runs; "
                           "change the config file and use reloadconfig" % short(key))
        try:
            key, value = WATCHER_SCHEMA.convert(key, value)
        except ValueError as exc:
            raise bad_data("option %s: %s" % (short(key), short(str(exc), 200))) from None
        converted[key] = value
    return converted


# the options whose $(circus.X) variables a config section has checked
_WITH_VARIABLES = ("cmd", "args", "env", "use_sockets")


def check_options(watcher, converted, socket_names):
    """What set leaves must pass the checks of a config section too: every
    $(circus.X) resolvable. Warns once of compatibility-only options."""
    from circus.options import (
        WATCHER_SCHEMA,
        ConfigError,
        Where,
        check_variables,
        option_error,
        warn_compat,
    )
    where = Where(None, "watcher:%s" % watcher.name)
    if any(key in converted for key in _WITH_VARIABLES):
        merged = dict(all_options(watcher), **converted)
        merged["name"] = watcher.name
        try:
            check_variables(merged, socket_names)
        except ConfigError as exc:
            raise bad_data(option_error(exc)) from None
    warn_compat(WATCHER_SCHEMA, converted, "set of %s" % (where,))


async def apply_options(watcher, converted):
    """Set validated options on a watcher; returns what the event reports.

    Simple options take effect at once; spawn options apply to the next
    processes, so an active watcher is reloaded gracefully (new processes
    first); numprocesses resizes the watcher."""
    from circus.options import WATCHER_SCHEMA, Family
    from circus.util import resolve_name
    reload_needed = False
    numprocesses = converted.pop("numprocesses", None)
    changed = {}
    for key, value in converted.items():
        spec = WATCHER_SCHEMA.spec(key)
        if isinstance(spec, Family):
            # hooks hold the callable; the event reports the dotted name
            item = resolve_name(value) if spec.keyword == "hooks" else value
            getattr(watcher, spec.attribute)[spec.subkey(key)] = item
        elif spec is None:
            watcher.options[key] = value
        else:
            setattr(watcher, key, value)
        reload_needed = reload_needed or (spec is not None and spec.spawn)
        changed[key] = _jsonable(value)
    if watcher.singleton and (numprocesses or watcher.numprocesses) > 1:
        numprocesses = 1
    if numprocesses is not None:
        changed["numprocesses"] = numprocesses
    watcher.notify_event("updated", {"options": changed})
    if numprocesses is not None and numprocesses != watcher.numprocesses:
        await watcher.set_numprocesses(numprocesses)
    if reload_needed and watcher.is_running():
        await watcher.reload(graceful=True)
    return changed
