"""A minimal client of circusd's command endpoint, written here on purpose.

It speaks the documented wire format and nothing else: a DEALER socket sends
one frame of JSON ``{"id": <hex>, "command": <name>, "properties": {...}}``
and reads one frame back. Our circusd and the original Circus answer it the
same way, so timings taken with it compare the daemons, not their clients.
The socket stays connected between calls (a persistent DEALER), so a round
trip measures the daemon plus one loopback hop, an upper bound of the time
the command takes inside circusd.
"""
import json
import os
import time

import zmq


class RawError(Exception):
    pass


class RawClient:
    def __init__(self, endpoint, timeout=30.0):
        self.endpoint = endpoint
        self.timeout = timeout
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)

    def call(self, command, timeout=None, **properties):
        """(reply, seconds): the reply mapping and the round trip time."""
        ident = os.urandom(8).hex()
        frame = json.dumps({"id": ident, "command": command,
                            "properties": properties}).encode()
        deadline = time.perf_counter() + (timeout or self.timeout)
        start = time.perf_counter()
        self.socket.send(frame)
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.poller.poll(left * 1000):
                raise RawError("no answer to %r within %.0fs" % (command, timeout or self.timeout))
            reply = self.socket.recv()
            elapsed = time.perf_counter() - start
            data = json.loads(reply)
            if data.get("id") == ident:
                return data, elapsed
            # a late answer to an earlier call that timed out: skip it

    def try_call(self, command, timeout=1.0, **properties):
        try:
            return self.call(command, timeout=timeout, **properties)[0]
        except RawError:
            return None

    def close(self):
        self.socket.close(linger=0)
        self.context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
