"""Per-process statistics, sampled once per tick at the least cost.

Each watched pid keeps what its next sample needs: the CPU time it had at
the previous tick, so that the CPU percentage is a real measure over the
interval between two ticks (what psutil's cpu_percent(interval=None)
computes: CPU seconds over wall seconds, 100 for one busy core), and, on
Linux, an open descriptor of its /proc/PID/stat.

Each tick reads each process once: one pread() of /proc/PID/stat, which
holds everything that changes (CPU times, nice, RSS, VMS). Opening the file
costs as much as reading it, so the descriptor stays open for the life of
the process, within a budget of descriptors (beyond it, open, read, close);
it also never reads a newer process that reuses the pid, since the open
file belongs to the old one and answers ESRCH once it is reaped. psutil's
oneshot() would read /proc/PID/stat and /proc/PID/statm through Python file
objects, several times the cost. Elsewhere psutil's oneshot() does it. What
never changes (create time, user) is read once, through psutil; the command
line is read again only once a minute, in case a process renames itself.
Children are walked only when asked: walking them means reading every
/proc entry of the host.

A sample is a row of wire.PROCESS_FIELDS (sample_row), or the same as a
mapping (sample).
"""
import logging
import os
import resource
import time

import psutil

from circus.stats.wire import NOT_AVAILABLE, PROCESS_FIELDS, add_derived

logger = logging.getLogger("circus")

CMDLINE_REFRESH = 60.0
# descriptors kept free for sockets, logs and the like
FD_RESERVE = 128

