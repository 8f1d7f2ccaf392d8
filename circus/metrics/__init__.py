"""Prometheus metrics and health endpoints: circusd-metrics.

- circus.metrics.exporter: the circusd-metrics process (an HTTP listener:
  /metrics, /healthz, /readyz) and its command line, `circus-metrics`;
- circus.metrics.collector: what one scrape collects (circusd's `metrics`
  reply, /proc, sock_diag) as prometheus_client families;
- circus.metrics.families: every metric's name, type, labels and help;
- circus.metrics.health: what /healthz and /readyz answer.

When `[circus] prometheus = HOST:PORT` is set, circusd runs circusd-metrics
as a watcher of its own, named circusd-metrics (circus.system_watchers, on
circusd's side). circusd itself keeps only plain counters
(circus.counters): it never imports prometheus_client.
"""


def main(argv=None):
    from circus.metrics.exporter import main as run
    return run(argv)
