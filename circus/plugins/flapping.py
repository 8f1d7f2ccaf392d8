"""Flapping: stop a watcher whose processes keep dying, retry it later.

::

    [plugin:flapping]
    use = circus.plugins.flapping.Flapping
    attempts = 2
    window = 1
    retry_in = 7
    max_retry = 5

Options (plugin section; each may be overridden for one watcher in its own
section as ``flapping.<option>``, e.g. ``flapping.max_retry = 2``):

- ``attempts``: how many unexpected deaths inside ``window`` make a watcher
  flapping (default 2).
- ``window``: the window, in seconds (default 1).
- ``retry_in``: seconds between stopping a flapping watcher and starting it
  again (default 7).
- ``max_retry``: how many times a flapping watcher is started again before
  the plugin gives up and leaves it stopped; -1 retries forever (default 5).
  Once the watcher has run a whole ``window`` without an unexpected death,
  the count starts over.
- ``enabled`` (per watcher only, ``flapping.enabled = false``): leave this
  watcher alone.

An unexpected death is a ``reap`` of a process circusd did not kill (no
``kill`` event for it): stops, reloads, ``kill`` commands, max_age recycling
and other plugins' kills never count. A watcher that gives up on its own
(circusd's own ``max_retry`` back-off, a ``max_retry`` event then a ``stop``)
is treated as flapping too: the plugin starts it again after ``retry_in``.

What it does shows as events: the ``stop`` and ``start`` of the watcher (it
sends the ``stop`` and ``start`` commands) and, before each stop, a ``set``
of the watcher's options ``flapping.state`` ("retrying", then "gave up", or
"stopped" when an operator stops it meanwhile; "ok" again once an operator
starts the watcher or it runs fine), ``flapping.round``
and ``flapping.retry_at`` (unix time), i.e. a ``watcher.NAME.updated`` event.
``circusctl get NAME flapping.state`` reads it back.

The plugin's own stops carry the reason ``flapping`` (the ``reason``
property of the ``stop`` command, echoed by the ``stop`` event). A watcher
an operator stops (a ``stop`` event without that reason) is never started
again by the plugin; an operator ``start`` resets its count. That holds
while the plugin waits ``retry_in`` too: the watcher is stopped already
then, and circusd answers the operator's ``stop`` with an
``already_stopped`` event, upon which the plugin cancels its retry and sets
``flapping.state`` to "stopped". (``set NAME flapping.enabled false`` also
keeps a watcher down.)
"""
import collections
import logging
import time

from circus.plugins import CircusPlugin
from circus.plugins._options import WatcherOptions, boolean, integer, number, option, parse
from circus.states import WatcherState

SPEC = {
    "attempts": (integer, 2),
    "window": (number, 1.0),
    "retry_in": (number, 7.0),
    "max_retry": (integer, 5),
    "enabled": (boolean, True),
}

logger = logging.getLogger("circus.plugins.flapping")

# the reason the plugin gives its stop commands: its own stops are told from
# an operator's by it
STOP_REASON = "flapping"

# phases of a watcher, as the plugin sees it
RUNNING = "running"      # its deaths count
STARTING = "starting"    # the plugin is starting it again; deaths count
STOPPING = "stopping"    # the plugin is stopping it
WAITING = "waiting"      # stopped by the plugin, to be started after retry_in
GAVE_UP = "gave up"      # stopped by the plugin for good
STOPPED = "stopped"      # stopped by someone else: left alone


