"""Process statistics for many processes at once, read straight from /proc.

The stats command describes every process circusd runs. psutil does it one
process at a time, and its children() scans every process of the system
for each call: O(N^2) for N workers, seconds for 500. A Snapshot reads each
/proc/<pid>/stat of the system once, which gives the parent map (children)
and the figures of our own processes in the same pass; then one more read
per process for its command line and user, kept for a minute (a process
may rename itself, or change its user after it started: either shows up to
a minute late; circusd-stats does the same). The mapping is the one
process_info() builds with psutil (same keys, same units, cpu% computed
the way psutil's cpu_percent(interval=None) does: since the previous look
at that process).
Where /proc does not look like Linux's, it falls back to psutil.
"""
import os
import pwd
import time

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGESIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
NO_SUCH_PROCESS = "No such process (stopped?)"

# processes read between two turns given to the loop by Snapshot.scan(); the
# reads of one chunk share a time
SCAN_CHUNK = 256
# (pid, start ticks) -> cpu ticks, and monotonic time, of the previous look:
# two mappings of numbers, not one of tuples, so that a look at thousands
# of processes adds no container per process for the garbage collector
_cpu_ticks = {}
_cpu_seen = {}
# (pid, start ticks) -> (command line, uid, monotonic time it was read)
_identities = {}
IDENTITY_REFRESH = 60.0
_users = {}
_static = {}


def _read(path, size=4096):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _boot_time():
    if "btime" not in _static:
        for line in _read("/proc/stat", 1 << 16).splitlines():
            if line.startswith(b"btime"):
                _static["btime"] = float(line.split()[1])
                break
    return _static["btime"]


def _total_memory():
    if "memtotal" not in _static:
        for line in _read("/proc/meminfo").splitlines():
            if line.startswith(b"MemTotal:"):
                _static["memtotal"] = int(line.split()[1]) * 1024
                break
    return _static["memtotal"]


def _username(uid):
    name = _users.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _users[uid] = name
    return name


_humans = {}  # bytes -> bytes2human's string: sizes repeat from look to look


def _human(n):
    text = _humans.get(n)
    if text is None:
        from circus.util import bytes2human
        if len(_humans) >= 65536:
            _humans.clear()
        text = _humans[n] = bytes2human(n)
    return text


class Snapshot:
    """One look at /proc, shared by the infos of many processes."""

    def __init__(self):
        self._stats = None
        self._seen = None
        self._children = None
        self.available = os.path.exists("/proc/self/stat")
        # one clock reading per look: its infos are of one moment
        self._now = time.time()
        self._monotonic = time.monotonic()

    def _scan(self):
        for _ in self._scanning():
            pass

    async def scan(self):
        """The look at /proc, giving the loop a turn after every SCAN_CHUNK
        processes: with thousands of them it takes a few hundred ms."""
        import asyncio
        for _ in self._scanning():
            await asyncio.sleep(0)

    def _scanning(self):
        """Reads every /proc/<pid>/stat; yields after every SCAN_CHUNK."""
        if not self.available:  # info() asks psutil
            self._stats, self._seen, self._children = {}, {}, {}
            return
        # pid -> the fields of its stat after the command name (which may
        # hold spaces and parentheses), as bytes: split again by info(),
        # which keeps no list per process alive
        stats, seen, children = {}, {}, {}
        names = [name for name in os.listdir("/proc") if name.isdigit()]
        chunk = SCAN_CHUNK
        for first in range(0, len(names), chunk):
            # the moment of these reads, for cpu%: one float for the chunk
            now = time.monotonic()
            for name in names[first:first + chunk]:
                try:
                    data = _read("/proc/%s/stat" % name, 1024)
                except OSError:  # gone meanwhile
                    continue
                fields = data[data.rfind(b")") + 2:]
                pid = int(name)
                stats[pid] = fields
                seen[pid] = now
                children.setdefault(int(fields.split(None, 2)[1]), []).append(pid)
            if first + chunk < len(names):
                yield
        live = set(stats)
        for cache in (_cpu_ticks, _cpu_seen, _identities):
            # list(): arbiters on other threads may look at the same time
            for key in [k for k in list(cache) if k[0] not in live]:
                cache.pop(key, None)
        self._stats, self._seen, self._children = stats, seen, children

    def info(self, pid, started=None, children=True):
        """The documented info mapping of pid, or a string saying why not.
        Its "children" are the info mappings of its children (without
        theirs), as the original Circus's clients print them."""
        if not self.available:
            return _psutil_info(pid, started)
        if self._stats is None:
            self._scan()
        fields = self._stats.get(pid)
        if fields is None or fields[:1] in (b"Z", b"X"):
            return NO_SUCH_PROCESS
        fields = fields.split()
        utime, stime = int(fields[11]), int(fields[12])
        start_ticks = int(fields[19])
        key = (pid, start_ticks)
        identity = self._identity(key)
        if identity is None:
            return NO_SUCH_PROCESS
        cmdline, uid = identity
        vms, rss = int(fields[20]), int(fields[21]) * _PAGESIZE
        ctime = (utime + stime) / _CLK_TCK
        create_time = _boot_time() + start_ticks / _CLK_TCK
        kids = self._children.get(pid)
        info = {
            "pid": pid,
            "cpu": self._cpu_percent(key, utime + stime),
            "mem": round(rss * 100.0 / _total_memory(), 1),
            "mem_info1": _human(rss),
            "mem_info2": _human(vms),
            "rss": rss,
            "vms": vms,
            "ctime": "%d:%05.2f" % divmod(ctime, 60),
            "nice": int(fields[16]),
            "username": _username(uid),
            "cmdline": cmdline,
            "create_time": create_time,
            "children": [info for info in (self.info(child, children=False)
                                           for child in sorted(kids))
                         if isinstance(info, dict)] if children and kids else [],
            "age": self._now - (started or create_time),
        }
        return info

    def _identity(self, key):
        """(command line, uid) of the process; None once it is gone."""
        now = self._monotonic
        known = _identities.get(key)
        if known is not None and now - known[2] < IDENTITY_REFRESH:
            return known[:2]
        try:
            fd = os.open("/proc/%d/cmdline" % key[0], os.O_RDONLY)
            try:
                raw = os.read(fd, 1 << 16)
                # the owner of a /proc/PID file is the process's user
                uid = os.fstat(fd).st_uid
            finally:
                os.close(fd)
        except OSError:
            return None
        cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        if cmdline:  # none yet between fork and exec: read again next time
            _identities[key] = (cmdline, uid, now)
        return cmdline, uid

    def _cpu_percent(self, key, ticks):
        now = self._seen[key[0]]
        previous_ticks = _cpu_ticks.get(key)
        previous_seen = _cpu_seen.get(key, now)
        _cpu_ticks[key] = ticks
        _cpu_seen[key] = now
        if previous_ticks is None or now <= previous_seen:
            return 0.0
        return round((ticks - previous_ticks) / _CLK_TCK / (now - previous_seen) * 100, 1)


def _psutil_info(pid, started):
    import psutil

    from circus.process import process_info
    try:
        return process_info(psutil.Process(pid), started)
    except psutil.Error:
        return NO_SUCH_PROCESS
