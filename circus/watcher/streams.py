"""Reading a child's stdout and stderr pipes on circusd's loop: one reader
per pipe hands every chunk to the watcher's configured stream, if any, and
to the process's rings (circus.watcher.output)."""
import logging
import os

from circus.watcher.output import keep

logger = logging.getLogger("circus")

# one bounded read per wake-up keeps a flooding child from starving the
# loop; the pipe buffer bounds what waits
READ_SIZE = 65536
# reads at most by drain(): a pipe holds 64 KiB unless its size was raised
DRAIN_READS = 16
# a pipe only the rings read is not read at every line its writer writes:
# a worker logging a line per request would cost circusd a wake-up and a
# read per line (measured: 13% of a core at 6.7k requests/s). After a read,
# its reader pauses until about GATHER_BYTES more should have come at the
# pace the writer keeps (GATHER_DELAY at most, and no pause under
# MIN_GATHER): lines gather and one read takes them, and the pipe (64 KiB)
# does not fill, so a writer keeping its pace is not made to wait (a fixed
# 50 ms pause held every writer to 64 KiB per pause: 1.3 MB/s).
GATHER_DELAY = 0.05
GATHER_BYTES = 16384
MIN_GATHER = 0.001


class PipeReader:
    """Reads one pipe of a process while the loop says it is readable."""

    __slots__ = ("watcher", "process", "pipe", "name", "stream", "last_read")

    def __init__(self, watcher, process, pipe, name, stream=None):
        self.watcher = watcher
        self.process = process
        self.pipe = pipe
        self.name = name
        self.stream = stream
        self.last_read = 0.0  # loop time of the last read of _readable
        os.set_blocking(pipe.fileno(), False)
        watcher.loop.add_reader(pipe.fileno(), self._readable)

    def _readable(self):
        loop = self.watcher.loop
        now = loop.time()
        size = self.read()
        elapsed, self.last_read = now - self.last_read, now
        if self.stream is not None or not size or size >= READ_SIZE:
            return
        # the time GATHER_BYTES take to come at the pace of this read
        pause = min(GATHER_DELAY, GATHER_BYTES * elapsed / size)
        if pause >= MIN_GATHER:
            loop.remove_reader(self.pipe.fileno())
            loop.call_later(pause, self._resume)

    def _resume(self):
        if not self.pipe.closed:
            self.watcher.loop.add_reader(self.pipe.fileno(), self._readable)

    def read(self):
        """One read; the bytes read, 0 once the pipe is empty for now or
        closed."""
        try:
            data = os.read(self.pipe.fileno(), READ_SIZE)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self.close()
            return 0
        if self.process.returncode is None:
            keep(self.process, self.name, data)
        if self.stream is not None:
            try:
                self.stream({"pid": self.process.pid, "wid": self.process.wid,
                             "name": self.name, "data": data})
            except Exception:
                logger.exception("watcher %s: %s stream failed", self.watcher.name, self.name)
        return len(data)

    def drain(self):
        """Read what the pipe holds now. Called when the process has exited:
        all it wrote is in the pipe, and is read before its exit is told
        (a child it left behind may write on: the loop reads that later)."""
        for _ in range(DRAIN_READS):
            if self.pipe.closed or not self.read():
                return

    def close(self):
        if not self.pipe.closed:
            self.watcher.loop.remove_reader(self.pipe.fileno())
            self.pipe.close()

