"""Helpers for tests that run an Arbiter in-process on their own loop."""
import asyncio
import contextlib
import time

from circus.arbiter import Arbiter
from circus.util import wait_event
from support import timed_out


class Events:
    """Records every event; await one with a deadline."""

    def __init__(self):
        self.items = []
        self._changed = asyncio.Event()

    def __call__(self, topic, msg):
        self.items.append((topic, msg))
        self._changed.set()

    def topics(self):
        return [t for t, _ in self.items]

    async def wait(self, predicate, timeout=10.0, start=0):
        """Wait for an event (topic, msg) satisfying predicate; returns it."""
        index = start

        def first_match():
            nonlocal index
            while index < len(self.items):
                if predicate(*self.items[index]):
                    return self.items[index]
                index += 1
            return None

        async def next_event(remaining):
            self._changed.clear()
            await wait_event(self._changed, remaining)
        return await until(first_match, timeout, pause=next_event,
                           message=lambda: "a matching event; got %s" % self.topics()[start:])

    async def topic(self, topic, timeout=10.0, start=0):
        return await self.wait(lambda t, m: t == topic, timeout, start)


async def until(predicate, timeout=10.0, interval=0.01, message="condition", pause=None):
    """support.wait_for on the running loop: predicate is called until it
    returns something truthy; between two calls, asyncio.sleep(interval)
    or await pause(seconds left)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out(timeout, message)
        if pause is None:
            await asyncio.sleep(interval)
        else:
            await pause(remaining)


@contextlib.asynccontextmanager
async def running(watchers, sockets=(), **kwargs):
    """An Arbiter without ZeroMQ endpoints, running on the current loop."""
    kwargs.setdefault("endpoint", None)
    kwargs.setdefault("pubsub_endpoint", None)
    arbiter = Arbiter(watchers, sockets=sockets, **kwargs)
    events = Events()
    arbiter.subscribe(events)
    arbiter.events = events
    task = asyncio.ensure_future(arbiter.run())
    try:
        await until(lambda: arbiter.status == "active" or task.done(), message="arbiter start")
        if task.done():
            task.result()
        yield arbiter
    finally:
        arbiter.request_quit()
        await asyncio.wait_for(task, 60)
