"""Statsd: every circusd event as a statsd counter, and periodic gauges.

::

    [plugin:statsd]
    use = circus.plugins._statsd.StatsdEmitter
    host = localhost
    port = 8125
    sample_rate = 1.0
    application_name = example

Options:

- ``host``, ``port``: where the statsd daemon listens, over UDP (default
  localhost:8125; an IPv4 address is preferred when the name has both).
- ``application_name``: part of the metric names (default "app").
- ``prefix``: the metric names' prefix (default ``circus.<application_name>``).
- ``sample_rate``: the share of events sent as counters, 0 to 1 (default 1):
  below 1, each counter is sent with that probability and tagged ``|@rate``
  so that statsd scales it back.
- ``loop_rate``: seconds between two rounds of gauges (default 60; 0 sends
  none).

Metrics (characters statsd reserves, ``:|@`` and spaces, become ``_``):

- ``<prefix>.watcher.<name>.<event>``: counter, one per event (spawn, reap,
  kill, start, stop, reload, updated, ready...);
  ``<prefix>.arbiter.<event>`` for the arbiter's;
- every ``loop_rate`` seconds, per watcher, gauges from the ``stats``
  command: ``<prefix>.watcher.<name>.cpu`` (the processes' CPU %, summed),
  ``.mem`` (memory %, summed), ``.rss`` (resident bytes, summed) and
  ``.processes`` (how many).

Sending never blocks: a datagram the kernel will not take is dropped.
"""
import logging
import random
import re
import socket

from circus.plugins import CircusPlugin
from circus.plugins._options import integer, number, option

logger = logging.getLogger("circus.plugins.statsd")

_RESERVED = re.compile(r"[:|@\s]")


def metric_name(*parts):
    return ".".join(_RESERVED.sub("_", str(p)) for p in parts if p != "")


class StatsdClient:
    """A statsd client over a non-blocking UDP socket."""

    def __init__(self, host="localhost", port=8125, prefix="", sample_rate=1.0):
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
        # a statsd daemon usually listens on IPv4 only: try that first
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        family, kind, proto, _, self.address = infos[0]
        self.socket = socket.socket(family, kind, proto)
        self.socket.setblocking(False)
        self.prefix = prefix
        self.sample_rate = float(sample_rate)

    def _send(self, line):
        try:
            self.socket.sendto(line.encode(), self.address)
        except OSError as exc:  # full buffer, nobody listening (ECONNREFUSED)...
            logger.debug("statsd datagram dropped: %s", exc)

    def increment(self, name, count=1):
        rate = self.sample_rate
        if rate < 1 and random.random() >= rate:
            return
        suffix = "|@%s" % rate if rate < 1 else ""
        self._send("%s:%d|c%s" % (metric_name(self.prefix, name), count, suffix))

    def gauge(self, name, value):
        self._send("%s:%s|g" % (metric_name(self.prefix, name), _number(value)))

    def close(self):
        self.socket.close()


def _number(value):
    if isinstance(value, float):
        return ("%.4f" % value).rstrip("0").rstrip(".") or "0"
    return str(value)


class StatsdEmitter(CircusPlugin):
    name = "statsd"

    def __init__(self, endpoint, pubsub_endpoint, check_delay, ssh_server=None, **config):
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server=ssh_server, **config)
        self.application_name = str(config.get("application_name") or "app")
        prefix = config.get("prefix")
        self.prefix = str(prefix) if prefix is not None else "circus." + self.application_name
        sample_rate = option(config, "sample_rate", number, 1.0)
        if not 0 <= sample_rate <= 1:
            raise ValueError("option sample_rate: %s is not between 0 and 1" % sample_rate)
        self.loop_rate = option(config, "loop_rate", number, 60.0)
        self.statsd = StatsdClient(host=config.get("host") or "localhost",
                                   port=option(config, "port", integer, 8125),
                                   prefix=self.prefix, sample_rate=sample_rate)

    def handle_init(self):
        if self.loop_rate > 0:
            self.every(self.loop_rate, self.send_gauges)

    def handle_stop(self):
        self.statsd.close()

    def handle_recv(self, data):
        topic, _ = data
        name, event, _ = self.split_data((topic, {}))
        if name is not None:
            self.statsd.increment(metric_name("watcher", name, event))
        else:
            self.statsd.increment(topic)

    async def send_gauges(self):
        reply = await self.acall("stats")
        for name, infos in (reply.get("infos") or {}).items():
            cpu = mem = rss = count = 0
            for info in (infos or {}).values():
                if not isinstance(info, dict):
                    continue  # "No such process (stopped?)"
                count += 1
                cpu += info.get("cpu") or 0
                mem += info.get("mem") or 0
                rss += info.get("rss") or 0
            base = metric_name("watcher", name)
            self.statsd.gauge(base + ".cpu", float(cpu))
            self.statsd.gauge(base + ".mem", float(mem))
            self.statsd.gauge(base + ".rss", rss)
            self.statsd.gauge(base + ".processes", count)
