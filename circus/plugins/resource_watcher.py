"""Resource watcher: act on processes that use too much (or too little)
CPU or memory for too long.

::

    [plugin:resources]
    use = circus.plugins.resource_watcher.ResourceWatcher
    watcher = worker
    loop_rate = 5
    max_mem = 200M
    max_count = 3

    [watcher:importer]
    cmd = ...
    resource_watcher.max_cpu = 90
    resource_watcher.action = SIGUSR1

Every ``loop_rate`` seconds the plugin reads each watched process's CPU and
memory (the ``stats`` command). A process beyond a limit at ``max_count``
consecutive checks triggers the ``action``; its count then starts over.

Options (plugin section; each may be overridden for one watcher in its own
section as ``resource_watcher.<option>``):

- ``watcher``: the watchers to watch, names or glob patterns separated by
  commas (plugin section only). A watcher that sets any
  ``resource_watcher.*`` option is watched too. Default: only those.
- ``loop_rate``: seconds between two checks (default 1; plugin section
  only, as the checks of every watcher go together).
- ``max_cpu``, ``min_cpu``: CPU use of one process, in percent of one CPU.
- ``max_mem``, ``min_mem``: memory of one process, either resident bytes
  with a unit (``200M``, ``1.5G``, ``512K``, ``4096B``) or a percent of the
  machine's memory (``10%``, or a bare number).
- ``max_count``: consecutive checks beyond a limit before acting (default 3).
- ``action``: ``restart`` restarts the whole watcher (default), ``reload``
  reloads it gracefully, ``kill`` stops just that process (its watcher
  starts a new one), and a signal name or number (``SIGUSR1``, ``HUP``)
  is sent to that process.
- ``enabled`` (per watcher only): ``false`` leaves that watcher alone.

Limits not set are not checked. A min_* limit is only checked once a process
has lived ``loop_rate * max_count`` seconds, so a starting process is not
taken for an idle one.
"""
import logging
import re
import signal

from circus.plugins import CircusPlugin
from circus.plugins._options import (
    WatcherOptions,
    boolean,
    integer,
    matches,
    number,
    option,
    parse,
    patterns,
)
from circus.util import bytes2human, to_signum

logger = logging.getLogger("circus.plugins.resource_watcher")

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([bkmgt%]?)b?\s*$", re.IGNORECASE)


def memory(value):
    """'200M' -> ('bytes', 209715200); '10%' or '10' -> ('percent', 10.0)."""
    if isinstance(value, tuple):
        return value
    if isinstance(value, (int, float)):
        return ("percent", float(value))
    match = _AMOUNT.match(str(value))
    if match is None:
        raise ValueError("use a size such as 200M or a percent such as 10%")
    amount, unit = float(match.group(1)), match.group(2).lower()
    if unit in ("", "%"):
        return ("percent", amount)
    return ("bytes", amount * _UNITS[unit])


def action(value):
    text = str(value).strip().lower()
    if text in ("restart", "reload", "kill"):
        return text
    return to_signum(value)


SPEC = {
    "loop_rate": (number, 1.0),
    "max_cpu": (number, None),
    "min_cpu": (number, None),
    "max_mem": (memory, None),
    "min_mem": (memory, None),
    "max_count": (integer, 3),
    "action": (action, "restart"),
    "enabled": (boolean, True),
}


def _describe(what):
    return signal.Signals(what).name if isinstance(what, int) else what


def _mem_of(info, limit):
    kind, _ = limit
    return info.get("rss", 0) if kind == "bytes" else info.get("mem", 0.0)


def _show(kind, amount):
    return bytes2human(amount) if kind == "bytes" else "%s%%" % amount


class ResourceWatcher(CircusPlugin):
    name = "resource_watcher"

    def __init__(self, endpoint, pubsub_endpoint, check_delay, ssh_server=None, **config):
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server=ssh_server, **config)
        self.patterns = option(config, "watcher", patterns, [])
        self.defaults = {key: option(config, key, convert, default)
                         for key, (convert, default) in SPEC.items()}
        self.overrides = WatcherOptions(self, "resource_watcher")
        self.names = set()
        self.counts = {}  # pid -> consecutive checks beyond a limit

    def handle_init(self):
        self.spawn(self._setup())

    async def _setup(self):
        self.names.update((await self.acall("list")).get("watchers") or [])
        self.every(self.defaults["loop_rate"], self.check)

    def handle_recv(self, data):
        name, event, msg = self.split_data(data)
        if name is None:
            return
        self.overrides.on_event(name, event)
        if event == "add":
            self.names.add(name)
        elif event == "remove":
            self.names.discard(name)
        elif event == "reap":
            self.counts.pop(msg.get("process_pid"), None)

    async def settings(self, name):
        """The watcher's settings, or None when it is not watched."""
        if name == self.watcher_name:
            return None
        overrides = await self.overrides.get(name)
        if not overrides and not matches(name, self.patterns):
            return None
        raw = dict(self.defaults)
        raw.update(overrides)
        settings = parse(raw, SPEC, "watcher %s" % name)
        return settings if settings.enabled else None

    async def check(self):
        for name in sorted(self.names):
            settings = await self.settings(name)
            if settings is not None:
                await self.check_watcher(name, settings)

    async def check_watcher(self, name, settings):
        reply = await self.acall("stats", name=name)
        if reply.get("status") != "ok":
            return
        for pid, info in (reply.get("info") or {}).items():
            if not isinstance(info, dict):
                continue
            pid = int(pid)
            why = self.beyond(info, settings)
            if why is None:
                self.counts.pop(pid, None)
                continue
            count = self.counts[pid] = self.counts.get(pid, 0) + 1
            if count < settings.max_count:
                continue
            self.counts.pop(pid, None)
            logger.warning("watcher %s: pid %d %s at %d checks: %s", name, pid, why, count,
                           _describe(settings.action))
            if await self.act(name, pid, settings.action):
                break  # the whole watcher was acted upon

    def beyond(self, info, s):
        cpu = info.get("cpu") or 0.0
        if s.max_cpu is not None and cpu > s.max_cpu:
            return "uses %.1f%% CPU (max %s%%)" % (cpu, s.max_cpu)
        if s.max_mem is not None and _mem_of(info, s.max_mem) > s.max_mem[1]:
            return "uses %s memory (max %s)" % (_show(s.max_mem[0], _mem_of(info, s.max_mem)),
                                                _show(*s.max_mem))
        # a young process may be idle because it is starting
        if (info.get("age") or 0) < s.loop_rate * s.max_count:
            return None
        if s.min_cpu is not None and cpu < s.min_cpu:
            return "uses %.1f%% CPU (min %s%%)" % (cpu, s.min_cpu)
        if s.min_mem is not None and _mem_of(info, s.min_mem) < s.min_mem[1]:
            return "uses %s memory (min %s)" % (_show(s.min_mem[0], _mem_of(info, s.min_mem)),
                                                _show(*s.min_mem))
        return None

    async def act(self, name, pid, what):
        """Apply the action; True when it concerned the whole watcher."""
        if what in ("restart", "reload"):
            await self.acall(what, name=name)
            return True
        if what == "kill":
            await self.acall("kill", name=name, pid=pid)
        else:
            await self.acall("signal", name=name, pid=pid, signum=what)
        return False
