"""What bounds how many processes one circusd can run here, and raising it.

A circusd with N children needs N pids free on the machine (kernel.pid_max,
kernel.threads-max), N processes under RLIMIT_NPROC for a user other than
root, and file descriptors: circusd reads every child's stdout and stderr
(it keeps their last lines), a pipe pair per child, so 2N + a margin
under RLIMIT_NOFILE.
The suite raises the rlimits of its own process (circusd inherits them) and,
as root, the two sysctls when they are too low, putting the sysctls back
afterwards; the result records the limits the run had.

circusd may also have ceilings of its own on how many processes it runs
(options named max_*process*): the benchmark sets every one it finds in
the options schema to the size it runs.
"""
import os
import resource

PID_MAX = "/proc/sys/kernel/pid_max"
THREADS_MAX = "/proc/sys/kernel/threads-max"
NR_OPEN = "/proc/sys/fs/nr_open"
# pids kept for everything else the machine runs meanwhile
MARGIN = 4096


def _read(path):
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _write(path, value):
    with open(path, "w") as handle:
        handle.write("%d\n" % value)


def _running():
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


def current():
    """The limits as they are now."""
    return {"nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "nproc": list(resource.getrlimit(resource.RLIMIT_NPROC)),
            "pid_max": _read(PID_MAX), "threads_max": _read(THREADS_MAX),
            "processes_running": _running()}


def _raise_rlimit(which, wanted, changes, name):
    soft, hard = resource.getrlimit(which)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new_hard = hard
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        new_hard = wanted
    new_soft = wanted if new_hard == resource.RLIM_INFINITY else min(wanted, new_hard)
    try:
        resource.setrlimit(which, (new_soft, new_hard))
        changes.append("%s %d -> %d" % (name, soft, new_soft))
    except (ValueError, OSError) as error:
        changes.append("%s left at %d: %s" % (name, soft, error))


def raise_for(processes):
    """Raise what would stop one circusd from running `processes` children.
    Returns (what was changed, a function that puts the sysctls back)."""
    changes, restore = [], []
    wanted_fds = 2 * processes + 1024
    nr_open = _read(NR_OPEN)
    _raise_rlimit(resource.RLIMIT_NOFILE, min(wanted_fds, nr_open or wanted_fds), changes,
                  "RLIMIT_NOFILE")
    needed = processes + _running() + MARGIN
    if os.geteuid() != 0:
        _raise_rlimit(resource.RLIMIT_NPROC, needed, changes, "RLIMIT_NPROC")
    for path, name in ((PID_MAX, "kernel.pid_max"), (THREADS_MAX, "kernel.threads-max")):
        value = _read(path)
        if value is None or value >= needed:
            continue
        if os.geteuid() != 0:
            changes.append("%s is %d, fewer than the %d needed (not root: left)"
                           % (name, value, needed))
            continue
        try:
            _write(path, needed)
        except OSError as error:
            changes.append("%s left at %d: %s" % (name, value, error))
            continue
        changes.append("%s %d -> %d" % (name, value, needed))
        restore.append((path, value))

    def put_back():
        for path, value in restore:
            try:
                _write(path, value)
            except OSError:
                pass
    return changes, put_back


def ceilings(processes):
    """({option: value} for [circus], {option: value} for the watcher): every
    process ceiling of circusd's options schema, set to `processes`."""
    try:
        from circus.options.schema import CIRCUS_SCHEMA, WATCHER_SCHEMA
    except ImportError:
        return {}, {}

    def found(schema):
        return {name: processes for name in schema.options
                if name.startswith("max_") and "process" in name}
    return found(CIRCUS_SCHEMA), found(WATCHER_SCHEMA)
