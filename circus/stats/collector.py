"""Per-process statistics, sampled once per tick at the least cost.

One psutil.Process is kept per pid for as long as the pid is watched,
with the CPU time it had at the previous tick, so that the CPU percentage
is a real measure over the interval between two ticks (a fresh object
would answer 0.0 every time). The percentage is what psutil's
cpu_percent(interval=None) computes (CPU seconds over wall seconds, 100
for one busy core), done here from the CPU times already read.

Each tick reads each process once. On Linux that is a single read of
/proc/PID/stat, which holds everything that changes (CPU times, nice, RSS,
VMS): psutil's oneshot() would read /proc/PID/stat and /proc/PID/statm
through Python file objects, and with 500 processes that alone cost more
than 5% of a core, as much as the whole of Circus 0.19's circusd-stats.
Elsewhere psutil's oneshot() does it. What never changes (create time,
user) is read once, through psutil; the command line is read again only
once a minute, in case a process renames itself. Children are walked only
when asked: walking them means reading every /proc entry of the host.
"""
import logging
import os
import time

import psutil

from circus.util import bytes2human

logger = logging.getLogger("circus")

CMDLINE_REFRESH = 60.0

_PROC_STAT = "/proc/%d/stat"
_HAS_PROC_STAT = os.path.exists("/proc/self/stat")
if _HAS_PROC_STAT:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _read_proc_stat(pid):
    """(cpu seconds, nice, rss, vms) of pid from one read of /proc/PID/stat;
    raises psutil.NoSuchProcess once it is gone."""
    try:
        fd = os.open(_PROC_STAT % pid, os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        raise psutil.NoSuchProcess(pid) from None
    try:
        data = os.read(fd, 2048)
    except ProcessLookupError:
        raise psutil.NoSuchProcess(pid) from None
    finally:
        os.close(fd)
    # the command name, in parentheses, may hold spaces: fields start after
    # its last ")"; field N of proc(5) is fields[N - 3]
    fields = data[data.rfind(b")") + 2:].split()
    return ((int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(fields[16]),
            int(fields[21]) * _PAGE_SIZE, int(fields[20]))


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


class _Tracked:
    __slots__ = ("proc", "cmdline", "cmdline_at", "username", "create_time", "cpu_time",
                 "cpu_at")

    def __init__(self, proc):
        self.proc = proc
        self.cmdline = None
        self.cmdline_at = 0.0
        self.username = None
        self.create_time = None
        self.cpu_time = None
        self.cpu_at = None


class ProcessCollector:
    def __init__(self, with_children=False):
        self.with_children = with_children
        self.total_memory = psutil.virtual_memory().total
        self._tracked = {}

    def __contains__(self, pid):
        return pid in self._tracked

    def __len__(self):
        return len(self._tracked)

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
        try:
            times = proc.cpu_times()
            tracked.cpu_time = times.user + times.system
            tracked.cpu_at = time.monotonic()
        except psutil.NoSuchProcess:
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

    def forget(self, pid):
        self._tracked.pop(pid, None)

    def forget_all_but(self, pids):
        for pid in list(self._tracked):
            if pid not in pids:
                del self._tracked[pid]

    def sample(self, pid, now=None):
        """The stats mapping of pid, or None when the process is gone (it is
        then forgotten)."""
        tracked = self._tracked.get(pid)
        if tracked is None:
            if not self.track(pid):
                return None
            tracked = self._tracked[pid]
        proc = tracked.proc
        now = time.time() if now is None else now
        try:
            if _HAS_PROC_STAT:
                ctime, nice, rss, vms = _read_proc_stat(pid)
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
            return _unavailable(pid, tracked, now)
        cpu = 0.0
        if tracked.cpu_time is not None and measured_at > tracked.cpu_at:
            cpu = round(max(0.0, ctime - tracked.cpu_time) * 100.0
                        / (measured_at - tracked.cpu_at), 1)
        tracked.cpu_time = ctime
        tracked.cpu_at = measured_at
        info = {
            "pid": pid,
            "cpu": cpu,
            "mem": round(rss * 100.0 / self.total_memory, 3),
            "rss": rss,
            "vms": vms,
            "mem_info1": bytes2human(rss),
            "mem_info2": bytes2human(vms),
            "ctime": "%d:%05.2f" % divmod(ctime, 60),
            "cpu_time": round(ctime, 2),
            "nice": nice,
            "username": tracked.username,
            "cmdline": tracked.cmdline or "",
            "create_time": tracked.create_time,
            "age": round(now - tracked.create_time, 2) if tracked.create_time else "N/A",
        }
        if children is not None:
            info["children"] = children
        return info


def _unavailable(pid, tracked, now):
    return {"pid": pid, "cpu": "N/A", "mem": "N/A", "rss": "N/A", "vms": "N/A",
            "mem_info1": "N/A", "mem_info2": "N/A", "ctime": "N/A", "cpu_time": "N/A",
            "nice": "N/A", "username": tracked.username or "N/A",
            "cmdline": tracked.cmdline or "", "create_time": tracked.create_time,
            "age": round(now - tracked.create_time, 2) if tracked.create_time else "N/A"}


def aggregate(infos):
    """The stat.<watcher> mapping: CPU averaged (a sum of percentages of
    different processes means little), memory summed, the oldest age."""
    pids = [info["pid"] for info in infos]
    result = {"pid": pids, "count": len(pids)}
    cpu = [i["cpu"] for i in infos]
    if "N/A" in cpu:
        result["cpu"] = "N/A"
    else:
        result["cpu"] = round(sum(cpu) / len(cpu), 2) if cpu else 0.0
    for key in ("mem", "rss", "vms"):
        values = [i[key] for i in infos]
        if "N/A" in values:
            result[key] = "N/A"
        else:
            result[key] = round(sum(values), 3) if key == "mem" else sum(values)
    ages = [i["age"] for i in infos if i["age"] != "N/A"]
    result["age"] = max(ages) if ages else "N/A"
    return result
