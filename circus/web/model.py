"""What the console knows of one circusd, kept current from its events,
its statistics and, now and then, its answers to commands.

Every change is published to the endpoint's Broadcaster as it is applied,
under the model's lock: pages render from the model, and their streams
carry the changes made after the snapshot they started from.
"""
import collections
import threading
import time

from circus.web.fanout import Broadcaster

HISTORY = 300  # points per chart: five minutes at circusd-stats' 1 s tick
TIMELINE = 500  # events kept for the timeline page

STARTING, RUNNING, STOPPING = "starting", "running", "stopping"


class Watcher:
    def __init__(self, name):
        self.name = name
        self.status = "unknown"
        self.numprocesses = None
        self.options = {}
        self.processes = {}  # pid -> {"pid", "state", "started"}

    def summary(self):
        live = [p for p in self.processes.values() if p["state"] != STOPPING]
        cmd = self.options.get("cmd") or ""
        args = self.options.get("args")
        if args:
            cmd = "%s %s" % (cmd, args if isinstance(args, str) else " ".join(map(str, args)))
        return {"name": self.name, "status": self.status, "numprocesses": self.numprocesses,
                "running": len(live), "ready": sum(1 for p in live if p["state"] == RUNNING),
                "cmd": cmd, "singleton": bool(self.options.get("singleton"))}


