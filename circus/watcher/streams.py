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
# a pipe only the rings read is read at most this often while its writer
# writes little: a worker logging a line per request would otherwise cost
# circusd a wake-up and a read per line (measured: 13% of a core at 6.7k
# requests/s). A read that fills READ_SIZE is followed at once, so a fast
# writer never waits on a full pipe for long.
GATHER_DELAY = 0.05


class PipeReader:
    """Reads one pipe of a process while the loop says it is readable."""

    __slots__ = ("watcher", "process", "pipe", "name", "stream")

    def __init__(self, watcher, process, pipe, name, stream=None):
        self.watcher = watcher
        self.process = process
        self.pipe = pipe
        self.name = name
        self.stream = stream
        os.set_blocking(pipe.fileno(), False)
        watcher.loop.add_reader(pipe.fileno(), self._readable)

    def _readable(self):
        if self.read(gather=self.stream is None) is None:
            # let more lines gather in the pipe: one read will take them all
            loop = self.watcher.loop
            loop.remove_reader(self.pipe.fileno())
            loop.call_later(GATHER_DELAY, self._resume)

    def _resume(self):
        if not self.pipe.closed:
            self.watcher.loop.add_reader(self.pipe.fileno(), self._readable)

    def read(self, gather=False):
        """One read; False once the pipe is empty for now, or closed. With
        gather, None for a read that did not fill READ_SIZE."""
        try:
            data = os.read(self.pipe.fileno(), READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.close()
            return False
        if self.process.returncode is None:
            keep(self.process, self.name, data)
        if self.stream is not None:
            try:
                self.stream({"pid": self.process.pid, "wid": self.process.wid,
                             "name": self.name, "data": data})
            except Exception:
                logger.exception("watcher %s: %s stream failed", self.watcher.name, self.name)
        if gather and len(data) < READ_SIZE:
            return None
        return True

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