_PROC_STAT = "/proc/%d/stat"
_HAS_PROC_STAT = os.path.exists("/proc/self/stat")
if _HAS_PROC_STAT:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _parse_proc_stat(data):
    # the command name, in parentheses, may hold spaces: fields start after
    # its last ")"; field N of proc(5) is fields[N - 3]
    fields = data[data.rfind(b")") + 2:].split(None, 22)
    return ((int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(fields[16]),
            int(fields[21]) * _PAGE_SIZE, int(fields[20]))


def _read_proc_stat(pid, fd=None):
    """(cpu seconds, nice, rss, vms) of pid from one read of /proc/PID/stat
    (of fd, when it is open already); raises psutil.NoSuchProcess once it
    is gone."""
    try:
        if fd is not None:
            return _parse_proc_stat(os.pread(fd, 1024, 0))
        fd = os.open(_PROC_STAT % pid, os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None
    try:
        data = os.read(fd, 1024)
    except ProcessLookupError:
        raise psutil.NoSuchProcess(pid) from None
    finally:
        os.close(fd)
    return _parse_proc_stat(data)


def _read_psutil(proc):
    with proc.oneshot():
        times = proc.cpu_times()
        mem = proc.memory_info()
        return times.user + times.system, proc.nice(), mem.rss, mem.vms


def read_usage(pid):
    """(cpu seconds, rss bytes) of pid, from the reader sample() uses (one
    read of /proc/PID/stat on Linux), for callers that want the figures
    and nothing else (circusd-metrics); None once the process is gone."""
    try:
        if _HAS_PROC_STAT:
            ctime, _, rss, _ = _read_proc_stat(pid)
        else:
            ctime, _, rss, _ = _read_psutil(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return None
    return ctime, rss
def fd_budget():
    """How many /proc descriptors may stay open under RLIMIT_NOFILE."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(0, soft - FD_RESERVE)


class _Tracked:
    __slots__ = ("proc", "fd", "cmdline", "cmdline_at", "username", "create_time", "cpu_time",
                 "cpu_at", "raw", "figures")

    def __init__(self, proc):
        self.proc = proc
        self.fd = None
        self.cmdline = None
        self.cmdline_at = 0.0
        self.username = None
        self.create_time = None
        self.cpu_time = None
        self.cpu_at = None
        # the raw fields of the last fast read, and the row figures made of
        # them: most processes are idle, and their figures do not change
        self.raw = None
        self.figures = None


def _cpu_since(tracked, ctime, measured_at):
    """The CPU percentage of a process since its previous sample (0.0 at its
    first), which ctime at measured_at becomes."""
    cpu = 0.0
    if tracked.cpu_time is not None and measured_at > tracked.cpu_at:
        cpu = round(max(0.0, ctime - tracked.cpu_time) * 100.0
                    / (measured_at - tracked.cpu_at), 1)
    tracked.cpu_time = ctime
    tracked.cpu_at = measured_at
    return cpu


class ProcessCollector:
    def __init__(self, with_children=False, max_open=None):
        self.with_children = with_children
        self.fields = PROCESS_FIELDS + (("children",) if with_children else ())
        self.total_memory = psutil.virtual_memory().total
        self.max_open = fd_budget() if max_open is None else max_open
        self._open = 0
        self._tracked = {}

    def __contains__(self, pid):
        return pid in self._tracked

    def __len__(self):
        return len(self._tracked)

    @property
    def open_files(self):
        return self._open

    def track(self, pid):
        """Start following pid: its first CPU sample starts now, so the next
        tick reports a real percentage. False when the process is gone."""
        tracked = self._tracked.get(pid)
        if tracked is not None:
            return True
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return False
        tracked = _Tracked(proc)
        if _HAS_PROC_STAT and self._open < self.max_open:
            try:
                tracked.fd = os.open(_PROC_STAT % pid, os.O_RDONLY)
                self._open += 1
            except (FileNotFoundError, ProcessLookupError):
                return False
            except OSError as exc:  # EMFILE: no descriptor to keep, read it each time
                logger.debug("/proc/%d/stat not kept open: %s", pid, exc)
        try:
            times = proc.cpu_times()
            tracked.cpu_time = times.user + times.system
            tracked.cpu_at = time.monotonic()
        except psutil.NoSuchProcess:
            self._close(tracked)
            return False
        except psutil.AccessDenied:
            pass
        try:
            tracked.create_time = proc.create_time()
        except psutil.Error:
            pass
        self._tracked[pid] = tracked
        return True

    def retrack(self, pid):
        """A new process under a pid we may have seen before (pid reuse)."""
        self.forget(pid)
        return self.track(pid)

    def _close(self, tracked):
        if tracked.fd is not None:
            os.close(tracked.fd)
            tracked.fd = None
            self._open -= 1

    def forget(self, pid):
        tracked = self._tracked.pop(pid, None)
        if tracked is not None:
            self._close(tracked)

    def forget_all_but(self, pids):
        for pid in [p for p in self._tracked if p not in pids]:
            self.forget(pid)

    def close(self):
        self.forget_all_but(())

    def sample_rows(self, pids, now=None):
        """The rows (self.fields, in order) of pids, leaving out (and
        forgetting) the processes that are gone. One tight loop: with a
        thousand processes each tick, every step per process counts, and
        the figures of a process whose fields have not changed since the
        previous tick (an idle one) are taken as they were."""
        now = time.time() if now is None else now
        rows = []
        append = rows.append
        tracked_get = self._tracked.get
        pread = os.pread
        # one clock reading for the whole pass: what it reads takes
        # microseconds, a CPU percentage is over a second
        measured_at = time.monotonic()
        refresh_before = now - CMDLINE_REFRESH
        for pid in pids:
            tracked = tracked_get(pid)
            if (tracked is None or tracked.fd is None or tracked.cmdline_at < refresh_before
                    or tracked.username is None or self.with_children):
                row = self._sample_slowly(pid, now)
                if row is not None:
                    append(row)
                continue
            try:
                data = pread(tracked.fd, 1024, 0)
            except ProcessLookupError:
                self.forget(pid)
                continue
            # the command name, in parentheses, may hold spaces: fields start
            # after its last ")"; field N of proc(5) is fields[N - 3]: utime,
            # stime, nice, vsize, rss
            fields = data[data.rfind(b")") + 2:].split(None, 22)
            raw = (fields[11], fields[12], fields[16], fields[20], fields[21])
            if raw == tracked.raw:
                cpu = 0.0
                tracked.cpu_at = measured_at
            else:
                cpu = self._new_figures(tracked, raw, measured_at)
            create_time = tracked.create_time
            append([pid, cpu, *tracked.figures, tracked.username, tracked.cmdline,
                    create_time, round(now - create_time, 2) if create_time else NOT_AVAILABLE])
        return rows

    def _new_figures(self, tracked, raw, measured_at):
        """Keep the row figures (mem, rss, vms, cpu_time, nice) of raw, the
        fields just read; returns the CPU percentage since the last read."""
        ctime = (int(raw[0]) + int(raw[1])) / _CLOCK_TICKS
        rss = int(raw[4]) * _PAGE_SIZE
        cpu = _cpu_since(tracked, ctime, measured_at)
        tracked.raw = raw
        tracked.figures = (round(rss * 100.0 / self.total_memory, 3), rss, int(raw[3]),
                           round(ctime, 2), int(raw[2]))
        return cpu

    def sample_row(self, pid, now=None):
        """The row of pid, or None when the process is gone (it is then
        forgotten)."""
        rows = self.sample_rows((pid,), now)
        return rows[0] if rows else None

    def _sample_slowly(self, pid, now):
        """sample_rows for a process that is new, has no descriptor kept
        open, is due a look at its command line, or when children are
        wanted; and everywhere on systems without /proc."""
        tracked = self._tracked.get(pid)
        if tracked is None:
            if not self.track(pid):
                return None
            tracked = self._tracked[pid]
        proc = tracked.proc
        try:
            if _HAS_PROC_STAT:
                ctime, nice, rss, vms = _read_proc_stat(pid, tracked.fd)
            else:
                ctime, nice, rss, vms = _read_psutil(proc)
            measured_at = time.monotonic()
            if tracked.cmdline is None or now - tracked.cmdline_at > CMDLINE_REFRESH:
                # a process caught between fork and exec has no argv yet
                cmdline = " ".join(proc.cmdline())
                if cmdline:
                    tracked.cmdline = cmdline
                    tracked.cmdline_at = now
            if tracked.username is None:
                tracked.username = proc.username()
            children = [c.pid for c in proc.children()] if self.with_children else None
        except psutil.NoSuchProcess:
            self.forget(pid)
            return None
        except psutil.AccessDenied:
            return self._unavailable(pid, tracked, now)
        cpu = _cpu_since(tracked, ctime, measured_at)
        create_time = tracked.create_time
        row = [pid, cpu, round(rss * 100.0 / self.total_memory, 3), rss, vms, round(ctime, 2),
               nice, tracked.username, tracked.cmdline or "", create_time,
               round(now - create_time, 2) if create_time else NOT_AVAILABLE]
        if children is not None:
            row.append(children)
        return row

    def _unavailable(self, pid, tracked, now):
        row = [pid] + [NOT_AVAILABLE] * 6 + [
            tracked.username or NOT_AVAILABLE, tracked.cmdline or "", tracked.create_time,
            round(now - tracked.create_time, 2) if tracked.create_time else NOT_AVAILABLE]
        if self.with_children:
            row.append([])
        return row

    def sample(self, pid, now=None):
        """The stats mapping of pid (the fields, mem_info1, mem_info2 and
        ctime), or None when the process is gone."""
        row = self.sample_row(pid, now)
        if row is None:
            return None
        return add_derived(dict(zip(self.fields, row)))


def aggregate(rows, fields=PROCESS_FIELDS):
    """The stat.<watcher> mapping of rows: CPU averaged (a sum of
    percentages of different processes means little), memory summed, the
    oldest age."""
    index = {name: fields.index(name) for name in ("pid", "cpu", "mem", "rss", "vms", "age")}
    pids = [row[index["pid"]] for row in rows]
    result = {"pid": pids, "count": len(pids)}
    cpu = [row[index["cpu"]] for row in rows]
    if NOT_AVAILABLE in cpu:
        result["cpu"] = NOT_AVAILABLE
    else:
        result["cpu"] = round(sum(cpu) / len(cpu), 2) if cpu else 0.0
    for key in ("mem", "rss", "vms"):
        values = [row[index[key]] for row in rows]
        if NOT_AVAILABLE in values:
            result[key] = NOT_AVAILABLE
        else:
            result[key] = round(sum(values), 3) if key == "mem" else sum(values)
    ages = [row[index["age"]] for row in rows]
    ages = [age for age in ages if age != NOT_AVAILABLE]
    result["age"] = max(ages) if ages else NOT_AVAILABLE
    return result
