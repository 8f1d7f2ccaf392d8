"""Command reloader: restart a watcher when its executable changes on disk.

::

    [plugin:reloader]
    use = circus.plugins.command_reloader.CommandReloader
    loop_rate = 1

Every ``loop_rate`` seconds the plugin looks at each watched watcher's
executable (its ``executable`` option, or else the first word of its
``cmd``, found on PATH); when the file's modification time, inode or size is
no longer what it was, the plugin restarts the watcher (if it is active). A
new build copied or moved over the old one is caught either way.

Options:

- ``loop_rate``: seconds between two looks (default 1).
- ``watchers``: the watchers to watch, names or glob patterns separated by
  commas (default: every watcher but the plugins).
- ``use_reload``: true to reload the watcher gracefully (new processes first)
  instead of restarting it (default false).

Per watcher, in its section:

- ``command_reloader.path``: the file to look at instead of the executable
  (for ``cmd = python app.py``, ``command_reloader.path = app.py``).
- ``command_reloader.enabled = false``: leave this watcher alone.
"""
import logging
import os
import shlex

from circus.plugins import CircusPlugin
from circus.plugins._options import (WatcherOptions, boolean, matches, number, option, parse,
                                     patterns)
from circus.states import WatcherState
from circus.util import which

logger = logging.getLogger("circus.plugins.command_reloader")

SPEC = {"path": (str, None), "enabled": (boolean, True)}


def executable_of(options):
    """The file a watcher runs, from its options mapping (None if unknown)."""
    path = options.get("executable")
    if not path:
        try:
            words = shlex.split(options.get("cmd") or "")
        except ValueError:
            return None
        if not words:
            return None
        path = words[0]
    return path


def signature(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class CommandReloader(CircusPlugin):
    name = "command_reloader"

    def __init__(self, endpoint, pubsub_endpoint, check_delay, ssh_server=None, **config):
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server=ssh_server, **config)
        self.loop_rate = option(config, "loop_rate", number, 1.0)
        self.patterns = option(config, "watchers", patterns, None)
        self.use_reload = option(config, "use_reload", boolean, False)
        self.overrides = WatcherOptions(self, "command_reloader")
        self.names = set()
        self.paths = {}   # watcher -> (path, cwd) it runs, from its options
        self.seen = {}    # watcher -> (path, signature) last looked at

    def watched(self, name):
        if name == self.watcher_name:
            return False
        if self.patterns is None:
            return not name.startswith("plugin:")
        return matches(name, self.patterns)

    def handle_init(self):
        self.spawn(self._setup())

    async def _setup(self):
        self.names.update((await self.acall("list")).get("watchers") or [])
        self.every(self.loop_rate, self.check)

    def handle_recv(self, data):
        name, event, _ = self.split_data(data)
        if name is None:
            return
        self.overrides.on_event(name, event)
        if event in ("updated", "add", "remove"):
            self.paths.pop(name, None)
        if event == "add":
            self.names.add(name)
        elif event == "remove":
            self.names.discard(name)
            self.seen.pop(name, None)

    async def path_of(self, name):
        if name not in self.paths:
            reply = await self.acall("options", name=name)
            options = reply.get("options") or {}
            settings = parse(await self.overrides.get(name), SPEC, "watcher %s" % name)
            if not settings.enabled:
                self.paths[name] = None
                return None
            path = settings.path or executable_of(options)
            if path and os.sep not in path:
                path = which(path)
            if path and not os.path.isabs(path):
                path = os.path.join(options.get("working_dir") or os.getcwd(), path)
            self.paths[name] = os.path.realpath(path) if path else None
        return self.paths[name]

    async def check(self):
        for name in sorted(self.names):
            if self.watched(name):
                await self.check_watcher(name)

    async def check_watcher(self, name):
        path = await self.path_of(name)
        if path is None:
            return
        current = signature(path)
        if current is None:
            return  # being replaced, or gone: look again next time
        previous = self.seen.get(name)
        self.seen[name] = (path, current)
        if previous is None or previous[0] != path:
            logger.debug("watcher %s: watching %s", name, path)
            return
        if previous[1] == current:
            return
        status = (await self.acall("status", name=name)).get("status")
        if status != WatcherState.ACTIVE:
            return
        command = "reload" if self.use_reload else "restart"
        logger.info("%s changed: %s watcher %s", path, command, name)
        await self.acall(command, name=name)
