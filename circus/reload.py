"""A config reload (reloadconfig, SIGHUP): plan, then apply.

The plan reads the file again and builds everything new (watchers and
plugin watchers constructed, new sockets bound) without touching what runs;
a failure on the way (a ConfigError naming file, section and option) undoes
what it built and changes nothing. Only then does apply change the running
arbiter: watchers, sockets and plugins that did not change keep running
untouched.
"""
import asyncio
import logging
import time

from circus.arbiter import build_watcher, count_error
from circus.errors import ConfigError, LimitError, describe
from circus.options import CIRCUS_SCHEMA, diff, load
from circus.options.limits import check_counts
from circus.sockets import CircusSocket, CircusSockets, SocketError
from circus.util import DEFAULT_STATS

logger = logging.getLogger("circus")

# [circus] options a running circusd applies on a reload (the others need a restart)
_APPLIED = {"warmup_delay", "check_delay", "debug", "stats_endpoint", "statsd",
            "prometheus", "prometheus_per_process", "include", "include_dir",
            "max_processes", "max_numprocesses"}
# ... and those it applies before anything else: the new counts are checked
# against the new ceilings
_LIMITS = ("max_processes", "max_numprocesses")

async def reload_config(arbiter):
    """Re-read arbiter's config file and apply what changed (see the module)."""
    arbiter.check_not_stopping("reloadconfig")
    if not arbiter.config_file:
        await arbiter.reload()
        return {}
    if arbiter._reload_lock is None:
        arbiter._reload_lock = asyncio.Lock()
    # reloads one at a time: each plan is made against what the last applied
    async with arbiter._reload_lock:
        arbiter.check_not_stopping("reloadconfig")
        plan = Plan(arbiter, load(arbiter.config_file))
        plan.make()
        return await _apply_reload(arbiter, plan)


