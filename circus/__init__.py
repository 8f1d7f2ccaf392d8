"""circus: a process and socket manager for Python web stacks."""
__version__ = "1.0.0.dev0"


def get_arbiter(watchers, controller=None, pubsub_endpoint=None, stats_endpoint=None,
                env=None, name=None, context=None, background=False, stream_backend="thread",
                plugins=None, debug=False, sockets=None, loop=None, **options):
    """Create an Arbiter for the given watchers.

    watchers is a list of mappings of Watcher options (each with at least
    'cmd'); a plain command string is accepted too, in which case the other
    keyword arguments (numprocesses...) are that watcher's options:
    get_arbiter("myprogram", numprocesses=3).
    """
    from circus.arbiter import Arbiter
    from circus.config import ConfigError, check_variables, convert_watcher_option, watcher_kwargs
    from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB
    from circus.watcher import Watcher

    arbiter_keys = ("check_delay", "warmup_delay", "httpd", "httpd_host", "httpd_port",
                    "prereload_fn", "ssh_server", "endpoint")
    arbiter_options = {k: options.pop(k) for k in arbiter_keys if k in options}
    if isinstance(watchers, str):
        watchers = [dict(options, cmd=watchers, name=name or watchers.split()[0])]
        options = {}
    elif isinstance(watchers, dict):
        watchers = [watchers]

    socket_list = sockets.values() if isinstance(sockets, dict) else (sockets or ())
    socket_names = {sock.name.lower() for sock in socket_list}
    built = []
    for index, spec in enumerate(watchers):
        if isinstance(spec, Watcher):
            built.append(spec)
            continue
        spec = dict(spec)
        cmd = spec.pop("cmd")
        watcher_name = spec.pop("name", None) or "%s-%d" % (cmd.split()[0], index)
        if env is not None:
            spec["env"] = dict(env, **spec.get("env", {}))
        validated = {}
        for key, value in spec.items():
            if key in ("stdout_stream", "stderr_stream", "hooks", "rlimits"):
                validated[key] = value
                continue
            try:
                key, value = convert_watcher_option(key, value)
            except ValueError as exc:
                raise ValueError("watcher %r, option %r: %s" % (watcher_name, key, exc)) from None
            validated[key] = value
        try:
            check_variables(dict(validated, name=watcher_name, cmd=cmd), socket_names)
        except ConfigError as exc:
            raise ValueError("watcher %r, option %r: %s"
                             % (watcher_name, exc.option, exc.reason)) from None
        kwargs = watcher_kwargs({k: v for k, v in validated.items()
                                 if k not in ("stdout_stream", "stderr_stream", "hooks",
                                              "rlimits")})
        for key in ("stdout_stream", "stderr_stream", "hooks", "rlimits"):
            if key in validated:
                kwargs[key] = validated[key]
        kwargs.setdefault("stream_backend", stream_backend)
        built.append(Watcher(watcher_name, cmd, **kwargs))

    endpoint = arbiter_options.pop("endpoint", controller)
    arbiter = Arbiter(built, endpoint=endpoint or DEFAULT_ENDPOINT,
                      pubsub_endpoint=pubsub_endpoint or DEFAULT_PUBSUB,
                      stats_endpoint=stats_endpoint, context=context, plugins=plugins,
                      debug=debug, stream_backend=stream_backend, sockets=sockets, loop=loop,
                      **arbiter_options, **options)
    if background:
        arbiter.start_background()
    return arbiter


_LAZY = {"Arbiter": "circus.arbiter", "Watcher": "circus.watcher",
         "Process": "circus.process", "CircusSocket": "circus.sockets"}


def __getattr__(name):
    # circus.logger, Arbiter, Watcher, Process and CircusSocket without
    # importing logging and the daemon for every circusctl call
    if name == "logger":
        import logging
        return logging.getLogger("circus")
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError("module 'circus' has no attribute %r" % name)
