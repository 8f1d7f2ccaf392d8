from circus.commands.base import Command, errors, CommandError


class ReloadConfig(Command):
    """Reload the configuration file

    circusd reads its configuration file again and applies what changed:
    new watchers are added, removed ones are stopped and removed, changed
    ones are replaced (new processes first), changed sockets are bound anew.
    Watchers and sockets that did not change keep running untouched. A
    configuration error changes nothing. SIGHUP to circusd does the same.

    ZMQ Message
    -----------

    ::

        {"command": "reloadconfig", "properties": {"waiting": false}}

    The response returns the status "ok" (with "waiting": true, once done,
    with the mapping "changes": added, removed, changed, sockets).

    Command line
    ------------

    ::

        $ circusctl reloadconfig [--waiting]
    """

    name = "reloadconfig"
    waits = True

    async def execute(self, arbiter, props):
        from circus.config import ConfigError
        try:
            changes = await arbiter.reload_config()
        except ConfigError as exc:
            raise CommandError(errors.COMMAND_ERROR, "configuration error: %s" % exc) from None
        return {"changes": changes or {}}


command = ReloadConfig()
