"""What the built-in plugins share: option parsing, and reading the
per-watcher options (`PREFIX.key = value` in a watcher section) over the
protocol, cached and refreshed on the watcher's add/updated events."""
import fnmatch
import logging

from circus.util import to_bool

logger = logging.getLogger("circus.plugins")


def option(config, key, convert, default):
    """config[key] converted (ValueError names the option), or default."""
    value = config.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        return convert(value)
    except (TypeError, ValueError) as exc:
        raise ValueError("option %s: %r is invalid (%s)" % (key, value, exc)) from None


def boolean(value):
    return to_bool(value)


def number(value):
    return float(value)


def integer(value):
    return int(str(value).strip())


def patterns(value):
    """'web, api-*' -> ['web', 'api-*'] (glob patterns on lower-case names)."""
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value).replace(",", " ").split()
    return [p.strip().lower() for p in items if p.strip()]


def matches(name, pattern_list):
    return any(fnmatch.fnmatchcase(name.lower(), p) for p in pattern_list)


class WatcherOptions:
    """Per-watcher options under one prefix, fetched with the `options`
    command. `get(name)` answers {key: value} without the prefix."""

    def __init__(self, plugin, prefix):
        self.plugin = plugin
        self.prefix = prefix.rstrip(".") + "."
        self._cache = {}

    async def get(self, name):
        if name not in self._cache:
            reply = await self.plugin.acall("options", name=name)
            if reply.get("status") != "ok":
                return {}
            options = reply.get("options") or {}
            self._cache[name] = {k[len(self.prefix):]: v for k, v in options.items()
                                 if k.lower().startswith(self.prefix)}
        return self._cache[name]

    def forget(self, name):
        self._cache.pop(name, None)

    def on_event(self, name, event):
        """Forget what the watcher's add, remove or updated event may change."""
        if event in ("add", "remove", "updated"):
            self.forget(name)


def parse(raw, spec, where):
    """{key: (convert, default)} applied to raw: a namespace of values. An
    invalid value is logged and replaced by the default (for per-watcher
    options, which are only read once circusd runs)."""
    from types import SimpleNamespace
    values = {}
    for key, (convert, default) in spec.items():
        try:
            values[key] = option(raw, key, convert, default)
        except ValueError as exc:
            logger.warning("%s: %s; using %r", where, exc, default)
            values[key] = default
    return SimpleNamespace(**values)
