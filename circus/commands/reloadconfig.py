from circus.commands.base import Command, errors, CommandError


class ReloadConfig(Command):
    """Reload the configuration file

    circusd reads its configuration file again and applies what changed:
    new watchers are added, removed ones are stopped and removed, changed
    ones are replaced (new processes first), changed sockets are bound anew
    (a socket whose only change is its backlog is not: listen() is called
    again on the bound socket, whose fd, address and workers all stay);
    [plugin:NAME] sections added are started, removed ones stopped, changed
    ones restarted; a changed stats_endpoint (or statsd) starts, stops or
    moves circusd-stats. Watchers, sockets and plugins that did not change
    keep running untouched. Other [circus] options (endpoint, umask...)
    need a restart of circusd: a warning says so.

    Everything new is built first (watchers constructed, new sockets bound)
    and only then applied: an error in the file, a watcher that cannot be
    built or a socket that cannot be bound changes nothing, and the error
    reply names the file, section and option. SIGHUP to circusd does the
    same (the error is then one line in circusd's log). Refused while
    circusd is stopping.

    ZMQ Message
    -----------

    ::

        {"command": "reloadconfig", "properties": {"waiting": false}}

    The response returns the status "ok" (with "waiting": true, once done,
    with the mapping "changes": added, removed, changed, sockets, plugins
    and, when it moved, stats_endpoint).

    Command line
    ------------

    ::

        $ circusctl reloadconfig [--waiting]
    """

    name = "reloadconfig"
    waits = True

    async def execute(self, arbiter, props):
        from circus.errors import ArbiterError, ConfigError
        # the file is read and everything new built (sockets bound) before
        # the first await: the error reaches the client even without "waiting"
        try:
            changes = await arbiter.reload_config()
        except ConfigError as exc:
            raise CommandError(errors.COMMAND_ERROR, "configuration error, nothing "
                               "changed: %s" % exc) from None
        except ArbiterError as exc:
            raise CommandError(errors.COMMAND_ERROR, str(exc)) from None
        return {"changes": changes or {}}


command = ReloadConfig()
