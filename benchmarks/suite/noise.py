"""How much CPU the rest of the machine takes while a measurement runs.

The suite shares its machine with whatever else runs there. For each wrk
run it measures the machine's busy CPU time (/proc/stat) and subtracts what
the servers under test, wrk and the suite itself used (/proc/PID/stat and
getrusage): the rest is other processes' work, "foreign" CPU. A run with
too much of it is repeated (a bounded number of times, within a time
budget); every run's foreign share is kept in the JSON, and the result file
says how many runs were repeated.
"""
import os
import resource
import time

from suite import util

# a run is repeated when others used more than this share of the machine
LIMIT_PCT = 10.0
RETRIES_PER_RUN = 2


def machine_busy_seconds():
    """Busy CPU seconds of the whole machine since boot (all CPUs)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / util.CLOCK_TICKS


def _tree_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            total += util.cpu_seconds_with_reaped(pid)
        except (OSError, IndexError, ValueError):
            pass
    return total


def _suite_seconds():
    """The suite's own CPU and that of the children it reaped (wrk)."""
    self_times = os.times()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_times.user + self_times.system + children.ru_utime + children.ru_stime


class Meter:
    """with Meter(pids_fn) as m: ...; then m.foreign_pct, and m.server_seconds:
    the CPU the processes under test used. pids_fn() lists them (a master
    and its descendants)."""

    def __init__(self, pids_fn):
        self.pids_fn = pids_fn
        self.foreign_pct = None
        self.server_seconds = None

    def __enter__(self):
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        pids = self.pids_fn()
        self.server0 = _tree_seconds(pids)
        self.own0 = self.server0 + _suite_seconds()
        return self

    def __exit__(self, *exc):
        busy1 = machine_busy_seconds()
        # the tree as it is now: workers that were replaced meanwhile are in
        # their master's reaped-children time
        pids = self.pids_fn()
        server1 = _tree_seconds(pids)
        self.server_seconds = server1 - self.server0
        own1 = server1 + _suite_seconds()
        elapsed = time.monotonic() - self.t0
        foreign = (busy1 - self.busy0) - (own1 - self.own0)
        capacity = elapsed * (os.cpu_count() or 1)
        self.foreign_pct = max(0.0, 100.0 * foreign / capacity) if capacity else 0.0


class Guard:
    """Decides whether a noisy run is repeated, within a time budget."""

    def __init__(self, budget_seconds, quiet_wait=10.0):
        self.budget = budget_seconds
        self.quiet_wait = quiet_wait
        self.spent = 0.0
        self.repeated = 0
        self.kept_noisy = 0

    def wait_quiet(self):
        """Up to quiet_wait seconds (from the budget) for a calm second."""
        t0 = time.monotonic()
        while self.spent + (time.monotonic() - t0) < self.budget:
            before = machine_busy_seconds()
            time.sleep(0.5)
            busy = (machine_busy_seconds() - before) / (0.5 * (os.cpu_count() or 1)) * 100
            if busy < LIMIT_PCT or time.monotonic() - t0 > self.quiet_wait:
                break
        self.spent += time.monotonic() - t0

    def retry(self, foreign_pct, attempt, cost):
        """True: throw this run away and do it again."""
        if foreign_pct is None or foreign_pct <= LIMIT_PCT:
            return False
        if attempt < RETRIES_PER_RUN and self.spent + cost <= self.budget:
            self.spent += cost
            self.repeated += 1
            return True
        self.kept_noisy += 1
        return False