class Plan:
    """What a reload changes, everything new already built."""

    def __init__(self, arbiter, cfg):
        self.arbiter = arbiter
        self.cfg = cfg
        self.bound = CircusSockets()  # new sockets, bound and listening
        self.built = []  # new watchers, not started
        self.socket_configs = {}
        self.changed_sockets = set()
        self.relisten_sockets = {}  # name -> new backlog
        self.removed, self.resized, self.replaced = [], [], []
        self.resocketed, self.added = [], []
        self.plugins = []
        self.plugins_removed, self.plugins_restarted, self.plugins_added = [], [], []
        self.stats_endpoint = None
        self.stats_watcher = None
        self.prometheus = None  # (listen address, per process)
        self.metrics_watcher = None

    def make(self):
        """Build everything; raises ConfigError (and undoes what it built)
        on any failure."""
        try:
            self._plan_sockets()
            self._plan_watchers()
            self._check_counts()
            self._plan_plugins()
            self._plan_stats()
            self._plan_metrics()
        except Exception as exc:
            for watcher in self.built:
                _discard(watcher)
            self.bound.close_all()
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(describe(exc), self.cfg["filename"]) from None

    def _plan_sockets(self):
        arbiter = self.arbiter
        new_sockets = {s["name"]: s for s in self.cfg["sockets"]}
        changed = set()
        for name in set(arbiter._socket_configs) | set(new_sockets):
            if arbiter._socket_configs.get(name) != new_sockets.get(name):
                changed.add(name)
        relisten = {}
        for name in sorted(changed):
            if name not in new_sockets:
                continue
            current = arbiter.sockets.get(name)
            if name in arbiter._socket_configs and current is not None and \
                    current.can_relisten(new_sockets[name]):
                # only the backlog changed: listen() again on the bound
                # socket; binding a second one would find the address in use
                relisten[name] = new_sockets[name].get("backlog", 2048)
                continue
            where = new_sockets[name].where
            try:
                sock = CircusSocket(**new_sockets[name])
            except (ValueError, TypeError) as exc:
                raise where.error(str(exc)) from None
            try:
                sock.bind_and_listen()
            except (SocketError, OSError) as exc:
                sock.close()
                raise where.error(str(exc), "path" if sock.path else "port") from None
            self.bound.add(sock)
        self.socket_configs = new_sockets
        self.changed_sockets = changed - set(relisten)
        self.relisten_sockets = relisten

    def _plan_watchers(self):
        arbiter = self.arbiter
        new_watchers = {w["name"].lower(): w for w in self.cfg["watchers"]}
        for watcher in arbiter.watchers:
            conf = getattr(watcher, "config", None)
            if conf is None:
                continue  # added by a command (or a plugin, circusd-stats): leave it
            options = new_watchers.get(watcher.name.lower())
            if options is None:
                self.removed.append(watcher)
                continue
            changed = diff(conf, options)
            if changed:
                logger.info("watcher %s changed: %s", watcher.name, ", ".join(
                    "%s %r -> %r" % (key, old, new) for key, (old, new) in changed.items()))
                if set(changed) == {"numprocesses"}:
                    self.resized.append((watcher, options))
                else:
                    self.replaced.append((watcher, self._build_watcher(options)))
            elif self.changed_sockets and watcher.use_sockets:
                # same options, new socket fds: workers must inherit them
                self.resocketed.append(watcher)
        for key, options in new_watchers.items():
            if key not in arbiter._by_name:
                self.added.append(self._build_watcher(options))

    def _check_counts(self):
        """The process counts the reload leads to, under the file's ceilings."""
        arbiter = self.arbiter
        before = arbiter.process_counts()
        names = {name.lower(): name for name in before}
        gone = {w.name for w in self.removed}
        after = {name: count for name, count in before.items() if name not in gone}
        for section in self.cfg["watchers"]:
            name = names.get(section["name"].lower(), section["name"])
            count = 1 if section.get("singleton") else section.get("numprocesses", 1)
            after[name] = (count, section.get("max_numprocesses"))
        limits = [self.cfg["circus"].get(key, CIRCUS_SCHEMA.default(key)) for key in _LIMITS]
        try:
            check_counts(before, after, *limits)
        except LimitError as exc:
            raise count_error(exc, self.cfg["watchers"]) from None

    def _build_watcher(self, options):
        try:
            watcher = build_watcher(options)
        except ConfigError:
            raise
        except Exception as exc:  # a stream or hook of the user's that fails
            raise options.where.error(describe(exc)) from None
        self.built.append(watcher)
        return watcher

    def _plan_plugins(self):
        """[plugin:NAME] sections: by name, added, removed or changed."""
        arbiter = self.arbiter
        new = {_plugin_name(conf): conf for conf in self.cfg["plugins"]}
        old = {_plugin_name(conf): conf for conf in arbiter.plugins}
        for name, conf in old.items():
            watcher = arbiter._by_name.get(("plugin:" + name).lower())
            if name not in new:
                if watcher is not None:
                    self.plugins_removed.append(watcher)
            elif new[name] != conf:
                built = self._build_plugin(new[name])
                if watcher is not None:
                    self.plugins_restarted.append((watcher, built))
                else:
                    self.plugins_added.append(built)
        for name, conf in new.items():
            if name not in old:
                if ("plugin:" + name).lower() in arbiter._by_name:
                    raise ConfigError("a watcher named plugin:%s exists already" % name,
                                      self.cfg["filename"], "plugin:%s" % name)
                self.plugins_added.append(self._build_plugin(conf))
        self.plugins = list(new.values())

    def _build_plugin(self, conf):
        from circus.system_watchers import make_plugin_watcher
        try:
            watcher = make_plugin_watcher(conf, self.arbiter)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc), self.cfg["filename"],
                              "plugin:%s" % _plugin_name(conf)) from None
        self.built.append(watcher)
        return watcher

    def _plan_stats(self):
        """statsd / stats_endpoint: circusd-stats started, stopped or moved."""
        arbiter = self.arbiter
        endpoint = stats_endpoint_of(self.cfg["circus"])
        self.stats_endpoint = endpoint
        if endpoint == arbiter.stats_endpoint:
            return
        from circus.system_watchers import STATS_WATCHER, make_stats_watcher
        current = arbiter._by_name.get(STATS_WATCHER)
        if current is not None and getattr(current, "config", None) is not None:
            # a watcher of the file is named circusd-stats: it is not ours
            raise ConfigError("a watcher named %s exists already" % STATS_WATCHER,
                              self.cfg["filename"], "circus", "stats_endpoint")
        if endpoint:
            previous, arbiter.stats_endpoint = arbiter.stats_endpoint, endpoint
            try:
                watcher = make_stats_watcher(arbiter)
            except (ValueError, TypeError) as exc:
                raise ConfigError(str(exc), self.cfg["filename"], "circus",
                                  "stats_endpoint") from None
            finally:
                arbiter.stats_endpoint = previous
            self.built.append(watcher)
            self.stats_watcher = watcher


    def _plan_metrics(self):
        """prometheus / prometheus_per_process: circusd-metrics started,
        stopped or restarted with its new arguments."""
        arbiter = self.arbiter
        circus = self.cfg["circus"]
        wanted = (circus.get("prometheus"), bool(circus.get("prometheus_per_process")))
        self.prometheus = wanted
        if wanted == (arbiter.prometheus, arbiter.prometheus_per_process):
            return
        from circus.system_watchers import METRICS_WATCHER, make_metrics_watcher
        current = arbiter._by_name.get(METRICS_WATCHER)
        if current is not None and getattr(current, "config", None) is not None:
            raise ConfigError("a watcher named %s exists already" % METRICS_WATCHER,
                              self.cfg["filename"], "circus", "prometheus")
        if wanted[0]:
            previous = arbiter.prometheus, arbiter.prometheus_per_process
            arbiter.prometheus, arbiter.prometheus_per_process = wanted
            try:
                watcher = make_metrics_watcher(arbiter)
            except (ValueError, TypeError) as exc:
                raise ConfigError(str(exc), self.cfg["filename"], "circus",
                                  "prometheus") from None
            finally:
                arbiter.prometheus, arbiter.prometheus_per_process = previous
            self.built.append(watcher)
            self.metrics_watcher = watcher


