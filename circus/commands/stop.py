from circus.commands.base import CommandError, boolean, errors, string
from circus.commands.start import Start


class Stop(Start):
    """Stop the arbiter or a watcher

    Each process gets the watcher's stop_signal, then SIGKILL if it has not
    exited after graceful_timeout ("graceful": false: SIGKILL at once).
    circusd keeps running: `quit` stops it.

    ZMQ Message
    -----------

    ::

        {"command": "stop", "properties": {"name": "<name>", "match": "simple"}}

    The response returns the status "ok". With a name, that watcher is
    stopped; without, every watcher is. "match" may be "glob" or "regex",
    making the name a pattern (on lower-case names; a regex matches from
    the start of the name); the response then lists the "watchers" it
    matched. An optional "reason" (a string) is carried by the events.

    A watcher that stops publishes `watcher.NAME.stop`. Stopping a watcher
    that is stopped already answers "ok" too and changes nothing; it
    publishes `watcher.NAME.already_stopped` instead (no state changed, so
    no `stop` event), which tells plugins that would start the watcher
    again (flapping, while it waits retry_in) that it is wanted down.

    A watcher whose before_stop hook returns False, or whose before_signal
    hook refuses the stop signal, is not stopped: its processes keep
    running and the answer (with "waiting": true; otherwise the log) is an
    error saying which hook refused.

    Command line
    ------------

    ::

        $ circusctl stop [<name>] [--match=simple|glob|regex] [--waiting]
    """

    name = "stop"
    spec = dict(Start.spec, graceful=boolean, reason=string)
    starts = False

    def validate(self, props):
        super().validate(props)
        props.setdefault("graceful", True)

    async def on_arbiter(self, arbiter, props):
        await arbiter.stop_watchers(reason=props.get("reason"))

    async def on_watcher(self, watcher, props):
        if await watcher.stop(graceful=props["graceful"], reason=props.get("reason")) is False:
            raise refused(watcher)


def refused(watcher):
    """The error answered when a hook of the watcher refused its stop."""
    return CommandError(errors.COMMAND_ERROR, "watcher %s not stopped: %s"
                        % (watcher.name, watcher.refusal or "a hook refused"))


command = Stop()
