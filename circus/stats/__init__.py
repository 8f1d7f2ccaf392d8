"""Live statistics: circusd-stats, its stream, and circus-top.

- circus.stats.streamer: the circusd-stats process (events in, stats out);
- circus.stats.collector and circus.stats.sockdiag: what one tick measures;
- circus.stats.publisher: the PUB socket at stats_endpoint;
- circus.stats.client: a consumer of the stream, for any program;
- circus.stats.top: circus-top.

When `[circus] stats_endpoint` is set, circusd runs circusd-stats as a
watcher of its own, named circusd-stats (make_stats_watcher below).
"""
import logging
import re
import shlex
import sys

logger = logging.getLogger("circus")

STATS_WATCHER = "circusd-stats"
# started before every other watcher and stopped after them all, so that
# it sees their processes come and go
STATS_PRIORITY = 1000000


def connectable(endpoint):
    """An address a client can connect to for an endpoint circusd binds
    (tcp://*:5555 and tcp://0.0.0.0:5555 are reached on the loopback)."""
    for wildcard in ("tcp://*:", "tcp://0.0.0.0:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard):]
    if endpoint.startswith("tcp://[::]:"):
        return "tcp://[::1]:" + endpoint[len("tcp://[::]:"):]
    return endpoint


def make_stats_watcher(arbiter):
    """The circusd-stats watcher of an arbiter whose stats_endpoint is set."""
    from circus.watcher import Watcher
    if not arbiter.endpoint or not arbiter.pubsub_endpoint:
        raise ValueError("stats_endpoint needs circusd's endpoint and pubsub_endpoint: "
                         "circusd-stats reads its processes and events there")
    args = ["-m", "circus.stats",
            "--endpoint", connectable(arbiter.endpoint),
            "--pubsub", connectable(arbiter.pubsub_endpoint),
            "--statspoint", arbiter.stats_endpoint,
            "--log-level", "debug" if arbiter.debug else "info"]
    secret = (getattr(arbiter, "options", None) or {}).get("curve_secret_key")
    if secret:
        # circusd's own key pair authenticates circusd-stats (circusd always
        # admits its own public key)
        args += ["--curve-key", secret, "--server-key", secret]
    return Watcher(STATS_WATCHER, cmd=shlex.quote(sys.executable), args=args,
                   singleton=True, copy_env=True, copy_path=True, priority=STATS_PRIORITY,
                   graceful_timeout=5.0, max_retry=5,
                   stderr_stream={"class": LogStream})


_LEVEL = re.compile(r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] (.*)")


class LogStream:
    """The stderr of one of circusd's own helpers (circusd-stats by
    default; `label` names another), logged by circusd at the level each
    line has."""

    def __init__(self, label=STATS_WATCHER, **kw):
        self.label = label
        self._partial = b""

    def __call__(self, data):
        chunk = self._partial + data["data"]
        lines = chunk.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            match = _LEVEL.search(line)
            if match:
                level = getattr(logging, match.group(1))
                logger.log(level, "%s[%d]: %s", self.label, data["pid"], match.group(2))
            else:
                logger.error("%s[%d]: %s", self.label, data["pid"], line)

    def close(self):
        pass


def main(argv=None):
    from circus.stats.streamer import main as run
    return run(argv)
