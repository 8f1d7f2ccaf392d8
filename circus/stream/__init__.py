"""Stream callables: each receives {'pid', 'wid', 'name', 'data'} mappings
read from a child's stdout or stderr on circusd's event loop."""
import os
import queue
import sys
import time

from circus.options.facts import STREAM_COMPAT_KEYS
from circus.util import resolve_name, to_bool


class QueueStream(queue.Queue):
    """Keeps every chunk in memory; for tests and embedding programs.

    With maxsize, a full queue drops its oldest chunk: circusd's loop must
    never wait for a reader."""

    def __init__(self, maxsize=0, **kw):
        super().__init__(maxsize=int(maxsize))

    def __call__(self, data):
        while True:
            try:
                self.put_nowait(data)
                return
            except queue.Full:
                try:
                    self.get_nowait()
                except queue.Empty:
                    pass

    def close(self):
        pass


class StdoutStream:
    """Writes every chunk to circusd's own stdout; with prefix, every line
    starts with "[NAME PID] " (a line that arrives in several chunks gets
    it once)."""

    def __init__(self, prefix=False, **kw):
        self.prefix = to_bool(prefix)
        self.out = sys.stdout.buffer
        self._mid_line = set()  # (pid, name) whose last chunk ended mid-line

    def __call__(self, data):
        chunk = data["data"]
        if self.prefix and chunk:
            source = (data["pid"], data["name"])
            prefix = b"[%s %d] " % (data["name"].encode(), data["pid"])
            lines = chunk.splitlines(True)
            chunk = b"".join((line if i == 0 and source in self._mid_line else prefix + line)
                             for i, line in enumerate(lines))
            if lines[-1].endswith((b"\n", b"\r")):
                self._mid_line.discard(source)
            else:
                self._mid_line.add(source)
        self.out.write(chunk)
        self.out.flush()

    def close(self):
        pass


class FileStream:
    """Appends chunks to a file, rotating it when it grows past max_bytes.

    Rotation is that of logging's RotatingFileHandler: FILE is renamed
    FILE.1, FILE.1 FILE.2... up to backup_count (0: FILE is emptied instead).
    With time_format, every line starts with "TIME [PID] | ".

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
        self._line_start = True  # the next byte starts a line (time_format)

    def _open(self):
        self._file = open(self.filename, "ab", buffering=0)
        self._size = self._file.tell()

    def __call__(self, data):
        if self._file is None:
            self._open()
        chunk = data["data"]
        if self.time_format and chunk:
            chunk = self._stamp(chunk, data.get("pid"))
        while self.max_bytes and self._size + len(chunk) > self.max_bytes:
            # fill the file up to max_bytes, cutting after a line when one
            # fits: a file never grows past max_bytes, and a line is split
            # only when it is longer than max_bytes itself
            room = self.max_bytes - self._size
            cut = chunk.rfind(b"\n", 0, room) + 1 if room > 0 else 0
            if not cut:
                if self._size:
                    self._rotate()
                    continue
                cut = room
            self._write(chunk[:cut])
            chunk = chunk[cut:]
            self._rotate()
        if chunk:
            self._write(chunk)

    def _stamp(self, chunk, pid):
        # the original Circus' prefix: "TIME [PID] | line"
        stamp = ("%s [%s] | " % (time.strftime(self.time_format), pid)).encode()
        lines = chunk.splitlines(True)
        out = [lines[0] if not self._line_start else stamp + lines[0]]
        out += [stamp + line for line in lines[1:]]
        self._line_start = chunk.endswith((b"\n", b"\r"))
        return b"".join(out)

    def _write(self, chunk):
        view = memoryview(chunk)
        while view:  # an unbuffered write may be partial
            written = self._file.write(view)
            view = view[written:]
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

    # FancyStdoutStream prefixes every chunk's lines: a line cut across two
    # pipe reads gets a second prefix, as in the original Circus


# options of the original thread/gevent readers; accepted and ignored because
# pipes are read when the event loop says they are readable
_IGNORED = STREAM_COMPAT_KEYS


def _count(value):
    number = int(value)
    if number < 0:
        raise ValueError("%r is below the minimum of 0" % (value,))
    return number


def check_stream(conf):
    """Check a stream mapping without building it: the class imports and
    takes these options. Raises ValueError(option, message)."""
    import inspect
    conf = dict(conf)
    cls = conf.pop("class", "FileStream")
    for key in _IGNORED:
        conf.pop(key, None)
    if not isinstance(cls, str):
        return
    try:
        factory = resolve_name(cls, default_module="circus.stream")
    except Exception as exc:
        raise ValueError("class", "cannot import %r: %s" % (cls, exc)) from None
    if factory in _BUILTIN_OPTIONS:
        for key, convert in _BUILTIN_OPTIONS[factory].items():
            if key in conf:
                try:
                    convert(conf[key])
                except (TypeError, ValueError) as exc:
                    raise ValueError(key, str(exc)) from None
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    kinds = {p.kind for p in params.values()}
    for key in conf:
        if inspect.Parameter.VAR_KEYWORD not in kinds and key not in params:
            raise ValueError(key, "%s takes no option %r" % (cls, key))
    for name, param in params.items():
        if param.default is param.empty and name not in conf and param.kind in (
                param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise ValueError(name, "%s needs this option" % cls)


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


# what the built-in classes convert in their constructor, checked when the
# config is read rather than when a watcher is built
_BUILTIN_OPTIONS = {
    FileStream: {"max_bytes": _count, "backup_count": _count},
    QueueStream: {"maxsize": _count},
    StdoutStream: {"prefix": to_bool},
}
