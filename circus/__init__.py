"""circus: a process and socket manager for Python web stacks."""
from __future__ import annotations

__version__ = "1.0.0.dev0"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (circusctl's start)
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterable, Mapping
    from typing import Any

    import zmq

    from circus.arbiter import Arbiter
    from circus.sockets import CircusSocket
    from circus.watcher import Watcher


def get_arbiter(watchers: str | dict[str, Any] | Iterable[Mapping[str, Any] | Watcher],
                controller: str | None = None, pubsub_endpoint: str | None = None,
                stats_endpoint: str | None = None, env: Mapping[str, str] | None = None,
                name: str | None = None, context: zmq.Context[Any] | None = None,
                background: bool = False, stream_backend: str = "thread",
                plugins: Iterable[Mapping[str, Any]] | None = None, debug: bool = False,
                sockets: Iterable[CircusSocket] | dict[str, CircusSocket] | None = None,
                loop: asyncio.AbstractEventLoop | None = None, **options: Any) -> Arbiter:
    """Create an Arbiter for the given watchers.

    watchers is a list of mappings of Watcher options (each with at least
    'cmd'); a plain command string is accepted too, in which case the other
    keyword arguments (numprocesses...) are that watcher's options:
    get_arbiter("myprogram", numprocesses=3). Watcher options and [circus]
    options are checked as in a config file (ValueError naming the option).
    """
    from circus.arbiter import Arbiter, build_watcher
    from circus.options import (
        CIRCUS_SCHEMA,
        ConfigError,
        Where,
        check_variables,
        convert_section,
        option_error,
        warn_compat,
        watcher_section,
    )
    from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB
    from circus.watcher import Watcher

    # Arbiter arguments that are no [circus] option of a config file
    passed = {k: options.pop(k) for k in ("prereload_fn", "ssh_server") if k in options}
    circus = {k: options.pop(k) for k in list(options) if k in CIRCUS_SCHEMA}
    if isinstance(watchers, str):
        watchers = [dict(options, cmd=watchers, name=name or watchers.split()[0])]
        options = {}
    elif isinstance(watchers, dict):
        watchers = [watchers]
    if options:
        raise ValueError("option %r: unknown option" % sorted(options)[0])
    given = dict(circus, stream_backend=stream_backend, debug=debug)
    for key, value in (("endpoint", controller), ("pubsub_endpoint", pubsub_endpoint),
                       ("stats_endpoint", stats_endpoint)):
        if value is not None:
            given.setdefault(key, value)
    where = Where(None, "circus")
    try:
        circus = convert_section(CIRCUS_SCHEMA, where, given)
    except ConfigError as exc:
        raise ValueError(option_error(exc)) from None
    # the defaults of this signature are not the caller's choice
    warn_compat(CIRCUS_SCHEMA, [k for k, v in circus.items()
                                if v != CIRCUS_SCHEMA.default(k)], "get_arbiter")

    socket_list = sockets.values() if isinstance(sockets, dict) else (sockets or ())
    socket_names = {sock.name.lower() for sock in socket_list}
    built = []
    for index, spec in enumerate(watchers):
        if isinstance(spec, Watcher):
            built.append(spec)
            continue
        spec = dict(spec)
        words = str(spec.get("cmd") or "").split() or ["watcher"]
        watcher_name = spec.pop("name", None) or "%s-%d" % (words[0], index)
        if env is not None:
            spec["env"] = dict(env, **spec.get("env", {}))
        try:
            validated = watcher_section(watcher_name, spec)
            check_variables(validated, socket_names)
        except ConfigError as exc:
            raise ValueError("watcher %r, option %r: %s"
                             % (watcher_name, exc.option, exc.reason)) from None
        validated.setdefault("stream_backend", circus["stream_backend"])
        built.append(build_watcher(validated))

    arbiter = Arbiter(built, endpoint=circus.pop("endpoint", None) or DEFAULT_ENDPOINT,
                      pubsub_endpoint=circus.pop("pubsub_endpoint", None) or DEFAULT_PUBSUB,
                      context=context, plugins=plugins, sockets=sockets, loop=loop,
                      **passed, **circus)
    if background:
        arbiter.start_background("get_arbiter(..., background=True)")
        arbiter._start_pending = True
    return arbiter


_LAZY = {"Arbiter": "circus.arbiter", "Watcher": "circus.watcher",
         "Process": "circus.process", "CircusSocket": "circus.sockets"}


def __getattr__(name: str) -> Any:
    # circus.logger, Arbiter, Watcher, Process and CircusSocket without
    # importing logging and the daemon for every circusctl call
    if name == "logger":
        import logging
        return logging.getLogger("circus")
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError("module 'circus' has no attribute %r" % name)
