"""The prometheus_client Collector of circusd-metrics.

Each scrape asks circusd for its `metrics` (counters kept as events happen,
the watchers' gauges, pids and sockets), then measures what circusd does
not: CPU seconds and resident memory of circusd and of every process, with
circusd-stats' reader (circus.stats.collector.read_usage, one read of
/proc/PID/stat each), and the circus sockets through sock_diag
(circus.stats.sockdiag), as circusd-stats does. circusd reads no /proc file
for a scrape.
"""
import logging
import os
import threading
import time

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

from circus.errors import CallError
from circus.metrics.families import BY_NAME, COUNTER, GAUGE, HISTOGRAM
from circus.states import ArbiterState, WatcherState
from circus.stats.collector import read_usage
from circus.stats.sockdiag import SocketStats, socket_inode

logger = logging.getLogger("circus")

_KINDS = {GAUGE: GaugeMetricFamily, COUNTER: CounterMetricFamily,
          HISTOGRAM: HistogramMetricFamily}
WATCHER_STATES = tuple(s.value for s in WatcherState if s is not WatcherState.CLOSED)
DAEMON_STATES = tuple(s.value for s in ArbiterState if s is not ArbiterState.STOPPED)


def family(name):
    spec = BY_NAME[name]
    return _KINDS[spec.type](name, spec.help, labels=spec.labels)


def add_histogram(metric, labels, bounds, data):
    """data: {"counts": per bucket, +Inf last, "sum": s} from circusd."""
    cumulative, buckets = 0, []
    for bound, count in zip(list(bounds) + [float("inf")], data["counts"]):
        cumulative += count
        buckets.append((floatToGoString(bound), cumulative))
    metric.add_metric(labels, buckets, data["sum"])


class CpuTotals:
    """A watcher's CPU seconds as a counter: the sum over its live processes
    plus what its gone processes had used when last seen, so that a
    process's exit does not make the total go down."""

    def __init__(self):
        self._last = {}  # watcher -> {pid: cpu seconds at the last scrape}
        self._retired = {}  # watcher -> cpu seconds of its gone processes

    def total(self, watcher, live):
        """live: {pid: cpu seconds} now."""
        retired = self._retired.get(watcher, 0.0)
        for pid, seconds in self._last.get(watcher, {}).items():
            if pid not in live:
                retired += seconds
        self._retired[watcher] = retired
        self._last[watcher] = live
        return retired + sum(live.values())

    def keep_only(self, watchers):
        for name in [n for n in self._last if n not in watchers]:
            del self._last[name]
            self._retired.pop(name, None)


