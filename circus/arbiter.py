"""The Arbiter owns the sockets and watchers of one circusd and its loop."""
import asyncio
import logging
import os
import signal
import threading
import time

from circus import config as configmod
from circus.errors import ArbiterError, describe
from circus.reaper import Reaper
from circus.sockets import CircusSocket, CircusSockets, SocketError
from circus.states import ArbiterState
from circus.tasks import BackgroundTasks
from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB, DEFAULT_STATS
from circus.watcher import Watcher

logger = logging.getLogger("circus")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)




class Arbiter:
    """Class used to control a list of watchers."""

    def __init__(self, watchers, endpoint=DEFAULT_ENDPOINT, pubsub_endpoint=DEFAULT_PUBSUB,
                 check_delay=1.0, prereload_fn=None, context=None, loop=None,
                 stats_endpoint=None, plugins=None, sockets=None, warmup_delay=0,
                 httpd=False, httpd_host="localhost", httpd_port=8080, debug=False,
                 stream_backend="thread", ssh_server=None, config_file=None, **options):
        self.watchers = []
        self._by_name = {}
        for watcher in watchers or ():
            self._register(watcher)
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        # statsd = true: run circusd-stats, on the default stats endpoint
        # unless stats_endpoint names another one
        self.stats_endpoint = stats_endpoint or (DEFAULT_STATS if options.get("statsd")
                                                 else None)
        self.check_delay = check_delay
        self.prereload_fn = prereload_fn
        self.context = context
        self.plugins = list(plugins or [])
        if isinstance(sockets, dict):
            sockets = sockets.values()
        self.sockets = CircusSockets(sockets or ())
        self.warmup_delay = float(warmup_delay)
        self.httpd = httpd
        self.httpd_host = httpd_host
        self.httpd_port = httpd_port
        self.debug = debug
        self.stream_backend = stream_backend
        self.ssh_server = ssh_server
        self.config_file = config_file
        self.options = options
        self.pid = os.getpid()
        self.started_at = None
        self.status = ArbiterState.STOPPED
        self.loop = loop
        self.reaper = None
        self.controller = None
        self._stopping = None
        self._done = None
        self._thread = None
        self._notify = None
        self._socket_configs = {}
        self._circus_config = None  # the [circus] section last applied
        self._listeners = []
        self._loop_thread = None
        self._quitting = False
        self._reload_lock = None
        # a reload on SIGHUP, the rest of a command answered before it is done
        self.background = BackgroundTasks("circusd")

    # --- construction -----------------------------------------------------
    @classmethod
    def load_from_config(cls, config_file):
        """Build an arbiter from an ini file; ConfigError if it is invalid."""
        cfg = configmod.load(config_file)
        kwargs = configmod.arbiter_kwargs(cfg)
        watchers = [_watcher_from_options(w) for w in cfg["watchers"]]
        sockets = [CircusSocket(**s) for s in cfg["sockets"]]
        arbiter = cls(watchers, sockets=sockets, plugins=cfg["plugins"],
                      config_file=cfg["filename"], **kwargs)
        arbiter._socket_configs = {s["name"]: s for s in cfg["sockets"]}
        arbiter._circus_config = dict(cfg["circus"])
        return arbiter

    def _register(self, watcher):
        key = watcher.name.lower()
        if key in self._by_name:
            raise ArbiterError("watcher %r already exists" % watcher.name)
        self._by_name[key] = watcher
        self.watchers.append(watcher)

    def _attach(self, watcher):
        watcher.debug = watcher.debug or self.debug
        watcher.attach(self.loop, self.reaper, self.publish, self.sockets, self)
        if self._notify is not None:
            watcher.notify_socket = self._notify.address

    # --- events -----------------------------------------------------------
    def publish(self, topic, msg):
        if self.controller is not None:
            self.controller.publish(topic, msg)
        for listener in self._listeners:
            listener(topic, msg)

    def subscribe(self, listener):
        """listener(topic, msg) is called in-process for every event."""
        self._listeners.append(listener)

    # --- running ----------------------------------------------------------
    def start(self):
        """Run until stopped: bind sockets, start watchers, serve commands."""
        if self.loop is not None and not self.loop.is_running():
            return self.loop.run_until_complete(self.run())
        return asyncio.run(self.run())

    def start_background(self):
        """Run the arbiter in its own thread (library use, not circusd)."""
        ready = threading.Event()
        errors = []

        def target():
            async def main():
                task = asyncio.ensure_future(self.run())
                while self.status is ArbiterState.STOPPED and not task.done():
                    await asyncio.sleep(0.01)
                ready.set()
                await task
            try:
                asyncio.run(main())
            except BaseException as exc:  # reported to the caller
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=target, name="circus-arbiter", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]

    async def run(self):
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.current_thread()
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._quitting = False
        self.reaper = Reaper(self.loop, reap_strangers=os.getpid() == 1)
        self.reaper.start()
        in_main = threading.current_thread() is threading.main_thread()
        try:
            self.sockets.bind_and_listen_all()
            for sock in self.sockets.values():
                logger.info("socket %s listening on %s (fd %d)", sock.name, sock.location,
                            sock.fileno())
            await self._start_controller()
            self._start_notify()
            if in_main:
                for signum in _STOP_SIGNALS:
                    self.loop.add_signal_handler(signum, self._on_stop_signal, signum)
                self.loop.add_signal_handler(signal.SIGHUP, self._on_hup)
            for watcher in self._system_watchers():
                self._register(watcher)
            self.started_at = time.time()
            self.status = ArbiterState.STARTING
            logger.info("Starting master on pid %d", self.pid)
            for watcher in self.watchers:
                self._attach(watcher)
            await self.start_watchers(autostart_only=True)
            self.status = ArbiterState.ACTIVE
            self.publish("arbiter.start", {"time": time.time()})
            logger.info("Arbiter now waiting for commands")
            await self._stopping.wait()
        finally:
            await self._shutdown(in_main)

    async def _shutdown(self, in_main):
        self.status = ArbiterState.STOPPING
        try:
            await self.stop_watchers(skip_stopped=True)
        finally:
            self.publish("arbiter.stop", {"time": time.time()})
            if in_main:
                for signum in _STOP_SIGNALS + (signal.SIGHUP,):
                    self.loop.remove_signal_handler(signum)
            if self.controller is not None:
                await self.controller.stop()
                self.controller = None
            if self._notify is not None:
                self._notify.close()
                self._notify = None
            self.sockets.close_all()
            self.reaper.close()
            self.status = ArbiterState.STOPPED
            self._quitting = False
            self._done.set()
            logger.info("Arbiter exiting")

    async def _start_controller(self):
        if self.endpoint is None and self.pubsub_endpoint is None:
            return
        from circus.controller import Controller
        self.controller = Controller(self, self.endpoint, self.pubsub_endpoint,
                                     context=self.context, **_curve_options(self.options))
        await self.controller.start()

    def _system_watchers(self):
        """Plugins and circusd-stats run as watchers of their own (named
        plugin:NAME and circusd-stats), visible to every command."""
        watchers = []
        if self.plugins:
            from circus.plugins import make_plugin_watcher
            watchers += [make_plugin_watcher(conf, self) for conf in self.plugins]
        if self.stats_endpoint:
            from circus.stats import make_stats_watcher
            watchers.append(make_stats_watcher(self))
        return [w for w in watchers if w.name.lower() not in self._by_name]

    def _start_notify(self):
        if any(w.ready == "notify" for w in self.watchers) or self._notify_wanted():
            from circus.notify import NotifyListener
            self._notify = NotifyListener(self.loop, self._on_notify)

    def _notify_wanted(self):
        # add_watcher may bring notify watchers later: open the socket anyway
        # when a controller exists; it costs one idle fd
        return self.controller is not None

    def _on_notify(self, pid, message):
        for watcher in self.watchers:
            if pid in watcher.processes:
                if message.get("READY") == "1":
                    watcher.process_ready(pid)
                return
        logger.debug("notify message from unknown pid %d: %r", pid, message)

    def _on_stop_signal(self, signum):
        logger.info("Got signal %s, stopping", signal.Signals(signum).name)
        self._begin_stop()

    def _on_hup(self):
        logger.info("Got SIGHUP, reloading the configuration")
        self.background.spawn(self._reload_on_hup(), self.loop)

    async def _reload_on_hup(self):
        # a bad file or a refused reload is one line in the log, not a
        # traceback: the error says which file, section and option
        try:
            await self.reload_config()
        except (configmod.ConfigError, ArbiterError) as exc:
            logger.error("configuration not reloaded, nothing changed: %s", exc)
        except Exception:
            logger.exception("configuration reload failed")

    def stop(self):
        """Ask the arbiter to stop; safe from any thread and when not running."""
        if self._stopping is None or self._done.is_set():
            return
        if self._loop_thread is not None and threading.current_thread() is not self._loop_thread:
            # an asyncio.Event set from another thread would not wake the loop
            try:
                self.loop.call_soon_threadsafe(self._begin_stop)
            except RuntimeError:  # the loop is closed: it has stopped already
                return
            if self._thread is not None:
                self._thread.join()
            return
        self._begin_stop()

    def _begin_stop(self):
        self._quitting = True
        self._stopping.set()

    async def quit(self):
        """Stop everything; returns once every watcher has stopped."""
        self._begin_stop()
        await self._done.wait()

    def request_quit(self):
        self._begin_stop()

    def prepare_quit(self):
        """circusd is about to stop (the quit command stops the watchers
        before it asks the loop to end): from now on nothing is started."""
        self._quitting = True

    @property
    def running(self):
        return self.status in (ArbiterState.STARTING, ArbiterState.ACTIVE)

    @property
    def stopping(self):
        """True once circusd has been asked to stop: start, restart, reload
        and add are refused from then on, so nothing outlives the quit."""
        return self._quitting or self.status is ArbiterState.STOPPING

    def check_not_stopping(self, what):
        """ArbiterError when circusd is stopping; what names the refused operation."""
        if self.stopping:
            raise ArbiterError("circusd is stopping: %s refused" % what)

    # --- watchers ---------------------------------------------------------
    def iter_watchers(self, reverse=True):
        """Watchers by priority, the highest first (reverse=False: lowest first)."""
        return sorted(self.watchers, key=lambda w: w.priority, reverse=reverse)

    def get_watcher(self, name):
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise KeyError(name) from None

    async def start_watchers(self, autostart_only=False):
        first = True
        for watcher in self.iter_watchers():
            if self.stopping:
                return
            if autostart_only and not watcher.autostart:
                continue
            if not first and self.warmup_delay > 0:
                await asyncio.sleep(self.warmup_delay)
            first = False
            await watcher.start()

    async def stop_watchers(self, reason=None, skip_stopped=False):
        # reverse start order: the highest priority (plugins, databases)
        # stops last; watchers of equal priority stop together
        by_priority = {}
        for watcher in self.watchers:
            if watcher.lock is not None and not (skip_stopped and watcher.is_stopped()):
                by_priority.setdefault(watcher.priority, []).append(watcher)
        for priority in sorted(by_priority):
            await asyncio.gather(*(w.stop(reason=reason) for w in by_priority[priority]))

    async def restart(self):
        await self.stop_watchers()
        await self.start_watchers()

    async def reload(self, graceful=True, sequential=False):
        if self.prereload_fn is not None:
            self.prereload_fn(self)
        for watcher in self.iter_watchers():
            await watcher.reload(graceful=graceful, sequential=sequential)

    def numprocesses(self):
        return sum(len(w.processes) for w in self.watchers)

    def numwatchers(self):
        return len(self.watchers)

    def statuses(self):
        return {w.name: w.status for w in self.watchers}

    async def add_watcher(self, name, cmd, start=False, **options):
        """Add a watcher; options are validated like a config section."""
        validated = {"name": name, "cmd": cmd}
        for key, value in options.items():
            try:
                key, value = configmod.convert_watcher_option(key, value)
            except ValueError as exc:
                raise ValueError("option %s: %s" % (key, exc)) from None
            validated[key] = value
        configmod.check_variables(validated, {n.lower() for n in self.sockets})
        self.check_not_stopping("add of watcher %s" % name)
        watcher = _watcher_from_options(validated)
        self._register(watcher)
        if self.loop is not None and self.reaper is not None:
            self._attach(watcher)
        self.publish("watcher.%s.add" % name, {"time": time.time(), "name": name})
        if start:
            await watcher.start()
        return watcher

    async def rm_watcher(self, name):
        watcher = self.get_watcher(name)
        await watcher.close()
        self.watchers.remove(watcher)
        del self._by_name[watcher.name.lower()]
        self.publish("watcher.%s.remove" % watcher.name, {"time": time.time(),
                                                         "name": watcher.name})

    # --- configuration reload ---------------------------------------------
    async def reload_config(self):
        """Re-read the config file and apply what changed; unchanged
        watchers, sockets and plugins are left running untouched.

        Everything new is built first (the file read and validated, new
        watchers and plugin watchers constructed, new sockets bound); only
        then is anything changed. A failure on the way (ConfigError naming
        file, section and option) changes nothing."""
        self.check_not_stopping("reloadconfig")
        if not self.config_file:
            await self.reload()
            return {}
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        # reloads one at a time: each plan is made against what the last applied
        async with self._reload_lock:
            self.check_not_stopping("reloadconfig")
            plan = self._plan_reload()
            return await self._apply_reload(plan)

    def _plan_reload(self):
        """Everything reload_config needs, built without touching what runs;
        raises ConfigError (and undoes what it built) on any failure."""
        cfg = configmod.load(self.config_file)
        filename = cfg["filename"]
        plan = {"cfg": cfg, "bound": CircusSockets(), "built": []}
        try:
            self._plan_sockets(plan)
            self._plan_watchers(plan)
            self._plan_plugins(plan)
            self._plan_stats(plan)
        except Exception as exc:
            for watcher in plan["built"]:
                _discard(watcher)
            plan["bound"].close_all()
            if isinstance(exc, configmod.ConfigError):
                raise
            raise configmod.ConfigError(describe(exc), filename) from None
        return plan

    def _plan_sockets(self, plan):
        cfg = plan["cfg"]
        new_sockets = {s["name"]: s for s in cfg["sockets"]}
        changed = set()
        for name in set(self._socket_configs) | set(new_sockets):
            if self._socket_configs.get(name) != new_sockets.get(name):
                changed.add(name)
        relisten = {}
        for name in sorted(changed):
            if name not in new_sockets:
                continue
            current = self.sockets.get(name)
            if name in self._socket_configs and current is not None and \
                    current.can_relisten(new_sockets[name]):
                # only the backlog changed: listen() again on the bound
                # socket; binding a second one would find the address in use
                relisten[name] = new_sockets[name].get("backlog", 2048)
                continue
            where = "socket:%s" % name
            try:
                sock = CircusSocket(**new_sockets[name])
            except (ValueError, TypeError) as exc:
                raise configmod.ConfigError(str(exc), cfg["filename"], where) from None
            try:
                sock.bind_and_listen()
            except (SocketError, OSError) as exc:
                sock.close()
                raise configmod.ConfigError(str(exc), cfg["filename"], where) from None
            plan["bound"].add(sock)
        plan["socket_configs"] = new_sockets
        plan["changed_sockets"] = changed - set(relisten)
        plan["relisten_sockets"] = relisten

    def _plan_watchers(self, plan):
        new_watchers = {w["name"].lower(): w for w in plan["cfg"]["watchers"]}
        removed, resized, replaced, resocketed, added = [], [], [], [], []
        for watcher in self.watchers:
            conf = getattr(watcher, "config", None)
            if conf is None:
                continue  # added by a command (or a plugin, circusd-stats): leave it
            options = new_watchers.get(watcher.name.lower())
            if options is None:
                removed.append(watcher)
            elif _comparable(options) != _comparable(conf):
                if _comparable(options, "numprocesses") == _comparable(conf, "numprocesses"):
                    resized.append((watcher, options))
                else:
                    replaced.append((watcher, self._build_watcher(options, plan)))
            elif plan["changed_sockets"] and watcher.use_sockets:
                # same options, new socket fds: workers must inherit them
                resocketed.append(watcher)
        for key, options in new_watchers.items():
            if key not in self._by_name:
                added.append(self._build_watcher(options, plan))
        plan.update(removed=removed, resized=resized, replaced=replaced,
                    resocketed=resocketed, added=added)

    def _build_watcher(self, options, plan):
        try:
            watcher = _watcher_from_options(options)
        except configmod.ConfigError:
            raise
        except Exception as exc:  # a stream or hook of the user's that fails
            raise configmod.ConfigError(describe(exc), plan["cfg"]["filename"],
                                        "watcher:%s" % options["name"]) from None
        plan["built"].append(watcher)
        return watcher

    def _plan_plugins(self, plan):
        """[plugin:NAME] sections: by name, added, removed or changed."""
        new = {_plugin_name(conf): conf for conf in plan["cfg"]["plugins"]}
        old = {_plugin_name(conf): conf for conf in self.plugins}
        removed, restarted, added = [], [], []
        for name, conf in old.items():
            watcher = self._by_name.get(("plugin:" + name).lower())
            if name not in new:
                if watcher is not None:
                    removed.append(watcher)
            elif new[name] != conf:
                built = self._build_plugin(new[name], plan)
                if watcher is not None:
                    restarted.append((watcher, built))
                else:
                    added.append(built)
        for name, conf in new.items():
            if name not in old:
                if ("plugin:" + name).lower() in self._by_name:
                    raise configmod.ConfigError(
                        "a watcher named plugin:%s exists already" % name,
                        plan["cfg"]["filename"], "plugin:%s" % name)
                added.append(self._build_plugin(conf, plan))
        plan.update(plugins=list(new.values()), plugins_removed=removed,
                    plugins_restarted=restarted, plugins_added=added)

    def _build_plugin(self, conf, plan):
        from circus.plugins import make_plugin_watcher
        try:
            watcher = make_plugin_watcher(conf, self)
        except (ValueError, TypeError) as exc:
            raise configmod.ConfigError(str(exc), plan["cfg"]["filename"],
                                        "plugin:%s" % _plugin_name(conf)) from None
        plan["built"].append(watcher)
        return watcher

    def _plan_stats(self, plan):
        """statsd / stats_endpoint: circusd-stats started, stopped or moved."""
        endpoint = stats_endpoint_of(plan["cfg"]["circus"])
        plan["stats_endpoint"] = endpoint
        plan["stats_watcher"] = None
        if endpoint == self.stats_endpoint:
            return
        from circus.stats import STATS_WATCHER, make_stats_watcher
        current = self._by_name.get(STATS_WATCHER)
        if current is not None and getattr(current, "config", None) is not None:
            # a watcher of the file is named circusd-stats: it is not ours
            raise configmod.ConfigError("a watcher named %s exists already" % STATS_WATCHER,
                                        plan["cfg"]["filename"], "circus", "stats_endpoint")
        if endpoint:
            previous, self.stats_endpoint = self.stats_endpoint, endpoint
            try:
                watcher = make_stats_watcher(self)
            except (ValueError, TypeError) as exc:
                raise configmod.ConfigError(str(exc), plan["cfg"]["filename"], "circus",
                                            "stats_endpoint") from None
            finally:
                self.stats_endpoint = previous
            plan["built"].append(watcher)
            plan["stats_watcher"] = watcher

    async def _apply_reload(self, plan):
        cfg = plan["cfg"]
        changes = {"added": [], "removed": [], "changed": [], "sockets": [],
                   "plugins": {"added": [], "removed": [], "restarted": []}}
        if plan["changed_sockets"]:
            for name in plan["changed_sockets"]:
                old = self.sockets.pop(name, None)
                if old is None:
                    continue
                new = plan["bound"].get(name)
                if new is not None and old.path and old.path == new.path:
                    # the new socket lives at the same path: keep the file
                    old.sock.close()
                    old.sock = None
                else:
                    old.close()
            for sock in plan["bound"].values():
                self.sockets.add(sock)
                logger.info("socket %s listening on %s (fd %d)", sock.name, sock.location,
                            sock.fileno())
            changes["sockets"] = sorted(plan["changed_sockets"])
        for name, backlog in plan["relisten_sockets"].items():
            sock = self.sockets[name]
            try:
                sock.relisten(backlog)
            except OSError as exc:
                logger.error("socket %s: backlog not changed: %s", name, describe(exc))
                continue
            logger.info("socket %s listening on %s (fd %d) with backlog %d", name,
                        sock.location, sock.fileno(), sock.backlog)
            changes["sockets"] = sorted(set(changes["sockets"]) | {name})
        self._socket_configs = plan["socket_configs"]

        for watcher in plan["removed"]:
            await self.rm_watcher(watcher.name)
            changes["removed"].append(watcher.name)
        for watcher, options in plan["resized"]:
            await watcher.set_numprocesses(options.get("numprocesses", 1))
            watcher.config = options
            self.publish("watcher.%s.updated" % watcher.name, {"time": time.time()})
            changes["changed"].append(watcher.name)
        for old, new in plan["replaced"]:
            await self._replace_watcher(old, new)
            changes["changed"].append(new.name)
        for watcher in plan["resocketed"]:
            await watcher.reload()
            changes["changed"].append(watcher.name)
        for watcher in plan["added"]:
            self._register(watcher)
            self._attach(watcher)
            self.publish("watcher.%s.add" % watcher.name, {"time": time.time(),
                                                          "name": watcher.name})
            if watcher.autostart:
                await watcher.start()
            changes["added"].append(watcher.name)

        self.plugins = plan["plugins"]
        for watcher in plan["plugins_removed"]:
            await self.rm_watcher(watcher.name)
            changes["plugins"]["removed"].append(watcher.name)
        for old, new in plan["plugins_restarted"]:
            # one instance at a time: a plugin acts on circusd, two would
            # act twice
            await old.close()
            self.watchers[self.watchers.index(old)] = new
            self._by_name[new.name.lower()] = new
            self._attach(new)
            await new.start()
            self.publish("watcher.%s.updated" % new.name, {"time": time.time()})
            changes["plugins"]["restarted"].append(new.name)
        for watcher in plan["plugins_added"]:
            self._register(watcher)
            self._attach(watcher)
            self.publish("watcher.%s.add" % watcher.name, {"time": time.time(),
                                                          "name": watcher.name})
            await watcher.start()
            changes["plugins"]["added"].append(watcher.name)

        if plan["stats_endpoint"] != self.stats_endpoint:
            await self._apply_stats(plan["stats_endpoint"], plan["stats_watcher"])
            changes["stats_endpoint"] = plan["stats_endpoint"]

        circus = cfg["circus"]
        for key in ("warmup_delay", "check_delay", "debug"):
            if key in circus:
                setattr(self, key, circus[key])
        self._report_restart_needed(circus)
        logger.info("configuration reloaded: %s", changes)
        self.publish("arbiter.reload_config", dict(changes, time=time.time()))
        return changes

    async def _apply_stats(self, endpoint, watcher):
        from circus.stats import STATS_WATCHER
        current = self._by_name.get(STATS_WATCHER)
        if current is not None:
            await self.rm_watcher(current.name)
        self.stats_endpoint = endpoint
        if watcher is not None:
            self._register(watcher)
            self._attach(watcher)
            self.publish("watcher.%s.add" % watcher.name, {"time": time.time(),
                                                          "name": watcher.name})
            await watcher.start()
        logger.info("circusd-stats %s", "now publishes on %s" % endpoint if endpoint
                    else "stopped: no stats_endpoint any more")

    def _report_restart_needed(self, circus):
        """[circus] options a running circusd cannot change: say so."""
        before = self._circus_config
        if before is None:
            return
        applied = {"warmup_delay", "check_delay", "debug", "stats_endpoint", "statsd",
                   "include", "include_dir"}
        for key in sorted(set(before) | set(circus)):
            if key not in applied and before.get(key) != circus.get(key):
                logger.warning("[circus] %s changed: restart circusd to apply it", key)
        self._circus_config = dict(circus)

    async def _replace_watcher(self, old, new):
        """Swap a watcher whose options changed: start the new processes
        first and stop the old ones after, so shared sockets keep being
        served."""
        was_running = old.is_running()  # starting counts: it is on its way to active
        self.watchers[self.watchers.index(old)] = new
        self._by_name[new.name.lower()] = new
        self._attach(new)
        if was_running or new.autostart:
            await new.start()
        await old.close()
        self.publish("watcher.%s.updated" % new.name, {"time": time.time()})

    # --- information ------------------------------------------------------
    def info(self):
        # through procstats, which remembers the previous look: cpu is then
        # the usage since the last dstats, not always 0.0 from a new psutil
        # object, and children costs one /proc scan
        from circus.procstats import Snapshot
        return Snapshot().info(self.pid, self.started_at)

    def get_arbiter_options(self):
        return {"endpoint": self.endpoint, "pubsub_endpoint": self.pubsub_endpoint,
                "stats_endpoint": self.stats_endpoint, "check_delay": self.check_delay,
                "warmup_delay": self.warmup_delay, "httpd": self.httpd,
                "httpd_host": self.httpd_host, "httpd_port": self.httpd_port,
                "debug": self.debug, "stream_backend": self.stream_backend,
                "numwatchers": self.numwatchers(), "numprocesses": self.numprocesses()}


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


def _comparable(options, *ignore):
    return {k: v for k, v in options.items() if k not in ("_where",) + ignore}


def _watcher_from_options(options):
    options = dict(options)
    where = options.pop("_where", None)
    kwargs = configmod.watcher_kwargs({k: v for k, v in options.items() if k != "name"})
    try:
        watcher = Watcher(options["name"], **kwargs)
    except (ValueError, ImportError, TypeError) as exc:
        if where:
            raise configmod.ConfigError(str(exc), where[0], where[1]) from None
        raise ValueError(str(exc)) from None
    watcher.config = dict(options, _where=where) if where else None
    return watcher


def _curve_options(options):
    return {k: options[k] for k in ("curve_secret_key", "curve_authorized_keys")
            if options.get(k)}
