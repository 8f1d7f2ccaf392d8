"""The watchers circusd runs for itself: one per plugin (plugin:NAME) and
circusd-stats when `[circus] stats_endpoint` is set.

Daemon side: the arbiter builds them here. The processes they run
(circus.plugins.runner, circus.stats.streamer) never import this module:
they reach circusd over its endpoints, which circusd hands them as
connectable addresses, and they write "[LEVEL] message" lines that ChildLog
turns into circusd's own log records.
"""
import logging
import os
import re
import shlex
import signal
import sys

from circus.plugins.runner import CONFIG_ENV, encode_config
from circus.transport.endpoints import connectable
from circus.watcher import Watcher

logger = logging.getLogger("circus")

# started before every other watcher and stopped after them all: a plugin
# sees the first events of the others, circusd-stats their processes
PLUGIN_PRIORITY = 1000000
STATS_PRIORITY = 1000000
STATS_WATCHER = "circusd-stats"
# what they get from the kernel when circusd dies (circus.pdeathsig): they
# stop cleanly on it (a plugin's handle_stop runs)
DEATH_SIGNAL = signal.SIGTERM


def _curve_args(arbiter):
    """circusd's own key pair: circusd always admits its public key."""
    secret = (getattr(arbiter, "options", None) or {}).get("curve_secret_key")
    return ["--curve-key", secret, "--server-key", secret] if secret else []


def make_plugin_watcher(conf, arbiter):
    """The Watcher that runs one plugin mapping ({"use": ..., "name": ..., ...})
    of arbiter.plugins."""
    conf = dict(conf)
    use = str(conf.pop("use", "") or "").strip()
    if not use:
        raise ValueError("plugin %r: 'use' (the plugin's dotted class name) is mandatory"
                         % (conf.get("name") or conf))
    name = str(conf.pop("name", "") or use.rpartition(".")[2].lower())
    if not arbiter.endpoint or not arbiter.pubsub_endpoint:
        raise ValueError("plugin %s needs circusd's endpoint and pubsub_endpoint, "
                         "but the arbiter has endpoint=%r, pubsub_endpoint=%r"
                         % (name, arbiter.endpoint, arbiter.pubsub_endpoint))
    level = logging.getLevelName(logging.getLogger("circus").getEffectiveLevel())
    args = ["-m", "circus.plugins",
            "--endpoint", connectable(arbiter.endpoint),
            "--pubsub", connectable(arbiter.pubsub_endpoint),
            "--check-delay", str(arbiter.check_delay),
            "--name", name,
            "--circusd-pid", str(os.getpid()),
            "--log-level", str(level).lower()]
    if arbiter.ssh_server:
        args += ["--ssh", arbiter.ssh_server]
    args += _curve_args(arbiter) + [use]
    watcher_name = "plugin:" + name
    # print() goes to stdout, the log (by default) to stderr: both to circusd's log
    output = {"class": "circus.system_watchers.ChildLog", "name": watcher_name}
    return Watcher(
        watcher_name, shlex.quote(sys.executable), args=args,
        env={CONFIG_ENV: encode_config(conf)}, copy_env=True, copy_path=True,
        singleton=True, numprocesses=1, priority=PLUGIN_PRIORITY, respawn=True,
        ready="notify", ready_timeout=10.0, graceful_timeout=10.0, die_with_circusd=DEATH_SIGNAL,
        stdout_stream=output, stderr_stream=dict(output))


def make_stats_watcher(arbiter):
    """The circusd-stats watcher of an arbiter whose stats_endpoint is set."""
    if not arbiter.endpoint or not arbiter.pubsub_endpoint:
        raise ValueError("stats_endpoint needs circusd's endpoint and pubsub_endpoint: "
                         "circusd-stats reads its processes and events there")
    args = ["-m", "circus.stats",
            "--endpoint", connectable(arbiter.endpoint),
            "--pubsub", connectable(arbiter.pubsub_endpoint),
            "--statspoint", arbiter.stats_endpoint,
            "--log-level", "debug" if arbiter.debug else "info"] + _curve_args(arbiter)
    # circusd-stats logs to its stderr (circus.logs), which circusd reads
    return Watcher(STATS_WATCHER, cmd=shlex.quote(sys.executable), args=args,
                   singleton=True, copy_env=True, copy_path=True, priority=STATS_PRIORITY,
                   graceful_timeout=5.0, max_retry=5, die_with_circusd=DEATH_SIGNAL,
                   stderr_stream={"class": "circus.system_watchers.ChildLog",
                                  "name": STATS_WATCHER})


# the level a child's log line names: at its start ("[INFO] msg", a plugin)
# or after the child's own time and name ("2024-01-02 03:04:05
# circusd-stats[42] [INFO] msg")
_LEVEL_TAG = re.compile(r"^(?:\S+ \S+ \S+ )?\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ?")
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


class ChildLog:
    """Stream class for the processes circusd runs for itself: each line
    becomes a record of circusd's log, "NAME[PID]: message", at the level
    its "[LEVEL]" tag names.

    A line without a tag continues the record before it (a traceback's,
    a multi-line message) and keeps its level; an uncaught exception's
    "Traceback" is an error; any other untagged line is INFO on stdout
    (print()) and ERROR on stderr.
    """

    MAX_LINE = 65536

    def __init__(self, name="circus", **kw):
        self.name = name
        self._partial = {}  # (pid, stream): the end of a line still to come
        self._level = {}  # (pid, stream): the level of the last line
        self._log = logger

    def __call__(self, data):
        source = (data["pid"], data.get("name", "stderr"))
        lines = (self._partial.pop(source, b"") + data["data"]).split(b"\n")
        rest = lines.pop()
        if len(rest) > self.MAX_LINE:
            lines.append(rest)
        elif rest:
            self._partial[source] = rest
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._log.log(self._level_of(source, text), "%s[%d]: %s", self.name,
                              source[0], _LEVEL_TAG.sub("", text, count=1))

    def _level_of(self, source, text):
        tag = _LEVEL_TAG.match(text)
        if tag:
            level = _LEVELS[tag.group(1)]
        elif text.startswith("Traceback (most recent call last):"):
            level = logging.ERROR
        else:
            level = self._level.get(source)
            if level is None:
                level = logging.INFO if source[1] == "stdout" else logging.ERROR
        self._level[source] = level
        return level

    def close(self):
        self._partial.clear()
        self._level.clear()
