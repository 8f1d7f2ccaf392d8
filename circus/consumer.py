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
import zmq

from circus.transport.subscriber import Subscriber, decode_event
from circus.util import DEFAULT_PUBSUB


class CircusConsumer:
    def __init__(self, topics=None, context=None, endpoint=DEFAULT_PUBSUB, timeout=1.0,
                 ssh_server=None, ssh_keyfile=None, curve_key=None, server_key=None):
        if isinstance(topics, (str, bytes)):
            topics = [topics]
        self.topics = [t.encode() if isinstance(t, str) else t for t in (topics or [b""])]
        self.context = context or zmq.Context.instance()
        self.timeout = float(timeout)
        self._subscriber = Subscriber(self.context, endpoint, self.topics, curve_key, server_key,
                                      ssh_server=ssh_server, ssh_keyfile=ssh_keyfile)
        self.endpoint = self._subscriber.endpoint
        self.socket = self._subscriber.socket
        self.tunnel = self._subscriber.tunnel
        self._poller = zmq.Poller()
        self._poller.register(self.socket, zmq.POLLIN)

    def recv(self, timeout=None):
        """The next (topic, message) within timeout seconds, or None."""
        timeout = self.timeout if timeout is None else timeout
        if not self._poller.poll(timeout * 1000):
            return None
        return decode_event(self.socket.recv_multipart())

    def __iter__(self):
        while self.socket is not None:
            event = self.recv()
            if event is not None:
                yield event

    def stop(self):
        self._subscriber.close()
        self.socket = self.tunnel = None

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
