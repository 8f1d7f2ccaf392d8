"""The watchers circusd runs for itself: one per plugin (plugin:NAME),
circusd-stats when `[circus] stats_endpoint` is set, circusd-metrics when
`[circus] prometheus` is, and the web console (circushttpd) when
`[circus] httpd = True`.

Daemon side: the arbiter builds them here. The processes they run
(circus.plugins.runner, circus.stats.streamer, circus.metrics) never import this module:
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
# up before the other watchers start, so that /readyz says they are not
# ready yet, and stopped after them, so that it says so while they drain
METRICS_PRIORITY = 1000000
METRICS_WATCHER = "circusd-metrics"
# what they get when circusd dies (circus.guardian): they
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


# after circusd-stats (whose stream it reads), before every ordinary watcher
HTTPD_PRIORITY = 999999
HTTPD_WATCHER = "circushttpd"


def make_httpd_watcher(arbiter):
    """`[circus] httpd = True`: the web console, circushttpd, on a circus
    socket named circushttpd (bound here, at httpd_host:httpd_port, and added
    to arbiter.sockets). Its users and cookie secret reach it through its
    environment (CIRCUSHTTPD_USERS, CIRCUSHTTPD_SECRET), never a command
    line, which any local user can read."""
    from circus.sockets import CircusSocket
    if not arbiter.endpoint:
        raise ValueError("httpd needs circusd's endpoint: the console sends its commands there")
    options = getattr(arbiter, "options", None) or {}
    args = ["-m", "circus.web", "--fd", "$(circus.sockets.%s)" % HTTPD_WATCHER,
            "--endpoint", connectable(arbiter.endpoint),
            "--log-level", "debug" if arbiter.debug else "info"]
    if arbiter.pubsub_endpoint:
        args += ["--pubsub", connectable(arbiter.pubsub_endpoint)]
    if arbiter.stats_endpoint:
        args += ["--stats-endpoint", connectable(arbiter.stats_endpoint)]
    auth_file = options.get("httpd_auth_file")
    if auth_file:
        base = os.path.dirname(os.path.abspath(arbiter.config_file)) \
            if arbiter.config_file else os.getcwd()
        args += ["--auth-file", os.path.join(base, os.path.expanduser(auth_file))]
    for key, flag in (("httpd_insecure", "--insecure"), ("httpd_read_only", "--read-only")):
        if options.get(key):
            args.append(flag)
    for key, flag in (("httpd_url_prefix", "--url-prefix"),
                      ("httpd_trust_forwarded", "--trust-forwarded"),
                      ("httpd_logs_role", "--logs-role")):
        if options.get(key):
            args += [flag, options[key]]
    args += _curve_args(arbiter)
    env = {name: options[key] for key, name in (("httpd_users", "CIRCUSHTTPD_USERS"),
                                                ("httpd_secret", "CIRCUSHTTPD_SECRET"))
           if options.get(key)}
    sock = CircusSocket(name=HTTPD_WATCHER, host=arbiter.httpd_host, port=arbiter.httpd_port)
    sock.bind_and_listen()
    arbiter.sockets.add(sock)
    return Watcher(HTTPD_WATCHER, cmd=shlex.quote(sys.executable), args=args, env=env,
                   singleton=True, use_sockets=True, copy_env=True, copy_path=True,
                   priority=HTTPD_PRIORITY, graceful_timeout=5.0, max_retry=5,
                   stderr_stream={"class": "circus.system_watchers.ChildLog",
                                  "name": HTTPD_WATCHER})


def make_metrics_watcher(arbiter):
    """The circusd-metrics watcher of an arbiter whose prometheus is set."""
    if not arbiter.endpoint:
        raise ValueError("prometheus needs circusd's endpoint: circusd-metrics asks "
                         "circusd for its metrics there")
    args = ["-m", "circus.metrics",
            "--endpoint", connectable(arbiter.endpoint),
            "--listen", arbiter.prometheus,
            "--circusd-pid", str(os.getpid()),
            "--log-level", "debug" if arbiter.debug else "info"]
    if arbiter.prometheus_per_process:
        args.append("--per-process")
    args += _curve_args(arbiter)
    return Watcher(METRICS_WATCHER, cmd=shlex.quote(sys.executable), args=args,
                   singleton=True, copy_env=True, copy_path=True, priority=METRICS_PRIORITY,
                   graceful_timeout=5.0, max_retry=5,
                   stderr_stream={"class": "circus.system_watchers.ChildLog",
                                  "name": METRICS_WATCHER})


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
