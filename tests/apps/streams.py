"""A stream class named by dotted path in the stream tests
(stdout_stream.class = tests.apps.streams.MyStream)."""
import json


class MyStream:
    """Appends one JSON line per chunk to `path`; `tag` comes from the config."""

    def __init__(self, path, tag="none"):
        self.path = path
        self.tag = tag
        self.closed = False

    def __call__(self, data):
        record = {"tag": self.tag, "pid": data["pid"], "wid": data.get("wid"),
                  "name": data["name"], "data": data["data"].decode()}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def close(self):
        self.closed = True


class Broken:
    """A stream whose constructor fails, as a misconfigured one would."""

    def __init__(self, **options):
        raise ValueError("this stream cannot be built")

    def __call__(self, data):
        pass
