"""How many processes circusd may run: the ceilings and the one check of
every count, whichever way it is set (the config file at start and on
reload, get_arbiter, add, set, incr).

The ceilings guard against a typo or a hostile count (numprocesses =
100000000, incr web 1000000): without them circusd forks until the machine
refuses, and stops answering meanwhile. They are not a capacity plan: a
machine that runs 4096 sleeping processes easily cannot run 4096 Python web
workers of 50 MB each; set them lower for heavy processes.

- [circus] max_processes (default 4096): all the watchers together, counting
  what each is set to run (numprocesses). 4096 is an eighth of the smallest
  pid_max Linux uses by default (32768), and well below the process limit
  (ulimit -u) of a machine with 1 GB of memory: a circusd at its ceiling
  leaves room for everything else.
- [circus] max_numprocesses (default 2048), and max_numprocesses in a
  [watcher:NAME] section for that watcher: one watcher's numprocesses. Half
  the total, so that one runaway watcher cannot take every process the
  others may need.

Only growth is refused: a count that goes down (decr, or a ceiling lowered
by a reload) is always allowed. A reload starts new processes before it
stops the old ones, so for a moment a watcher runs up to twice its count;
the ceilings are on the counts, not on that overlap.
"""
from circus.errors import LimitError

DEFAULT_MAX_PROCESSES = 4096
DEFAULT_MAX_NUMPROCESSES = 2048


def check_counts(before, after, max_processes, max_numprocesses):
    """before, after: {watcher name: (numprocesses, its own max_numprocesses
    or None)} of every watcher, before and after a change. LimitError for
    the first watcher that grows above its ceiling, or when the total grows
    above max_processes."""
    grown = []
    for name, (count, own_max) in after.items():
        if count <= before.get(name, (0, None))[0]:
            continue
        grown.append(name)
        ceiling = own_max if own_max is not None else max_numprocesses
        if count > ceiling:
            where = "its max_numprocesses" if own_max is not None else \
                "max_numprocesses in [circus] or [watcher:%s]" % name
            raise LimitError("numprocesses %d for watcher %s is above the limit of %d "
                             "processes per watcher (raise it with %s)"
                             % (count, name, ceiling, where), name)
    total = sum(count for count, _ in after.values())
    if grown and total > max_processes and total > sum(c for c, _ in before.values()):
        name = grown[0]
        raise LimitError("numprocesses %d for watcher %s would make %d processes in all, "
                         "above the limit of %d (raise it with max_processes in [circus])"
                         % (after[name][0], name, total, max_processes), name)
