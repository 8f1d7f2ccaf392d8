"""circusd-stats: follow circusd's processes and publish their statistics.

One asyncio loop, no threads. At start (and, as a safety net, now and then
after) circusd-stats asks circusd for its watchers, their pids, its own pid
and its sockets (`list`, `dstats`, `listsockets` on the command endpoint).
Between those, circusd's events keep the pid map current: ``spawn`` adds a
pid, ``reap`` removes it, ``add`` and ``remove`` do the same for watchers.
Nothing is listed again on each tick.

Every `delay` seconds (1 by default) it publishes, on its stats socket:

- ``stat.<watcher>.<pid>`` per process: cpu (% of one core since the
  previous tick), mem (% of RAM), rss and vms (bytes), mem_info1 and
  mem_info2 (the same, human readable), ctime and cpu_time (CPU used so
  far), nice, username, cmdline, create_time, age (seconds);
- ``stat.<watcher>``: pid (the list), count, cpu (the average), mem, rss
  and vms (sums), age (the oldest);
- ``stat.circus.<pid>`` and ``stat.circus`` likewise for circusd and
  circusd-stats themselves (``name`` says which);
- ``stat.sockets.<fd>`` per circus socket and ``stat.sockets`` for all of
  them, when circusd has sockets (see circus.stats.sockdiag).

Every body also carries ``watcher``, ``time`` (of the tick) and, on
per-process and per-socket topics, ``subtopic`` (the pid or fd), as the
original circusd-stats did.

The same, one message per watcher per tick, goes out as
``batch.stat.<watcher>`` (circus.stats.wire), which circus's own clients
read. Each message is built only when somebody subscribes to a prefix of
its topic, and a tick nobody listens to measures nothing at all.
"""
import argparse
import asyncio
import logging
import os
import resource
import signal
import time

import zmq
import zmq.asyncio

from circus.client import AsyncCircusClient, CallError
from circus.logs import LEVELS, configure_logging
from circus.pidfd import call_when_gone
from circus.stats.collector import ProcessCollector, aggregate
from circus.stats.publisher import StatsPublisher
from circus.stats.sockdiag import SocketStats, socket_inode
from circus.stats.wire import BATCH, STAT, batch_body, item_body
from circus.transport.subscriber import Subscriber, decode_event
from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB, DEFAULT_STATS, wait_event

logger = logging.getLogger("circus")

LOG_FORMAT = "%(asctime)s circusd-stats[%(process)d] [%(levelname)s] %(message)s"

# resyncs soon after start close the window in which an event can be missed
# (a SUB subscription takes a moment to reach circusd); later ones are a
# safety net against events lost on the way
EARLY_RESYNCS = (1.0, 3.0)


