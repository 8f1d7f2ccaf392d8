"""Reading a child's stdout or stderr pipe into the watcher's stream."""
import logging
import os

logger = logging.getLogger("circus")


def read_stream(watcher, process, pipe, name, stream):
    """Hand what process writes on pipe to stream, as {pid, wid, name, data}
    mappings, until the pipe closes."""
    loop = watcher.loop
    fd = pipe.fileno()
    os.set_blocking(fd, False)

    def readable():
        try:
            # one bounded read per wake-up keeps a flooding child from
            # starving the loop; the pipe buffer bounds what waits
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            pipe.close()
            return
        try:
            stream({"pid": process.pid, "wid": process.wid, "name": name, "data": data})
        except Exception:
            logger.exception("watcher %s: %s stream failed", watcher.name, name)

    loop.add_reader(fd, readable)
