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
