"""circusd's own counters, for the `metrics` command (and so Prometheus).

Plain integers and a few fixed-bucket histograms, fed from two places
only: the Arbiter's event publication (every state change is an event:
spawn, respawn, reap with its exit code, spawn_failure, max_retry, stop
with its reason, recycle, reload with its duration, ready_timeout) and the Controller's
dispatch (each command's name, status and latency). Counting costs a dict
look-up and an addition per event; nothing here reads /proc or imports
prometheus_client: circusd-metrics (circus.metrics) turns the snapshot
into the exposition, outside circusd's loop.

The snapshot reads the gauges (wanted, running and ready processes, the
state) from the watchers themselves when asked, so they can never drift
from what the watchers hold. A watcher's pids are sent only when they
changed since the version the caller says it knows: every change of a
watcher's processes is a spawn or a reap, so those two counters (and the
counters' own epoch) version the set, and a steady scrape carries no pid.
"""
import bisect
import itertools
import signal
import time

from circus import __version__
from circus.states import ProcessState

# upper bounds in seconds; the last bucket (+Inf) is implicit
COMMAND_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RELOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# the reason the flapping plugin gives its stops (circus.plugins.flapping)
FLAPPING_REASON = "flapping"


class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum."""
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value):
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def as_dict(self):
        return {"counts": list(self.counts), "sum": self.sum}


class WatcherCounters:
    __slots__ = ("epoch", "spawns", "reaps", "respawns", "recycles", "exits",
                 "spawn_failures", "give_ups", "reloads")

    _epochs = itertools.count(1)

    def __init__(self):
        # a watcher removed then added again under its name starts afresh:
        # its pids' version must not match the old one's
        self.epoch = next(self._epochs)
        self.spawns = 0
        self.reaps = 0
        self.respawns = 0
        self.recycles = 0
        self.exits = {}  # "exit:CODE" or "signal:NAME" -> count
        self.spawn_failures = {}  # cause -> count
        self.give_ups = {}  # cause (max_retry, flapping) -> count
        self.reloads = Histogram(RELOAD_BUCKETS)

    @property
    def pids_version(self):
        return "%d.%d.%d" % (self.epoch, self.spawns, self.reaps)

    def as_dict(self):
        return {"spawns": self.spawns, "respawns": self.respawns, "recycles": self.recycles,
                "exits": dict(self.exits), "spawn_failures": dict(self.spawn_failures),
                "give_ups": dict(self.give_ups), "reload_duration": self.reloads.as_dict()}


def exit_cause(exit_code):
    """'exit:N' for an exit status, 'signal:NAME' for a death by signal
    (circus reports those as a negative exit code)."""
    if not isinstance(exit_code, int):
        return "exit:unknown"
    if exit_code >= 0:
        return "exit:%d" % exit_code
    try:
        return "signal:%s" % signal.Signals(-exit_code).name
    except ValueError:
        return "signal:%d" % -exit_code


def _bump(mapping, key):
    mapping[key] = mapping.get(key, 0) + 1


class DaemonCounters:
    """The counters of one circusd: listen to its events (on_event) and its
    commands (command)."""

    def __init__(self):
        self.watchers = {}  # name -> WatcherCounters
        self.commands = {}  # (command, status) -> Histogram

    def _of(self, name):
        counters = self.watchers.get(name)
        if counters is None:
            counters = self.watchers[name] = WatcherCounters()
        return counters

    # --- feeding ------------------------------------------------------------
    def on_event(self, topic, msg):
        if not topic.startswith("watcher."):
            return
        name, _, action = topic[8:].rpartition(".")
        handler = _HANDLERS.get(action)
        if handler is not None:
            handler(self, name, msg)
        elif action == "remove":
            self.watchers.pop(name, None)

    def _spawn(self, name, msg):
        self._of(name).spawns += 1

    def _respawn(self, name, msg):
        self._of(name).respawns += 1

    def _recycle(self, name, msg):
        self._of(name).recycles += 1

    def _reap(self, name, msg):
        counters = self._of(name)
        counters.reaps += 1
        _bump(counters.exits, exit_cause(msg.get("exit_code")))

    def _spawn_failure(self, name, msg):
        _bump(self._of(name).spawn_failures, str(msg.get("cause") or "error"))

    def _ready_timeout(self, name, msg):
        _bump(self._of(name).spawn_failures, "ready_timeout")

    def _max_retry(self, name, msg):
        _bump(self._of(name).give_ups, "max_retry")

    def _stop(self, name, msg):
        if msg.get("reason") == FLAPPING_REASON:
            _bump(self._of(name).give_ups, "flapping")

    def _reload(self, name, msg):
        duration = msg.get("duration")
        if isinstance(duration, (int, float)):
            self._of(name).reloads.observe(duration)

    def command(self, name, status, seconds):
        """One command answered (status "ok" or "error") after seconds."""
        key = (name, status)
        histogram = self.commands.get(key)
        if histogram is None:
            histogram = self.commands[key] = Histogram(COMMAND_BUCKETS)
        histogram.observe(seconds)

    # --- reading ------------------------------------------------------------
    def snapshot(self, arbiter, known=None, pids=True):
        """The `metrics` reply, with no system call. known: {watcher name:
        pids_version} the caller holds; those watchers' pids are left out
        while their version is the same (and all of them without pids)."""
        known = known or {}
        watchers = {}
        ready, stopping = ProcessState.READY, ProcessState.STOPPING
        for watcher in arbiter.watchers:
            running = ready_count = 0
            for process in watcher.processes.values():
                state = process.state
                if state is not stopping:
                    running += 1
                    if state is ready:
                        ready_count += 1
            counters = self.watchers.get(watcher.name)
            entry = watchers[watcher.name] = {
                "state": str(watcher.state), "autostart": watcher.autostart,
                "wanted": watcher.numprocesses, "running": running, "ready": ready_count,
                "counters": (counters or _EMPTY).as_dict()}
            version = counters.pids_version if counters is not None else None
            entry["pids_version"] = version
            if pids and (version is None or known.get(watcher.name) != version):
                entry["pids"] = list(watcher.processes)
        commands = [{"command": name, "status": status, "duration": histogram.as_dict()}
                    for (name, status), histogram in self.commands.items()]
        return {"version": __version__, "pid": arbiter.pid, "started_at": arbiter.started_at,
                "state": str(arbiter.status), "time": time.time(), "watchers": watchers,
                "sockets": [s.info() for s in arbiter.sockets.values()],
                "commands": commands,
                "buckets": {"command": COMMAND_BUCKETS, "reload": RELOAD_BUCKETS}}


_EMPTY = WatcherCounters()
_HANDLERS = {"spawn": DaemonCounters._spawn, "respawn": DaemonCounters._respawn,
             "recycle": DaemonCounters._recycle, "reap": DaemonCounters._reap,
             "spawn_failure": DaemonCounters._spawn_failure,
             "ready_timeout": DaemonCounters._ready_timeout,
             "max_retry": DaemonCounters._max_retry, "stop": DaemonCounters._stop,
             "reload": DaemonCounters._reload}
