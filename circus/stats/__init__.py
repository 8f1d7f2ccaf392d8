"""Live statistics: circusd-stats, its stream, and circus-top.

- circus.stats.streamer: the circusd-stats process (events in, stats out);
- circus.stats.collector and circus.stats.sockdiag: what one tick measures;
- circus.stats.publisher: the PUB socket at stats_endpoint;
- circus.stats.client: a consumer of the stream, for any program;
- circus.stats.top: circus-top.

When `[circus] stats_endpoint` is set, circusd runs circusd-stats as a
watcher of its own, named circusd-stats (circus.system_watchers, on
circusd's side).
"""


def main(argv=None):
    from circus.stats.streamer import main as run
    return run(argv)
