"""Subscribe to circusd's events.

    from circus.consumer import CircusConsumer
    with CircusConsumer(["watcher.web."], endpoint="tcp://127.0.0.1:5556") as events:
        for topic, message in events:
            print(topic, message["time"])

Topics are prefixes ("" or no topic: everything). Iteration goes on until
the consumer is closed; `recv(timeout)` returns one event or None.
PUB/SUB drops what is published before the subscription reaches circusd,
so a program that must not miss an event subscribes before acting.
"""
import json

import zmq

from circus.util import DEFAULT_PUBSUB


class CircusConsumer:
    def __init__(self, topics=None, context=None, endpoint=DEFAULT_PUBSUB, timeout=1.0,
                 ssh_server=None, ssh_keyfile=None, curve_key=None, server_key=None):
        if isinstance(topics, (str, bytes)):
            topics = [topics]
        self.topics = [t.encode() if isinstance(t, str) else t for t in (topics or [b""])]
        self.context = context or zmq.Context.instance()
        self.timeout = float(timeout)
        self.tunnel = None
        if ssh_server:
            from circus.sshtunnel import open_tunnel
            self.tunnel, endpoint = open_tunnel(ssh_server, endpoint, ssh_keyfile)
        self.endpoint = endpoint
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        if curve_key or server_key:
            from circus.client import configure_curve
            configure_curve(self.socket, curve_key, server_key)
        for topic in self.topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket.connect(endpoint)
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)

    def recv(self, timeout=None):
        """The next (topic, message) within timeout seconds, or None."""
        timeout = self.timeout if timeout is None else timeout
        if not self._poller.poll(timeout * 1000):
            return None
        frames = self.socket.recv_multipart()
        topic = frames[0].decode(errors="replace")
        try:
            message = json.loads(frames[-1]) if len(frames) > 1 else {}
        except ValueError:
            message = {"raw": frames[-1].decode(errors="replace")}
        return topic, message

    def __iter__(self):
        while self.socket is not None:
            event = self.recv()
            if event is not None:
                yield event

    def stop(self):
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
