"""The stats PUB socket: two frames per message, like circusd's events.

Frame one is the topic (``stat.<watcher>.<pid>``, ``stat.<watcher>``,
``stat.circus``, ``stat.sockets``...), frame two the JSON body. Sending
never waits: a subscriber that falls more than `hwm` messages behind loses
messages rather than slowing circusd-stats down.
"""
import json
import logging

import zmq

from circus.util import DEFAULT_STATS

logger = logging.getLogger("circus")


class StatsPublisher:
    def __init__(self, endpoint=DEFAULT_STATS, context=None, hwm=50000):
        self.endpoint = endpoint
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.linger = 0
        self.socket.sndhwm = hwm
        self.socket.bind(endpoint)
        self._encode = json.JSONEncoder(separators=(",", ":"), default=str).encode

    def publish(self, topic, body):
        if self.socket is None:
            return
        try:
            self.socket.send_multipart([topic.encode(), self._encode(body).encode()],
                                       zmq.NOBLOCK)
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            logger.debug("stats not published: %s", exc)

    def close(self):
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