async def _apply_reload(arbiter, plan):
    cfg = plan.cfg
    for key in _LIMITS:
        setattr(arbiter, key, cfg["circus"].get(key, CIRCUS_SCHEMA.default(key)))
    changes = {"added": [], "removed": [], "changed": [], "sockets": [],
               "plugins": {"added": [], "removed": [], "restarted": []}}
    if plan.changed_sockets:
        for name in plan.changed_sockets:
            old = arbiter.sockets.pop(name, None)
            if old is None:
                continue
            new = plan.bound.get(name)
            if new is not None and old.path and old.path == new.path:
                # the new socket lives at the same path: keep the file
                old.sock.close()
                old.sock = None
            else:
                old.close()
        for sock in plan.bound.values():
            arbiter.sockets.add(sock)
            logger.info("socket %s listening on %s (fd %d)", sock.name, sock.location,
                        sock.fileno())
        changes["sockets"] = sorted(plan.changed_sockets)
    for name, backlog in plan.relisten_sockets.items():
        sock = arbiter.sockets[name]
        try:
            sock.relisten(backlog)
        except OSError as exc:
            logger.error("socket %s: backlog not changed: %s", name, describe(exc))
            continue
        logger.info("socket %s listening on %s (fd %d) with backlog %d", name,
                    sock.location, sock.fileno(), sock.backlog)
        changes["sockets"] = sorted(set(changes["sockets"]) | {name})
    arbiter._socket_configs = plan.socket_configs

    for watcher in plan.removed:
        await arbiter.rm_watcher(watcher.name)
        changes["removed"].append(watcher.name)
    for watcher, options in plan.resized:
        await watcher.set_numprocesses(options.get("numprocesses", 1))
        watcher.config = options
        arbiter.publish("watcher.%s.updated" % watcher.name, {"time": time.time()})
        changes["changed"].append(watcher.name)
    for old, new in plan.replaced:
        await _replace_watcher(arbiter, old, new)
        changes["changed"].append(new.name)
    for watcher in plan.resocketed:
        await watcher.reload()
        changes["changed"].append(watcher.name)
    for watcher in plan.added:
        arbiter._register(watcher)
        arbiter._attach(watcher)
        arbiter.publish("watcher.%s.add" % watcher.name, {"time": time.time(),
                                                         "name": watcher.name})
        if watcher.autostart:
            await watcher.start()
        changes["added"].append(watcher.name)

    arbiter.plugins = plan.plugins
    for watcher in plan.plugins_removed:
        await arbiter.rm_watcher(watcher.name)
        changes["plugins"]["removed"].append(watcher.name)
    for old, new in plan.plugins_restarted:
        # one instance at a time: a plugin acts on circusd, two would
        # act twice
        await old.close()
        arbiter.watchers[arbiter.watchers.index(old)] = new
        arbiter._by_name[new.name.lower()] = new
        arbiter._attach(new)
        await new.start()
        arbiter.publish("watcher.%s.updated" % new.name, {"time": time.time()})
        changes["plugins"]["restarted"].append(new.name)
    for watcher in plan.plugins_added:
        arbiter._register(watcher)
        arbiter._attach(watcher)
        arbiter.publish("watcher.%s.add" % watcher.name, {"time": time.time(),
                                                         "name": watcher.name})
        await watcher.start()
        changes["plugins"]["added"].append(watcher.name)

    if plan.stats_endpoint != arbiter.stats_endpoint:
        await _apply_stats(arbiter, plan.stats_endpoint, plan.stats_watcher)
        changes["stats_endpoint"] = plan.stats_endpoint

    if plan.prometheus != (arbiter.prometheus, arbiter.prometheus_per_process):
        await _apply_metrics(arbiter, plan.prometheus, plan.metrics_watcher)
        changes["prometheus"] = plan.prometheus[0]

    circus = cfg["circus"]
    for key in ("warmup_delay", "check_delay", "debug"):
        if key in circus:
            setattr(arbiter, key, circus[key])
    _report_restart_needed(arbiter, circus)
    logger.info("configuration reloaded: %s", changes)
    arbiter.publish("arbiter.reload_config", dict(changes, time=time.time()))
    return changes


