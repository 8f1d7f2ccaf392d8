"""Test plugins: Recorder writes one JSON line per event (flushed at once),
exercises call(), cast() and self.loop; Stuck never returns from handle_recv."""
import json
import os
import signal
import time

from circus.plugins import CircusPlugin


class Recorder(CircusPlugin):
    name = "recorder"

    def __init__(self, filename, fail_on="", call_on="", tick="", **config):
        super().__init__(**config)
        self.filename = filename
        self.fail_on = fail_on
        self.call_on = call_on
        self.tick = float(tick or 0)
        self.file = None

    def write(self, kind, **fields):
        self.file.write(json.dumps(dict(fields, kind=kind, pid=os.getpid())) + "\n")
        self.file.flush()

    def handle_init(self):
        self.file = open(self.filename, "a")
        self.write("init", loop_running=self.loop.is_running(), config=self.config)
        if self.tick:
            self.loop.call_later(self.tick, self.ticked)

    def ticked(self):
        self.write("tick")
        self.loop.call_later(self.tick, self.ticked)

    def handle_stop(self):
        self.write("stop")
        self.file.close()

    def handle_recv(self, data):
        topic, msg = data
        if self.fail_on and self.fail_on in topic:
            raise RuntimeError("refusing %s" % topic)
        self.write("event", topic=topic, msg=msg)
        if self.call_on and topic == self.call_on:
            # a synchronous round trip from inside handle_recv
            reply = self.call("numwatchers")
            self.write("reply", reply=reply)
            self.cast("set", name=topic.split(".")[1], options={"recorder.seen": topic})


class Stuck(CircusPlugin):
    """Blocks its loop on the first event: circusd must not care."""

    def handle_init(self):
        # nothing runs on a blocked loop, not even its SIGTERM handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def handle_recv(self, data):
        time.sleep(3600)