class _Watched:
    def __init__(self):
        self.phase = RUNNING
        self.deaths = collections.deque()
        self.killed = set()
        self.rounds = 0
        self.gave_up_itself = False
        self.timer = None
        self.settings = None  # those of the last flapping round
        self.reported = False  # a flapping.state other than "ok" is set

    def cancel_timer(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Flapping(CircusPlugin):
    name = "flapping"

    def __init__(self, endpoint, pubsub_endpoint, check_delay, ssh_server=None, **config):
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server=ssh_server, **config)
        self.defaults = {key: option(config, key, convert, default)
                         for key, (convert, default) in SPEC.items()}
        self.overrides = WatcherOptions(self, "flapping")
        self.watched = {}

    async def settings(self, name):
        raw = dict(self.defaults)
        raw.update(await self.overrides.get(name))
        return parse(raw, SPEC, "watcher %s" % name)

    def handle_recv(self, data):
        name, event, msg = self.split_data(data)
        if name is None or name == self.watcher_name:
            return
        self.overrides.on_event(name, event)
        if event == "remove":
            watched = self.watched.pop(name, None)
            if watched is not None:
                watched.cancel_timer()
            return
        watched = self.watched.setdefault(name, _Watched())
        pid = msg.get("process_pid")
        if event == "kill":
            watched.killed.add(pid)
        elif event == "reap":
            if pid in watched.killed:
                watched.killed.discard(pid)
            elif watched.phase in (RUNNING, STARTING):
                self.spawn(self._died(name, watched, time.monotonic()))
        elif event == "max_retry":
            watched.gave_up_itself = True
        elif event == "stop":
            self._stopped(name, watched, msg.get("reason"))
        elif event == "already_stopped":
            if msg.get("reason") != STOP_REASON:
                self._stopped_again(name, watched)
        elif event == "start":
            self._started(name, watched)

    # --- events ---------------------------------------------------------------
    async def _died(self, name, watched, when):
        settings = await self.settings(name)
        if not settings.enabled or watched.phase not in (RUNNING, STARTING):
            return
        watched.deaths.append(when)
        while watched.deaths and watched.deaths[0] < when - settings.window:
            watched.deaths.popleft()
        if len(watched.deaths) >= settings.attempts:
            await self._flapping(name, watched, settings)
        elif watched.rounds and watched.phase == RUNNING:
            self._arm_recovery(name, watched, settings)

    def _stopped(self, name, watched, reason=None):
        if watched.phase == STOPPING and (reason == STOP_REASON or watched.gave_up_itself):
            # the plugin's stop, or the watcher's own give-up meanwhile
            watched.gave_up_itself = False
            self._stopped_for_flapping(name, watched)
            return
        if watched.phase in (WAITING, GAVE_UP):
            watched.gave_up_itself = False
            return
        if watched.phase == STOPPING:
            # an operator stopped it before the plugin could
            watched.gave_up_itself = False
            self._operator_stopped(name, watched)
            return
        if watched.gave_up_itself:
            # circusd's own back-off gave up: a flapping watcher all the same
            watched.gave_up_itself = False
            self.spawn(self._gave_up_itself(name, watched))
            return
        # an operator's stop: never undone here
        watched.cancel_timer()
        watched.phase = STOPPED
        watched.deaths.clear()
        watched.rounds = 0

    def _stopped_again(self, name, watched):
        """Somebody (not the plugin) asked to stop a watcher that was stopped
        already: while the plugin means to start it again, that is an
        operator keeping it down."""
        if watched.phase in (STOPPING, WAITING):
            self._operator_stopped(name, watched)

    def _operator_stopped(self, name, watched):
        logger.info("watcher %s: stopped by an operator, not started again", name)
        watched.cancel_timer()
        watched.phase = STOPPED
        watched.deaths.clear()
        watched.rounds = 0
        self.spawn(self._report(name, state="stopped", round=0))

    async def _gave_up_itself(self, name, watched):
        settings = await self.settings(name)
        if settings.enabled and watched.phase in (RUNNING, STARTING):
            await self._flapping(name, watched, settings)

    def _started(self, name, watched):
        if watched.phase == STARTING:
            # the plugin's own start
            watched.phase = RUNNING
            self._arm_recovery(name, watched, watched.settings)
            return
        if watched.phase == RUNNING:
            return
        # an operator started it: start over
        watched.cancel_timer()
        report = watched.rounds or watched.phase != STOPPED or watched.reported
        watched.phase = RUNNING
        watched.deaths.clear()
        watched.rounds = 0
        watched.gave_up_itself = False
        if report:
            self.spawn(self._report(name, state="ok", round=0))

    # --- actions --------------------------------------------------------------
    async def _flapping(self, name, watched, settings):
        """Stop the watcher; _stopped_for_flapping goes on once it is stopped.
        Commands are answered once accepted: the events tell when they are
        done, however long the watcher's graceful_timeout."""
        watched.phase = STOPPING
        watched.settings = settings
        watched.cancel_timer()
        watched.deaths.clear()
        if 0 <= settings.max_retry <= watched.rounds:
            logger.info("watcher %s is flapping: giving up after %d retries", name, watched.rounds)
            await self._report(name, state="gave up", round=watched.rounds)
        else:
            logger.info("watcher %s is flapping: stopping it, retry %d%s in %.1fs", name,
                        watched.rounds + 1, "/%d" % settings.max_retry
                        if settings.max_retry >= 0 else "", settings.retry_in)
            await self._report(name, state="retrying", round=watched.rounds + 1,
                               retry_at=time.time() + settings.retry_in)
        status = (await self.acall("status", name=name)).get("status")
        if watched.phase != STOPPING:
            return  # its stop event came meanwhile
        if status == WatcherState.STOPPED:
            self._stopped_for_flapping(name, watched)  # it had given up on its own
        else:
            await self.acall("stop", name=name, reason=STOP_REASON)

    def _stopped_for_flapping(self, name, watched):
        settings = watched.settings
        if 0 <= settings.max_retry <= watched.rounds:
            watched.phase = GAVE_UP
            return
        watched.rounds += 1
        watched.phase = WAITING
        watched.timer = self.loop.call_later(settings.retry_in,
                                             lambda: self.spawn(self._restart(name, watched)))

    async def _restart(self, name, watched):
        watched.timer = None
        settings = await self.settings(name)
        if watched.phase != WAITING or self.watched.get(name) is not watched:
            return
        if not settings.enabled:
            watched.phase = STOPPED  # disabled meanwhile: leave it stopped
            return
        watched.phase = STARTING
        logger.info("watcher %s: starting it again (retry %d)", name, watched.rounds)
        await self.acall("start", name=name)

    def _arm_recovery(self, name, watched, settings):
        """A whole window without an unexpected death: the count starts over."""
        watched.cancel_timer()

        def recovered():
            watched.timer = None
            if watched.phase == RUNNING and watched.rounds:
                watched.rounds = 0
                self.spawn(self._report(name, state="ok", round=0))
        watched.timer = self.loop.call_later(settings.window, recovered)

    async def _report(self, name, **state):
        watched = self.watched.get(name)
        if watched is not None:
            watched.reported = state.get("state") != "ok"
        options = {"flapping." + key: value for key, value in state.items()}
        reply = await self.acall("set", name=name, options=options)
        if reply.get("status") != "ok":
            logger.info("cannot report on %s: %s", name, reply.get("reason"))