async def _swap_system_watcher(arbiter, name, watcher):
    """Remove circusd's own watcher name, if it runs; add and start watcher
    (None: none) in its place."""
    current = arbiter._by_name.get(name)
    if current is not None:
        await arbiter.rm_watcher(current.name)
    if watcher is not None:
        arbiter._register(watcher)
        arbiter._attach(watcher)
        arbiter.publish("watcher.%s.add" % watcher.name, {"time": time.time(),
                                                         "name": watcher.name})
        await watcher.start()


async def _apply_metrics(arbiter, wanted, watcher):
    from circus.system_watchers import METRICS_WATCHER
    # the old one goes first: the new one listens on the same address
    arbiter.prometheus, arbiter.prometheus_per_process = wanted
    await _swap_system_watcher(arbiter, METRICS_WATCHER, watcher)
    logger.info("circusd-metrics %s", "now serves on %s" % wanted[0] if wanted[0]
                else "stopped: no prometheus any more")


async def _apply_stats(arbiter, endpoint, watcher):
    from circus.system_watchers import STATS_WATCHER
    arbiter.stats_endpoint = endpoint
    await _swap_system_watcher(arbiter, STATS_WATCHER, watcher)
    logger.info("circusd-stats %s", "now publishes on %s" % endpoint if endpoint
                else "stopped: no stats_endpoint any more")


def _report_restart_needed(arbiter, circus):
    """[circus] options a running circusd cannot change: say so."""
    before = arbiter._circus_config
    if before is None:
        return
    for key in sorted(set(before) | set(circus)):
        if key not in _APPLIED and before.get(key) != circus.get(key):
            logger.warning("[circus] %s changed: restart circusd to apply it", key)
    arbiter._circus_config = dict(circus)


async def _replace_watcher(arbiter, old, new):
    """Swap a watcher whose options changed: start the new processes
    first and stop the old ones after, so shared sockets keep being
    served."""
    was_running = old.is_running()  # starting counts: it is on its way to active
    arbiter.watchers[arbiter.watchers.index(old)] = new
    arbiter._by_name[new.name.lower()] = new
    arbiter._attach(new)
    if was_running or new.autostart:
        await new.start()
    await old.close()
    arbiter.publish("watcher.%s.updated" % new.name, {"time": time.time()})


def stats_endpoint_of(circus):
    """Where circusd-stats publishes for a [circus] section (None: it does
    not run): stats_endpoint if set, else the default one when statsd = true."""
    return circus.get("stats_endpoint") or (DEFAULT_STATS if circus.get("statsd") else None)


def _plugin_name(conf):
    name = conf.get("name") or str(conf.get("use", "")).strip().rpartition(".")[2].lower()
    return str(name).lower()


def _discard(watcher):
    """Release what a watcher that never ran holds (its streams)."""
    for stream in (watcher.stdout_stream, watcher.stderr_stream):
        if stream is not None and hasattr(stream, "close"):
            try:
                stream.close()
            except Exception:
                logger.exception("closing a stream of %s", watcher.name)
