"""Waiting for circusd's events in tests, instead of sleeping."""
from circus.consumer import CircusConsumer
from support import wait_for


class EventLog:
    """Subscribes to a circusd's PUB socket and records what arrives."""

    def __init__(self, daemon, topics=("",)):
        self.daemon = daemon
        self.consumer = CircusConsumer(list(topics), endpoint=daemon.pubsub, timeout=0.05)
        self.items = []
        self._returned = set()  # indexes in items that wait() has returned

    def close(self):
        self.consumer.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pump(self, timeout):
        event = self.consumer.recv(timeout)
        while event is not None:
            self.items.append(event)
            event = self.consumer.recv(0)

    def sync(self, watcher, timeout=10.0):
        """Return once the subscription is live: PUB drops what is sent before
        it reaches circusd, so poke a harmless `set` until its event comes."""
        topic = "watcher.%s.updated" % watcher

        def poked():
            priority = self.daemon.call("get", name=watcher, keys=["priority"])
            self.daemon.call("set", name=watcher, options=priority["options"])
            self._pump(0.1)
            return any(t == topic for t, _ in self.items)
        wait_for(poked, timeout, interval=0, message="an event from circusd")
        self.items.clear()
        self._returned.clear()
        return self

    def wait(self, predicate, timeout=10.0, message="event"):
        """The first event (topic, msg) not yet returned that satisfies predicate:
        two waits for the same kind of event need two such events."""
        index = 0

        def first_new():
            nonlocal index
            while index < len(self.items):
                topic, msg = self.items[index]
                if index not in self._returned and predicate(topic, msg):
                    self._returned.add(index)
                    return topic, msg
                index += 1
            return None
        return wait_for(first_new, timeout,
                        pause=lambda remaining: self._pump(min(remaining, 0.2)),
                        message=lambda: "%s; got %s" % (message, self.topics()))

    def topic(self, topic, timeout=10.0, **fields):
        return self.wait(lambda t, m: t == topic and all(m.get(k) == v
                                                          for k, v in fields.items()),
                         timeout, message="%s %s" % (topic, fields or ""))

    def topics(self):
        return [t for t, _ in self.items]