class Model:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.lock = threading.RLock()
        self.broadcaster = Broadcaster(self.lock)
        self.state = "connecting"  # connected / unreachable
        self.error = None
        self.synced_at = None
        self.pubsub = None
        self.stats_endpoint = None
        self.stats_state = None
        self.watchers = {}
        self.sockets = []  # listsockets
        self.socket_stats = {}  # fd -> stat.sockets.<fd>
        self.history = {}  # watcher -> deque of [t, cpu, mem]
        self.process_stats = {}  # watcher -> {pid: stat}
        self.circus = {}  # pid -> stat.circus.<pid> (circusd, circusd-stats...)
        self.timeline = collections.deque(maxlen=TIMELINE)
        self._stats_changed = set()

    # --- connection state -------------------------------------------------
    def set_state(self, state, error=None):
        with self.lock:
            if (state, error) == (self.state, self.error):
                return
            self.state, self.error = state, error
            self.broadcaster.publish("endpoint", self.endpoint_info())

    def endpoint_info(self):
        return {"state": self.state, "error": self.error, "stats": self.stats_state,
                "stats_endpoint": self.stats_endpoint}

    # --- answers to commands ----------------------------------------------
    def replace_all(self, found):
        """found: name -> (status, options, pids) for every watcher circusd has."""
        with self.lock:
            for name in [n for n in self.watchers if n not in found]:
                self._remove(name)
            for name, (status, options, pids) in found.items():
                self.update_watcher(name, status, options, pids)
            self.synced_at = time.time()

    def update_watcher(self, name, status=None, options=None, pids=None):
        with self.lock:
            watcher = self.watchers.get(name)
            if watcher is None:
                watcher = self.watchers[name] = Watcher(name)
            before = watcher.summary()
            if status is not None:
                watcher.status = status
            if options is not None:
                watcher.options = options
                if isinstance(options.get("numprocesses"), int):
                    watcher.numprocesses = options["numprocesses"]
            if pids is not None:
                listed = set(pids)
                for pid in [p for p in watcher.processes if p not in listed]:
                    del watcher.processes[pid]
                    self._publish_process(name, {"pid": pid, "state": "gone"})
                for pid in listed:
                    if pid not in watcher.processes:
                        process = watcher.processes[pid] = {"pid": pid, "state": RUNNING,
                                                            "started": None}
                        self._publish_process(name, process)
            if watcher.summary() != before:
                self.broadcaster.publish("watcher", watcher.summary(), name)

    def remove_watcher(self, name):
        with self.lock:
            if name in self.watchers:
                self._remove(name)

    def _remove(self, name):
        del self.watchers[name]
        self.history.pop(name, None)
        self.process_stats.pop(name, None)
        self.broadcaster.publish("watcher", {"name": name, "removed": True}, name)

    def set_sockets(self, sockets):
        with self.lock:
            self.sockets = sockets

    # --- events -----------------------------------------------------------
    def on_event(self, topic, msg):
        """Apply one event; returns the watcher whose state should be asked
        again (events say what happened, a command says where it stands),
        or None."""
        if not isinstance(msg, dict):
            msg = {"value": msg}
        with self.lock:
            entry = {"time": msg.get("time") or time.time(), "topic": topic,
                     "fields": {k: v for k, v in msg.items() if k != "time"}}
            parts = topic.split(".")
            name = action = None
            if parts[0] == "watcher" and len(parts) >= 3:
                name, action = ".".join(parts[1:-1]), parts[-1]
            entry["watcher"] = name
            self.timeline.append(entry)
            self.broadcaster.publish("event", entry, name)
            if name is None:
                return "*" if topic in ("arbiter.reload_config", "arbiter.start") else None
            watcher = self.watchers.get(name)
            if action == "remove":
                self.remove_watcher(name)
                return None
            if watcher is None:
                return name  # a new watcher: ask circusd about it
            pid = msg.get("process_pid")
            if isinstance(pid, int):
                self._on_process_event(watcher, action, pid, entry["time"])
            return name

    def _on_process_event(self, watcher, action, pid, when):
        before = watcher.summary()
        process = watcher.processes.get(pid)
        if action == "spawn":
            process = watcher.processes[pid] = {"pid": pid, "state": STARTING,
                                                "started": when}
        elif action == "ready" and process is not None:
            process["state"] = RUNNING
        elif action == "kill" and process is not None:
            process["state"] = STOPPING
        elif action == "reap":
            if watcher.processes.pop(pid, None) is not None:
                self.process_stats.get(watcher.name, {}).pop(pid, None)
            process = {"pid": pid, "state": "gone"}
        else:
            return
        if process is not None:
            self._publish_process(watcher.name, process)
        if watcher.summary() != before:
            self.broadcaster.publish("watcher", watcher.summary(), watcher.name)

    def _publish_process(self, name, process):
        self.broadcaster.publish("process", dict(process, watcher=name), name)

    # --- statistics -------------------------------------------------------
    def on_stat(self, watcher, subtopic, stat):
        with self.lock:
            if watcher == "circus":
                if subtopic is not None:
                    self.circus[subtopic] = _figures(stat, name=stat.get("name"))
                    self._stats_changed.add("circus")
            elif watcher == "sockets":
                if subtopic is not None:
                    self.socket_stats[subtopic] = stat
                    self._stats_changed.add("sockets")
            elif subtopic is None:
                points = self.history.get(watcher)
                if points is None:
                    points = self.history[watcher] = collections.deque(maxlen=HISTORY)
                points.append([round(time.time(), 1), _num(stat.get("cpu")),
                               _num(stat.get("mem"))])
                listed = stat.get("pid")
                if isinstance(listed, list):
                    kept = set(listed)
                    entries = self.process_stats.get(watcher, {})
                    for pid in [p for p in entries if p not in kept]:
                        del entries[pid]
                self._stats_changed.add(watcher)
            elif isinstance(subtopic, int):
                self.process_stats.setdefault(watcher, {})[subtopic] = _figures(stat)
                proc = self.watchers.get(watcher)
                created = stat.get("create_time")
                if proc is not None and subtopic in proc.processes and created:
                    entry = proc.processes[subtopic]
                    if entry["started"] is None:
                        entry["started"] = created

    def watched(self):
        """The watchers whose page is open somewhere."""
        with self.lock:
            return {s.watcher for s in self.broadcaster.subscribers if s.view == "watcher"}

    def flush_stats(self):
        """Publish what the statistics changed since the last flush: one
        item per view, however many messages came in."""
        with self.lock:
            changed, self._stats_changed = self._stats_changed, set()
            if not changed:
                return
            if changed - {"sockets"}:
                self.broadcaster.publish("stats", self.overview_stats())
            for name in changed & self.watched():
                self.broadcaster.publish("pstats", self.watcher_stats(name), name)
            if "sockets" in changed:
                self.broadcaster.publish("sockets", self.sockets_view())

    def overview_stats(self):
        latest = {name: points[-1] for name, points in self.history.items() if points}
        circus = sorted(self.circus.values(), key=lambda s: (s.get("name") or "", s["pid"]))
        return {"latest": latest, "circus": circus}

    def watcher_stats(self, name):
        points = self.history.get(name)
        return {"watcher": name, "latest": points[-1] if points else None,
                "processes": dict(self.process_stats.get(name, {}))}

    # --- views ------------------------------------------------------------
    def snapshot(self, view, watcher=None):
        """Everything a page of this view shows, JSON-ready; call with lock held."""
        data = {"endpoint": self.endpoint_info(), "id": self.broadcaster.event_id()}
        if view == "overview":
            data["watchers"] = [w.summary() for _, w in sorted(self.watchers.items())]
            data["history"] = {n: list(p) for n, p in self.history.items()}
            data["stats"] = self.overview_stats()
        elif view == "watcher":
            found = self.watchers.get(watcher)
            data["watcher"] = found.summary() if found else None
            data["processes"] = self.processes(watcher)
            data["history"] = {watcher: list(self.history.get(watcher, ()))}
            data["stats"] = self.watcher_stats(watcher)
        elif view == "sockets":
            data["sockets"] = self.sockets_view()
        if view in ("events", "watcher"):
            data["timeline"] = [e for e in self.timeline
                                if view == "events" or e["watcher"] == watcher][-100:]
        return data

    def processes(self, name):
        found = self.watchers.get(name)
        if found is None:
            return []
        return sorted(found.processes.values(), key=lambda p: p["pid"])

    def sockets_view(self):
        rows = []
        for sock in self.sockets:
            stat = self.socket_stats.get(sock.get("fd"), {})
            where = sock.get("path") or "%s:%s" % (sock.get("host"), sock.get("port"))
            rows.append({"name": sock.get("name"), "address": where, "fd": sock.get("fd"),
                         "family": sock.get("family"), "backlog": sock.get("backlog"),
                         "connections": stat.get("connections"), "queued": stat.get("queued"),
                         "drops": stat.get("drops"), "new": stat.get("new")})
        return rows


def _num(value):
    return round(value, 2) if isinstance(value, (int, float)) else None


def _figures(stat, **extra):
    figures = {"pid": stat.get("subtopic", stat.get("pid")), "cpu": _num(stat.get("cpu")),
               "mem": _num(stat.get("mem")), "rss": stat.get("rss"),
               "age": _num(stat.get("age")), "create_time": stat.get("create_time")}
    figures.update(extra)
    return figures
