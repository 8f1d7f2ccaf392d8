"""Stream callables: each receives {'pid', 'wid', 'name', 'data'} mappings
read from a child's stdout or stderr on circusd's event loop."""
import os
import queue
import sys
import time

from circus.util import resolve_name


class QueueStream(queue.Queue):
    """Keeps every chunk in memory; for tests and embedding programs."""

    def __init__(self, maxsize=0, **kw):
        super().__init__(maxsize=int(maxsize))

    def __call__(self, data):
        self.put(data)

    def close(self):
        pass


class StdoutStream:
    """Writes every chunk to circusd's own stdout."""

    def __init__(self, prefix=False, **kw):
        self.prefix = prefix not in (False, "false", "0", "")
        self.out = sys.stdout.buffer

    def __call__(self, data):
        if self.prefix:
            self.out.write(b"[%s %d] " % (data["name"].encode(), data["pid"]))
        self.out.write(data["data"])
        self.out.flush()

    def close(self):
        pass


class FileStream:
    """Appends chunks to a file, rotating it when it grows past max_bytes.

    The file is opened once and written unbuffered: each chunk is already one
    pipe read, so buffering would only delay it.
    """

    def __init__(self, filename, max_bytes=0, backup_count=0, time_format=None, **kw):
        self.filename = os.path.abspath(filename)
        self.max_bytes = int(max_bytes)
        self.backup_count = int(backup_count)
        self.time_format = time_format
        self._file = None
        self._size = 0

    def _open(self):
        self._file = open(self.filename, "ab", buffering=0)
        self._size = self._file.tell()

    def __call__(self, data):
        if self._file is None:
            self._open()
        chunk = data["data"]
        if self.time_format:
            stamp = time.strftime(self.time_format).encode() + b" "
            chunk = b"".join(stamp + line for line in chunk.splitlines(True))
        if self.max_bytes and self._size + len(chunk) > self.max_bytes and self._size:
            self._rotate()
        self._file.write(chunk)
        self._size += len(chunk)

    def _rotate(self):
        self._file.close()
        if self.backup_count > 0:
            for index in range(self.backup_count - 1, 0, -1):
                src = "%s.%d" % (self.filename, index)
                if os.path.exists(src):
                    os.replace(src, "%s.%d" % (self.filename, index + 1))
            os.replace(self.filename, self.filename + ".1")
        else:
            # no backups kept: start the file over
            os.truncate(self.filename, 0)
        self._open()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class FancyStdoutStream(StdoutStream):
    """StdoutStream with a time and pid prefix on every line."""

    def __init__(self, time_format="%Y-%m-%d %H:%M:%S", **kw):
        super().__init__()
        self.time_format = time_format

    def __call__(self, data):
        prefix = ("%s [%d] | " % (time.strftime(self.time_format), data["pid"])).encode()
        self.out.write(b"".join(prefix + line for line in data["data"].splitlines(True)))
        self.out.flush()


# options of the original thread/gevent readers; accepted and ignored because
# pipes are read when the event loop says they are readable
_IGNORED = ("refresh_time", "stream_backend")


def get_stream(conf):
    """Build a stream callable from a mapping with 'class' and its options."""
    if not conf:
        return None
    conf = dict(conf)
    cls = conf.pop("class", "FileStream")
    for key in _IGNORED:
        conf.pop(key, None)
    if not isinstance(cls, str):
        return cls(**conf) if isinstance(cls, type) else cls
    factory = resolve_name(cls, default_module="circus.stream")
    return factory(**conf)