class StatsStreamer:
    def __init__(self, endpoint=DEFAULT_ENDPOINT, pubsub_endpoint=DEFAULT_PUBSUB,
                 stats_endpoint=DEFAULT_STATS, delay=1.0, with_children=False,
                 resync_interval=30.0, curve_key=None, server_key=None, timeout=5.0):
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.stats_endpoint = stats_endpoint
        self.delay = float(delay)
        self.resync_interval = float(resync_interval)
        self.curve_key = curve_key
        self.server_key = server_key
        self.timeout = float(timeout)
        self.watchers = {}  # name -> {pid: None}, in spawn order
        self.circus_pids = {os.getpid(): "circusd-stats"}
        self.circusd_pid = None
        self.sockets = []  # listsockets mappings, each with "inode"
        self.processes = ProcessCollector(with_children)
        self.socket_stats = SocketStats()
        self.publisher = None
        self.ticks = 0
        self._resync_log = None
        self._resync_wanted = None
        self._stopping = None
        self._synced = False
        self._unwatch_parent = None

    # --- circusd's view ---------------------------------------------------
    async def _call(self, command, **props):
        reply = await self.client.call({"command": command, "properties": props})
        if reply.get("status") != "ok":
            raise CallError("%s: %s" % (command, reply.get("reason", reply)))
        return reply

    async def resync(self):
        """Ask circusd for everything once; True when it answered."""
        self._resync_log = []
        try:
            names = (await self._call("list"))["watchers"]
            replies = await asyncio.gather(*(self.client.call(
                {"command": "list", "properties": {"name": n}}) for n in names))
            if self.circusd_pid is None:
                self.circusd_pid = (await self._call("dstats"))["info"]["pid"]
            sockets = (await self._call("listsockets")).get("sockets", [])
        except (CallError, KeyError, TypeError) as exc:
            if self._synced:
                logger.warning("cannot reach circusd at %s: %s", self.endpoint, exc)
            self._synced = False
            self._resync_log = None
            return False
        watchers = {}
        for name, reply in zip(names, replies):
            if reply.get("status") == "ok":
                watchers[name] = dict.fromkeys(int(p) for p in reply.get("pids", ()))
        for sock in sockets:
            sock["inode"] = socket_inode(self.circusd_pid, sock.get("fd"))
        self.sockets = sockets
        self.circus_pids = {self.circusd_pid: "circusd", os.getpid(): "circusd-stats"}
        web = watchers.get("circushttpd")
        if web and len(web) == 1:
            self.circus_pids[next(iter(web))] = "circushttpd"
        wanted = set(self.circus_pids)
        for pids in watchers.values():
            wanted.update(pids)
        self.processes.forget_all_but(wanted)
        for pid in wanted:
            self.processes.track(pid)
        self.watchers = watchers
        # events that crossed the answers on the way are applied again on top
        log, self._resync_log = self._resync_log, None
        for topic, msg in log:
            self._apply(topic, msg)
        logger.debug("resynced with circusd")
        if not self._synced:
            logger.info("following %d watchers, %d processes, %d sockets of circusd %s",
                        len(watchers), sum(len(p) for p in watchers.values()),
                        len(sockets), self.circusd_pid)
        self._synced = True
        self._watch_parent()
        return True

    def _watch_parent(self):
        """Started by circusd: go when circusd goes, whatever killed it."""
        if self._unwatch_parent is not None or self.circusd_pid != os.getppid():
            return

        def gone():
            logger.info("circusd %d exited, stopping", self.circusd_pid)
            self.stop()
        self._unwatch_parent = call_when_gone(asyncio.get_running_loop(), self.circusd_pid, gone)

    # --- events -----------------------------------------------------------
    def on_event(self, topic, msg):
        if self._resync_log is not None:
            self._resync_log.append((topic, msg))
        self._apply(topic, msg)

    def _apply(self, topic, msg):
        if topic.startswith("watcher."):
            name, _, action = topic[len("watcher."):].rpartition(".")
            if action == "spawn":
                pid = _pid(msg)
                if pid is None:
                    return
                pids = self.watchers.setdefault(name, {})
                if pid not in pids:
                    pids[pid] = None
                    self.processes.retrack(pid)
                if name == "circushttpd":
                    # the console is one of circus's own, as the resync says
                    self.circus_pids = {p: label for p, label in self.circus_pids.items()
                                        if label != "circushttpd"}
                    self.circus_pids[pid] = "circushttpd"
            elif action == "reap":
                pid = _pid(msg)
                pids = self.watchers.get(name)
                if pids is not None and pid in pids:
                    del pids[pid]
                    if pid not in self.circus_pids:
                        self.processes.forget(pid)
            elif action == "add":
                self.watchers.setdefault(name, {})
            elif action == "remove":
                for pid in self.watchers.pop(name, {}):
                    if pid not in self.circus_pids:
                        self.processes.forget(pid)
        elif topic == "arbiter.reload_config" and self._resync_wanted is not None:
            # sockets may have been rebound
            self._resync_wanted.set()

    async def _read_events(self):
        while True:
            topic, msg = decode_event(await self.sub.socket.recv_multipart())
            if "raw" in msg:
                continue  # not JSON: not circusd's
            try:
                self.on_event(topic, msg)
            except Exception:
                logger.exception("event %s not understood", topic)

    # --- ticks ------------------------------------------------------------
    def tick(self):
        publisher = self.publisher
        publisher.read_subscriptions()
        self.ticks += 1
        if not publisher.prefixes:
            return  # nobody reads the stream: nothing to measure
        now = time.time()
        fields = self.processes.fields
        sampled = {}  # pid -> row: circus's own processes may be a watcher's too
        for name, pids in list(self.watchers.items()):
            wanted = self._wanted(name)
            if any(wanted):
                rows = self._rows(name, pids, wanted, sampled, now)
                self._publish_group(name, wanted, fields, rows, self._total(name, rows, now),
                                    {"watcher": name, "time": now, "name": None})
        wanted = self._wanted("circus")
        if any(wanted):
            rows = []
            for pid, label in list(self.circus_pids.items()):
                row = sampled.get(pid) or self.processes.sample_row(pid, now)
                if row is not None:
                    rows.append(row + [label])
            self._publish_group("circus", wanted, fields + ("name",), rows,
                                self._total("circus", rows, now),
                                {"watcher": "circus", "time": now})
        if self.sockets:
            wanted = self._wanted("sockets")
            if any(wanted):
                self._publish_sockets(now, wanted)

    def _wanted(self, name):
        """Which messages of one group somebody subscribes to: (the batch,
        the aggregate, the items: True, some prefixes, or none)."""
        publisher = self.publisher
        return (publisher.wants(BATCH + name), publisher.wants(STAT + name),
                publisher.wants_under(STAT + name + "."))

    def _rows(self, name, pids, wanted, sampled, now):
        """The rows of the processes somebody wants to hear about."""
        selected = list(pids)
        if not (wanted[0] or wanted[1] or wanted[2] is True):
            # some stat.<name>.<pid> topics, nothing else
            selected = [pid for pid in selected
                        if ("%s%s.%d" % (STAT, name, pid)).startswith(wanted[2])]
        fresh = [pid for pid in selected if pid not in sampled]
        for row in self.processes.sample_rows(fresh, now):
            sampled[row[0]] = row
        rows = []
        for pid in selected:
            row = sampled.get(pid)
            if row is None:
                pids.pop(pid, None)  # gone before its reap event reached us
            else:
                rows.append(row)
        return rows

    def _total(self, name, rows, now):
        total = aggregate(rows, self.processes.fields)
        total.update(watcher=name, time=now)
        return total

    def _publish_group(self, name, wanted, fields, rows, total, common, key="pid"):
        want_batch, want_total, want_items = wanted
        publish = self.publisher.publish
        if want_items:
            base = STAT + name + "."
            position = fields.index(key) if fields else None
            for row in rows:
                topic = base + str(row[key] if position is None else row[position])
                if want_items is True or topic.startswith(want_items):
                    publish(topic, item_body(fields, row, common, key))
        if want_total:
            publish(STAT + name, total)
        if want_batch:
            publish(BATCH + name, batch_body(total, common, fields, rows, key))

    def _publish_sockets(self, now, wanted):
        results = self.socket_stats.collect(self.sockets)
        total = {"watcher": "sockets", "addresses": [], "names": [], "fds": [], "time": now}
        sums = {"connections": None, "new": None, "reads": None, "queued": None, "drops": None}
        for result in results:
            total["addresses"].append(result["address"])
            total["names"].append(result["name"])
            total["fds"].append(result["fd"])
            for key in sums:
                if isinstance(result.get(key), (int, float)):
                    sums[key] = round((sums[key] or 0) + result[key], 1)
        total.update(sums)
        # sockets differ in their keys (TCP, UDP, unix): each row is its mapping
        self._publish_group("sockets", wanted, (), results, total,
                            {"watcher": "sockets", "time": now}, key="fd")

    async def _ticker(self):
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.delay
            now = loop.time()
            if deadline < now:  # a slow tick: skip, never catch up in a burst
                deadline = now + self.delay
            await asyncio.sleep(deadline - now)
            try:
                self.tick()
            except Exception:
                logger.exception("tick failed")

    async def _resyncer(self):
        delays = list(EARLY_RESYNCS)
        while True:
            delay = delays.pop(0) if delays else self.resync_interval
            if not self._synced:
                delay = min(delay, 2.0)
            await wait_event(self._resync_wanted, delay)
            self._resync_wanted.clear()
            await self.resync()

    async def _sample(self):
        await self.resync()  # first, so that the first tick has processes
        await asyncio.gather(self._ticker(), self._resyncer())

    # --- running ----------------------------------------------------------
    def stop(self):
        if self._stopping is not None:
            self._stopping.set()

    async def run(self):
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._resync_wanted = asyncio.Event()
        context = zmq.asyncio.Context()
        # one libzmq context; the stats socket is used without asyncio: a send
        # never waits, subscriptions are read at each tick
        self.publisher = StatsPublisher(self.stats_endpoint,
                                        zmq.Context.shadow(context.underlying))
        self.sub = None
        self.client = None
        tasks = []
        try:
            self.sub = Subscriber(context, self.pubsub_endpoint, (b"watcher.", b"arbiter."),
                                  self.curve_key, self.server_key)
            self.client = AsyncCircusClient(context=context, endpoint=self.endpoint,
                                            timeout=self.timeout, curve_key=self.curve_key,
                                            server_key=self.server_key)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                loop.add_signal_handler(signum, self.stop)
            logger.info("publishing stats on %s", self.stats_endpoint)
            # the first listing inside a task: a stop must not wait for its timeout
            tasks += [asyncio.ensure_future(self._read_events()),
                      asyncio.ensure_future(self._sample())]
            stopping = asyncio.ensure_future(self._stopping.wait())
            done, _ = await asyncio.wait(tasks + [stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception():
                    raise task.exception()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._unwatch_parent is not None:
                self._unwatch_parent()
                self._unwatch_parent = None
            if self.client is not None:
                self.client.stop()
            if self.sub is not None:
                self.sub.close()
            self.publisher.close()
            self.socket_stats.close()
            self.processes.close()
            context.term()
            logger.info("stats streamer stopped")


def _pid(msg):
    try:
        return int(msg["process_pid"])
    except (KeyError, TypeError, ValueError):
        return None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="circusd-stats",
        description="Publish CPU, memory and socket statistics of a running circusd.")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                        help="circusd's command endpoint (default: %(default)s)")
    parser.add_argument("--pubsub", default=DEFAULT_PUBSUB,
                        help="circusd's event endpoint (default: %(default)s)")
    parser.add_argument("--statspoint", default=DEFAULT_STATS,
                        help="where to publish the statistics (default: %(default)s)")
    parser.add_argument("--delay", type=float, default=1.0,
                        help="seconds between two samples (default: %(default)s)")
    parser.add_argument("--children", action="store_true",
                        help="also list each process's children (reads every /proc "
                             "entry of the host on each tick)")
    # seconds between two full listings after the early ones (tests stretch
    # it to show that events alone keep the pid map current)
    parser.add_argument("--resync-interval", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--curve-key", help="CURVE: this client's secret key file")
    parser.add_argument("--server-key", help="CURVE: circusd's public key file")
    parser.add_argument("--log-level", dest="loglevel", default="info", choices=LEVELS,
                        type=str.lower)
    parser.add_argument("--log-output", dest="logoutput", default="stderr",
                        help="log file, - for stdout, or stderr (default: %(default)s)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def _raise_nofile():
    """The soft limit of descriptors up to the hard one: the collector keeps
    one open per process it follows (see circus.stats.collector)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            logger.debug("RLIMIT_NOFILE raised from %d to %d", soft, wanted)
        except (ValueError, OSError) as exc:
            logger.debug("RLIMIT_NOFILE left at %d: %s", soft, exc)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        from circus import __version__
        print(__version__)
        return 0
    configure_logging(args.loglevel, args.logoutput, LOG_FORMAT)
    _raise_nofile()
    streamer = StatsStreamer(args.endpoint, args.pubsub, args.statspoint, delay=args.delay,
                             with_children=args.children,
                             resync_interval=args.resync_interval, curve_key=args.curve_key,
                             server_key=args.server_key)
    try:
        asyncio.run(streamer.run())
    except zmq.ZMQError as exc:
        logger.error("cannot publish on %s: %s", args.statspoint, exc)
        return 1
    except CallError as exc:
        logger.error("%s", exc)
        return 1
    return 0
