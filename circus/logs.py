"""Logging set-up of circus's own processes: circusd, circusd-stats,
circus-plugin (a leaf: it imports nothing of circus).

--log-output (and `[circus] logoutput`) means the same everywhere:

- `-` or `stdout`: standard output (circusd's default);
- `stderr`: standard error (the default of circusd-stats and circus-plugin:
  when circusd runs them, it reads their stderr into its own log, see
  circus.system_watchers);
- anything else: a file, appended to.
"""
import logging
import sys

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("debug", "info", "warning", "error", "critical")


def log_handler(output):
    """The handler that writes to output (see the module's docstring)."""
    if output in (None, "", "-", "stdout"):
        return logging.StreamHandler(sys.stdout)
    if output == "stderr":
        return logging.StreamHandler(sys.stderr)
    return logging.FileHandler(output)


def configure_logging(level, output, fmt, logger_name="circus"):
    """Send the records of logger_name (None: every logger, for a process
    that runs code of its own, like a plugin) at level and above to output,
    formatted with fmt. OSError when output is a file that cannot be opened."""
    handler = log_handler(output)
    handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
    target = logging.getLogger(logger_name)
    target.handlers[:] = [handler]
    target.setLevel(getattr(logging, (level or "info").upper()))
    if logger_name is None:
        # circus's records reach the root's handler
        circus_logger = logging.getLogger("circus")
        circus_logger.handlers[:] = []
        circus_logger.propagate = True
        circus_logger.setLevel(logging.NOTSET)
        # asyncio's own debug lines ("Using selector...") say nothing of ours
        logging.getLogger("asyncio").setLevel(max(target.level, logging.INFO))
    else:
        target.propagate = False
    return handler


class Throttle:
    """Records that an outsider can provoke at will (a bad request, a
    refused CURVE handshake) go through here, so that no client can fill
    circusd's log: each kind may log `burst` records at once, then one per
    `interval` seconds (a token bucket per kind). What is dropped is counted,
    and the next record let through says how many were ("N similar messages
    suppressed")."""

    def __init__(self, logger, burst=10, interval=1.0, clock=None):
        import time
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock or time.monotonic
        self._buckets = {}  # kind -> [tokens, last refill, suppressed]

    def log(self, kind, level, msg, *args, **kwargs):
        """logger.log(level, msg, *args) unless kind has logged too much
        lately; True when the record was written."""
        now = self.clock()
        bucket = self._buckets.get(kind)
        if bucket is None:
            if len(self._buckets) > 1000:
                self._buckets.clear()  # kinds are few; never let them grow
            bucket = self._buckets[kind] = [float(self.burst), now, 0]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) / self.interval)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            bucket[2] += 1
            return False
        bucket[0] = tokens - 1
        if bucket[2]:
            self.logger.log(level, "%d similar messages suppressed", bucket[2])
            bucket[2] = 0
        self.logger.log(level, msg, *args, **kwargs)
        return True


def excerpt(data, limit=200):
    """At most limit bytes of what a client sent, repr'd for a log line:
    a log never repeats a whole frame, which may be a megabyte."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, (bytes, bytearray)):
        import reprlib  # bounded, even for a deeply nested mapping
        data = reprlib.repr(data).encode("utf-8", "replace")
    if len(data) <= limit:
        return repr(bytes(data))
    return "%r... (%d bytes)" % (bytes(data[:limit]), len(data))
