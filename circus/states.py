"""The lifecycles of a watcher, of one of its processes and of the arbiter:
their states and the edges each may take.

A leaf: circusd guards its objects with these tables, and a client or a
plugin may compare `status` replies to the members, which are the strings
the wire carries (str-valued: WatcherState.ACTIVE == "active").
"""
from __future__ import annotations

import enum

from circus.errors import IllegalTransition

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (circusctl's start)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TypeVar

    _State = TypeVar("_State", "WatcherState", "ProcessState", "ArbiterState")


class WatcherState(enum.StrEnum):
    """What the `status` command answers for a watcher."""
    STOPPED = "stopped"    # no process; where a watcher begins
    STARTING = "starting"  # start: its first processes spawn and get ready
    ACTIVE = "active"      # keeps numprocesses running, replaces the ones that die
    STOPPING = "stopping"  # its processes are being stopped (stop, give-up, close)
    # terminal, after close(): a closed watcher has left its arbiter, so no
    # status reply carries it; it refuses to start again
    CLOSED = "closed"


WATCHER_TRANSITIONS = {
    WatcherState.STOPPED: frozenset({WatcherState.STARTING, WatcherState.CLOSED}),
    # STOPPING: max_retry reached while the first processes start
    WatcherState.STARTING: frozenset({WatcherState.ACTIVE, WatcherState.STOPPING}),
    WatcherState.ACTIVE: frozenset({WatcherState.STOPPING}),
    # ACTIVE: a hook refused to stop a process, which keeps the watcher running
    WatcherState.STOPPING: frozenset({WatcherState.STOPPED, WatcherState.ACTIVE}),
    WatcherState.CLOSED: frozenset(),
}


class ProcessState(enum.StrEnum):
    """Where one child of a watcher is in its life. (Process.status keeps the
    documented UNEXISTING/RUNNING/DEAD_OR_ZOMBIE codes for library users.)"""
    CREATED = "created"    # built, not spawned (Process(spawn=False))
    STARTING = "starting"  # spawned; not ready yet (ready = notify, ready_delay)
    READY = "ready"        # ready: it may replace an old process in a reload
    STOPPING = "stopping"  # asked to stop; no longer counts toward numprocesses
    EXITED = "exited"      # reaped: returncode is set


PROCESS_TRANSITIONS = {
    ProcessState.CREATED: frozenset({ProcessState.STARTING}),
    ProcessState.STARTING: frozenset({ProcessState.READY, ProcessState.STOPPING,
                                      ProcessState.EXITED}),
    ProcessState.READY: frozenset({ProcessState.STOPPING, ProcessState.EXITED}),
    # back to STARTING or READY: a hook refused the stop signal, the process
    # keeps running (and counting) as it was
    ProcessState.STOPPING: frozenset({ProcessState.STARTING, ProcessState.READY,
                                      ProcessState.EXITED}),
    ProcessState.EXITED: frozenset(),
}


class ArbiterState(enum.StrEnum):
    """Arbiter.status: circusd as a whole."""
    STOPPED = "stopped"
    STARTING = "starting"  # sockets bound, autostart watchers starting
    ACTIVE = "active"      # serving commands
    STOPPING = "stopping"  # quitting: stopping every watcher


def check_transition(table: Mapping[_State, frozenset[_State]], current: _State, new: _State,
                     what: str) -> None:
    """IllegalTransition unless table allows current -> new; what names the
    object in the message."""
    if new not in table[current]:
        raise IllegalTransition("%s: no transition from %s to %s" % (what, current, new))