class CircusCollector:
    """Collect from circusd on each scrape; `call(command, **properties)`
    returns circusd's reply mapping or raises CallError. Scrapes are
    serialised: the CPU totals, the socket counts and the pids known keep
    state between them."""

    def __init__(self, call, per_process=False):
        self.call = call
        self.per_process = per_process
        self.cpu = CpuTotals()
        self.sockets = SocketStats()
        self._inodes = {}  # (circusd pid, fd, name) -> inode
        self._pids = {}  # watcher -> (pids_version, pids): circusd sends what changed
        self._lock = threading.Lock()

    def describe(self):
        return []  # registering must not ask circusd anything

    def close(self):
        self.sockets.close()

    def collect(self):
        with self._lock:
            started = time.perf_counter()
            families = self._collect()
            took = family("circus_scrape_duration_seconds")
            took.add_metric([], time.perf_counter() - started)
            return families + [took]

    def _collect(self):
        up = family("circus_up")
        try:
            reply = self.call("metrics", known={name: version for name, (version, _)
                                                in self._pids.items() if version})
        except CallError as exc:
            logger.warning("circusd did not answer: %s", exc)
            reply = None
        if reply is None or reply.get("status") != "ok":
            if reply is not None:
                logger.warning("metrics refused: %s", reply.get("reason", reply))
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up] + self._daemon(reply) + self._watchers(reply) + self._sockets(reply) \
            + self._commands(reply)

    def _daemon(self, reply):
        info = family("circus_build_info")
        info.add_metric([str(reply.get("version"))], 1)
        state = family("circus_daemon_state")
        for name in DAEMON_STATES:
            state.add_metric([name], 1 if reply.get("state") == name else 0)
        result = [info, state]
        started = reply.get("started_at")
        if started:
            start = family("circus_daemon_start_time_seconds")
            start.add_metric([], started)
            uptime = family("circus_daemon_uptime_seconds")
            uptime.add_metric([], max(0.0, reply.get("time", time.time()) - started))
            result += [start, uptime]
        pid = reply.get("pid")
        usage = read_usage(pid) if pid else None
        if usage is not None:
            cpu = family("circus_daemon_cpu_seconds_total")
            cpu.add_metric([], usage[0])
            rss = family("circus_daemon_resident_memory_bytes")
            rss.add_metric([], usage[1])
            result += [cpu, rss]
        try:
            fds = len(os.listdir("/proc/%d/fd" % pid))
        except (OSError, TypeError):
            fds = None
        if fds is not None:
            open_fds = family("circus_daemon_open_fds")
            open_fds.add_metric([], fds)
            result.append(open_fds)
        return result

    def _watchers(self, reply):
        names = ("circus_watcher_state", "circus_watcher_processes_wanted",
                 "circus_watcher_processes_running", "circus_watcher_processes_ready",
                 "circus_watcher_spawns_total", "circus_watcher_respawns_total",
                 "circus_watcher_exits_total", "circus_watcher_spawn_failures_total",
                 "circus_watcher_give_ups_total", "circus_watcher_recycles_total",
                 "circus_watcher_reload_duration_seconds", "circus_watcher_cpu_seconds_total",
                 "circus_watcher_resident_memory_bytes")
        if self.per_process:
            names += ("circus_process_cpu_seconds_total",
                      "circus_process_resident_memory_bytes")
        f = {name: family(name) for name in names}
        reload_bounds = reply.get("buckets", {}).get("reload", ())
        watchers = reply.get("watchers") or {}
        self._pids = {name: (w.get("pids_version"), w["pids"] if "pids" in w
                             else self._pids.get(name, (None, []))[1])
                      for name, w in watchers.items()}
        for name, watcher in watchers.items():
            labels = [name]
            for state in WATCHER_STATES:
                f["circus_watcher_state"].add_metric([name, state],
                                                     1 if watcher["state"] == state else 0)
            f["circus_watcher_processes_wanted"].add_metric(labels, watcher["wanted"])
            f["circus_watcher_processes_running"].add_metric(labels, watcher["running"])
            f["circus_watcher_processes_ready"].add_metric(labels, watcher["ready"])
            counters = watcher["counters"]
            f["circus_watcher_spawns_total"].add_metric(labels, counters["spawns"])
            f["circus_watcher_respawns_total"].add_metric(labels, counters["respawns"])
            f["circus_watcher_recycles_total"].add_metric(labels, counters["recycles"])
            for key, count in counters["exits"].items():
                cause, _, code = key.partition(":")
                f["circus_watcher_exits_total"].add_metric([name, cause, code], count)
            for cause, count in counters["spawn_failures"].items():
                f["circus_watcher_spawn_failures_total"].add_metric([name, cause], count)
            for cause, count in counters["give_ups"].items():
                f["circus_watcher_give_ups_total"].add_metric([name, cause], count)
            add_histogram(f["circus_watcher_reload_duration_seconds"], labels, reload_bounds,
                          counters["reload_duration"])
            live, rss = {}, 0
            for pid in self._pids[name][1]:
                usage = read_usage(pid)
                if usage is None:
                    continue  # gone since circusd answered
                live[pid] = usage[0]
                rss += usage[1]
                if self.per_process:
                    f["circus_process_cpu_seconds_total"].add_metric([name, str(pid)],
                                                                     usage[0])
                    f["circus_process_resident_memory_bytes"].add_metric([name, str(pid)],
                                                                         usage[1])
            f["circus_watcher_cpu_seconds_total"].add_metric(labels,
                                                             self.cpu.total(name, live))
            f["circus_watcher_resident_memory_bytes"].add_metric(labels, rss)
        self.cpu.keep_only(watchers)
        return list(f.values())

    def _sockets(self, reply):
        sockets = reply.get("sockets") or []
        if not sockets:
            return []
        pid = reply.get("pid")
        inodes = {}
        for sock in sockets:
            key = (pid, sock.get("fd"), sock.get("name"))
            inode = self._inodes.get(key)
            if inode is None:
                inode = socket_inode(pid, sock.get("fd"))
            inodes[key] = inode
            sock["inode"] = inode
        self._inodes = inodes  # a rebound socket gets a new fd: forget the old
        f = {name: family(name) for name in (
            "circus_socket_connections", "circus_socket_accept_queue", "circus_socket_backlog",
            "circus_socket_drops_total")}
        for result in self.sockets.collect(sockets):
            labels = [str(result["name"])]
            for name, key in (("circus_socket_connections", "connections"),
                              ("circus_socket_accept_queue", "queued"),
                              ("circus_socket_backlog", "backlog"),
                              ("circus_socket_drops_total", "drops")):
                if isinstance(result.get(key), (int, float)):
                    f[name].add_metric(labels, result[key])
        return list(f.values())

    def _commands(self, reply):
        metric = family("circus_command_duration_seconds")
        bounds = reply.get("buckets", {}).get("command", ())
        for item in reply.get("commands") or []:
            add_histogram(metric, [item["command"], item["status"]], bounds, item["duration"])
        return [metric]
