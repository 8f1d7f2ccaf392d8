"""The stats socket: two frames per message, like circusd's events.

Frame one is the topic (``stat.<watcher>.<pid>``, ``stat.<watcher>``,
``batch.stat.<watcher>``...: see circus.stats.wire), frame two the JSON
body. Sending never waits: a subscriber that falls more than `hwm`
messages behind loses messages rather than slowing circusd-stats down.

The socket is an XPUB: to subscribers it is a PUB like any other, and it
hands circusd-stats the prefixes they subscribe to (each once, however
many subscribers share it; gone when the last one leaves). circusd-stats
asks `wants()` before it builds a message, so what nobody reads is never
measured, encoded nor sent.
"""
import json
import logging

import zmq

from circus.util import DEFAULT_STATS

logger = logging.getLogger("circus")

_SUBSCRIBE = 1
_UNSUBSCRIBE = 0


class StatsPublisher:
    def __init__(self, endpoint=DEFAULT_STATS, context=None, hwm=50000):
        self.endpoint = endpoint
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.XPUB)
        self.socket.linger = 0
        self.socket.sndhwm = hwm
        self.socket.bind(endpoint)
        self.prefixes = set()  # what subscribers subscribe to, as str
        self.sent = 0  # messages handed to ZeroMQ
        self._encode = json.JSONEncoder(separators=(",", ":"), default=str).encode

    def read_subscriptions(self):
        """Take in the (un)subscriptions that arrived since the last call."""
        while self.socket is not None:
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                logger.debug("subscriptions not read: %s", exc)
                return
            if not message or message[0] not in (_SUBSCRIBE, _UNSUBSCRIBE):
                continue
            prefix = message[1:].decode("utf-8", "replace")
            if message[0] == _SUBSCRIBE:
                self.prefixes.add(prefix)
            else:
                self.prefixes.discard(prefix)

    def wants(self, topic):
        """Somebody subscribes to a prefix of topic."""
        return any(topic.startswith(prefix) for prefix in self.prefixes)

    def wants_under(self, base):
        """For the topics base + something: True when somebody wants them all,
        else the prefixes longer than base that select some of them (an
        empty tuple: nobody wants any)."""
        longer = []
        for prefix in self.prefixes:
            if base.startswith(prefix):
                return True
            if prefix.startswith(base):
                longer.append(prefix)
        return tuple(longer)

    def publish(self, topic, body):
        if self.socket is None:
            return
        try:
            self.socket.send_multipart([topic.encode(), self._encode(body).encode()],
                                       zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            logger.debug("stats not published: %s", exc)

    def close(self):
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
