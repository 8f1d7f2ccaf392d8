"""Reading and changing a watcher's options by their config-file names,
for the get, options and set commands (circusd side only)."""
from circus.commands.base import MessageError, bad_data

# options a running watcher's processes were spawned with: changing one
# means new processes, so `set` reloads the watcher gracefully
SPAWN_OPTIONS = {"cmd", "args", "shell", "working_dir", "uid", "gid", "env", "copy_env",
                 "copy_path", "executable", "use_sockets"}


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
    from circus.config import WATCHER_OPTIONS
    lower = key.lower()
    if lower in WATCHER_OPTIONS:
        return _jsonable(getattr(watcher, lower, None))
    if lower.startswith("rlimit_"):
        return watcher.rlimits.get(lower[len("rlimit_"):])
    if lower.startswith("hooks."):
        return _jsonable(watcher.hooks.get(lower[len("hooks."):]))
    for prefix, conf in (("stdout_stream.", watcher.stdout_stream_conf),
                         ("stderr_stream.", watcher.stderr_stream_conf)):
        if lower.startswith(prefix):
            return _jsonable(conf.get(key[len(prefix):]))
    if key in watcher.options:
        return _jsonable(watcher.options[key])
    raise MessageError("unknown option %r" % key)


def all_options(watcher):
    from circus.config import WATCHER_OPTIONS
    options = {key: _jsonable(getattr(watcher, key, None)) for key in WATCHER_OPTIONS}
    for name, value in watcher.rlimits.items():
        options["rlimit_" + name] = value
    for name, hook in watcher.hooks.items():
        options["hooks." + name] = _jsonable(hook)
    for key, value in watcher.stdout_stream_conf.items():
        options["stdout_stream." + key] = _jsonable(value)
    for key, value in watcher.stderr_stream_conf.items():
        options["stderr_stream." + key] = _jsonable(value)
    for key, value in watcher.options.items():
        options[key] = _jsonable(value)
    return options


def convert_options(options):
    """Validate {key: value} as the config loader does: {key: converted}."""
    from circus.config import convert_watcher_option
    if not isinstance(options, dict) or not options:
        raise MessageError("property 'options' must be a non-empty mapping")
    converted = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise MessageError("option names must be strings")
        lower = key.strip().lower()
        if lower == "name":
            raise bad_data("option name: a watcher cannot be renamed")
        if lower.startswith(("stdout_stream.", "stderr_stream.")):
            raise bad_data("option %s: streams cannot be changed while circusd runs; "
                           "change the config file and use reloadconfig" % key)
        try:
            key, value = convert_watcher_option(key, value)
        except ValueError as exc:
            raise bad_data("option %s: %s" % (key, exc)) from None
        if key.startswith("hooks."):
            from circus.util import resolve_name
            try:
                value = (value, resolve_name(value))
            except (ImportError, ValueError) as exc:
                raise bad_data("option %s: %s" % (key, exc)) from None
        converted[key] = value
    return converted


async def apply_options(watcher, converted):
    """Set validated options on a watcher; returns what the event reports.

    Simple options take effect at once; spawn options apply to the next
    processes, so an active watcher is reloaded gracefully (new processes
    first); numprocesses resizes the watcher."""
    reload_needed = False
    numprocesses = converted.pop("numprocesses", None)
    changed = {}
    for key, value in converted.items():
        if key.startswith("rlimit_"):
            watcher.rlimits[key[len("rlimit_"):]] = value
            reload_needed = True
        elif key.startswith("hooks."):
            dotted, hook = value
            watcher.hooks[key[len("hooks."):]] = hook
            value = dotted
        elif "." in key and not hasattr(watcher, key):
            watcher.options[key] = value
        else:
            setattr(watcher, key, value)
            reload_needed = reload_needed or key in SPAWN_OPTIONS
        changed[key] = _jsonable(value)
    if watcher.singleton and (numprocesses or watcher.numprocesses) > 1:
        numprocesses = 1
    if numprocesses is not None:
        changed["numprocesses"] = numprocesses
    watcher.notify_event("updated", {"options": changed})
    if numprocesses is not None and numprocesses != watcher.numprocesses:
        await watcher.set_numprocesses(numprocesses)
    if reload_needed and watcher.is_active():
        await watcher.reload(graceful=True)
    return changed
