"""Watchdog: processes send UDP heartbeats; a silent one is killed.

::

    [plugin:watchdog]
    use = circus.plugins.watchdog.WatchDog
    ip = 127.0.0.1
    port = 1664
    loop_rate = 1
    max_count = 3
    watchers_regex = worker-.*

Each watched process sends, every ``loop_rate`` seconds or more often, a UDP
datagram to ``ip``:``port`` such as ``"<pid>;<unix time>"``::

    sock.sendto(b"%d;%f" % (os.getpid(), time.time()), ("127.0.0.1", 1664))

Once a process has sent its first heartbeat, it is watched: when it stays
silent for more than ``loop_rate * max_count`` seconds, the plugin kills it
(the ``kill`` command, so the usual ``kill`` and ``reap`` events follow) and
its watcher starts a new one.

Options:

- ``ip``, ``port``: where the plugin listens (default 127.0.0.1:1664).
- ``loop_rate``: the expected heartbeat period and check interval, in
  seconds (default 1).
- ``max_count``: how many periods of silence are tolerated (default 3).
- ``watchers_regex``: the watchers whose processes are watched; the whole
  name must match (default: every watcher but the plugins, ``(?!plugin:).*``).
- ``msg_regex``: how to read a heartbeat; it must have a ``pid`` group
  (default ``^(?P<pid>.*);(?P<timestamp>.*)$``).
- ``stop_signal``: the signal the silent process gets, SIGKILL following
  after its watcher's graceful_timeout (default SIGTERM).
- ``startup_timeout``: if above 0, a process that has sent no heartbeat this
  many seconds after its spawn is killed too (default 0: a process is only
  watched once it has sent a heartbeat).
"""
import asyncio
import logging
import re
import socket
import time

from circus.plugins import CircusPlugin
from circus.plugins._options import integer, number, option
from circus.util import to_signum

logger = logging.getLogger("circus.plugins.watchdog")


class _Process:
    __slots__ = ("watcher", "spawned", "last", "killed")

    def __init__(self, watcher, now):
        self.watcher = watcher
        self.spawned = now
        self.last = None
        self.killed = False


class _Heartbeats(asyncio.DatagramProtocol):
    def __init__(self, plugin):
        self.plugin = plugin

    def datagram_received(self, data, addr):
        self.plugin.heartbeat(data)


class WatchDog(CircusPlugin):
    name = "watchdog"

    def __init__(self, endpoint, pubsub_endpoint, check_delay, ssh_server=None, **config):
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server=ssh_server, **config)
        self.ip = str(config.get("ip") or "127.0.0.1")
        self.port = option(config, "port", integer, 1664)
        self.loop_rate = option(config, "loop_rate", number, 1.0)
        self.max_count = option(config, "max_count", integer, 3)
        self.watchers_regex = re.compile(option(config, "watchers_regex", str, r"(?!plugin:).*"))
        self.msg_regex = re.compile(option(config, "msg_regex", str,
                                           r"^(?P<pid>.*);(?P<timestamp>.*)$"))
        if "pid" not in self.msg_regex.groupindex:
            raise ValueError("option msg_regex: it needs a (?P<pid>...) group")
        self.stop_signal = option(config, "stop_signal", to_signum, 15)
        self.startup_timeout = option(config, "startup_timeout", number, 0.0)
        self.processes = {}
        self._transport = None

    def watched(self, name):
        return name != self.watcher_name and self.watchers_regex.fullmatch(name) is not None

    def handle_init(self):
        # bound here, so that a port in use stops the plugin with a clear error
        sock = socket.socket(socket.AF_INET6 if ":" in self.ip else socket.AF_INET,
                             socket.SOCK_DGRAM)
        try:
            sock.bind((self.ip, self.port))
        except OSError as exc:
            sock.close()
            raise OSError("watchdog: cannot listen on %s:%d: %s"
                          % (self.ip, self.port, exc.strerror or exc)) from None
        self.spawn(self._setup(sock))

    async def _setup(self, sock):
        self._transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Heartbeats(self), sock=sock)
        logger.info("listening for heartbeats on %s:%d", self.ip, self.port)
        # the processes that were there before the plugin
        names = (await self.acall("list")).get("watchers") or []
        for name in names:
            if self.watched(name):
                for pid in (await self.acall("list", name=name)).get("pids") or []:
                    self.processes.setdefault(pid, _Process(name, time.monotonic()))
        self.every(self.loop_rate, self.check)

    def handle_stop(self):
        if self._transport is not None:
            self._transport.close()

    def handle_recv(self, data):
        name, event, msg = self.split_data(data)
        if name is None or not self.watched(name):
            return
        if event == "spawn":
            self.processes[msg.get("process_pid")] = _Process(name, time.monotonic())
        elif event == "reap":
            self.processes.pop(msg.get("process_pid"), None)
        elif event == "remove":
            for pid in [p for p, proc in self.processes.items() if proc.watcher == name]:
                del self.processes[pid]

    def heartbeat(self, data):
        match = self.msg_regex.match(data.decode("utf-8", "replace").strip())
        if match is None:
            logger.debug("not a heartbeat: %r", data)
            return
        try:
            pid = int(match.group("pid"))
        except ValueError:
            return
        process = self.processes.get(pid)
        if process is not None:
            process.last = time.monotonic()

    async def check(self):
        now = time.monotonic()
        limit = self.loop_rate * self.max_count
        for pid, process in list(self.processes.items()):
            if process.killed:
                continue
            if process.last is not None:
                silent = now - process.last
                if silent <= limit:
                    continue
                why = "no heartbeat for %.1fs" % silent
            elif 0 < self.startup_timeout < now - process.spawned:
                why = "no heartbeat %.1fs after its start" % (now - process.spawned)
            else:
                continue
            process.killed = True
            logger.warning("watcher %s: killing pid %d: %s", process.watcher, pid, why)
            self.spawn(self._kill(process.watcher, pid))

    async def _kill(self, name, pid):
        reply = await self.acall("kill", name=name, pid=pid, signum=self.stop_signal)
        if reply.get("status") != "ok":
            logger.info("watcher %s: pid %d not killed: %s", name, pid, reply.get("reason"))
