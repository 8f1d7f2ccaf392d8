"""Every error type of circus and the errno codes of the wire protocol.

A leaf: it imports nothing of circus, so a client, a plugin, the worker
and circusd can all share it without pulling in each other's code. The
modules that raise these errors re-export them under their historical
names (circus.client.CallError, circus.config.ConfigError...).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (circusctl's start)
if TYPE_CHECKING:
    from typing import Any


def describe(exc: BaseException) -> str:
    """An exception as one lower-case line for a log or a reply: an OSError
    by its strerror (and file), anything else by its message or its type."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() + (" (%s)" % exc.filename if exc.filename else "")
    return str(exc) or type(exc).__name__


class errors:
    """The errno field of an error reply."""
    INVALID_JSON = 1
    UNKNOWN_COMMAND = 2
    # the request's shape: a missing or ill-typed property, an unknown watcher
    INVALID_MESSAGE = 3
    OS_ERROR = 4
    COMMAND_ERROR = 5
    # a well-formed request whose values the option validators reject
    BAD_DATA = 6


# --- circusd answering a command ---------------------------------------------
class CommandError(Exception):
    """A failure answered as {"status": "error", "reason": ..., "errno": ...}."""

    def __init__(self, errno: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = errno
        self.reason = reason

    def reply(self) -> dict[str, Any]:
        return {"status": "error", "reason": self.reason, "errno": self.errno}


class MessageError(Exception):
    """The request is malformed (errno 3)."""


class LimitError(MessageError, ValueError):
    """A process count above a ceiling (errno 3 to a client, a ValueError to
    a program, a config error naming the watcher's numprocesses in a file).
    `watcher` names the watcher whose count was refused."""

    def __init__(self, message: str, watcher: str | None = None) -> None:
        super().__init__(message)
        self.watcher = watcher


class ArgumentError(Exception):
    """circusctl was given arguments the command cannot use (exit status 2)."""


# --- configuration and the daemon --------------------------------------------
class ConfigError(Exception):
    """A configuration error; the message names file, section and option."""

    def __init__(self, message: str, filename: str | None = None, section: str | None = None,
                 option: str | None = None) -> None:
        self.filename, self.section, self.option = filename, section, option
        self.reason = message
        where = []
        if filename:
            where.append(os.path.basename(filename) if filename == "<string>" else filename)
        if section:
            where.append("[%s]" % section)
        if option:
            where.append(option)
        super().__init__(("%s: %s" % (" ".join(where), message)) if where else message)


class ArbiterError(Exception):
    """An arbiter operation refused: a name taken, circusd stopping..."""


class HookError(Exception):
    """A watcher hook failed."""


class SocketError(Exception):
    """A socket could not be bound; the message names the socket."""


# --- the worker ---------------------------------------------------------------
class WorkerStartError(Exception):
    """circus-worker cannot start (exit status 1); the message says why."""


# --- clients ------------------------------------------------------------------
class CallError(Exception):
    """No answer: timeout, or the endpoint cannot be reached."""


class CallTimeout(CallError):
    """circusd did not answer within the timeout."""


class ZMTPError(OSError):
    """The peer spoke, but not as a ZMTP 3 NULL-mechanism ROUTER would."""


class TunnelError(Exception):
    """An ssh tunnel could not be opened."""


# --- lifecycles -----------------------------------------------------------------
class IllegalTransition(RuntimeError):
    """A watcher, process or arbiter was asked to take an edge its state
    machine does not have (circus.states): a bug in circus, never a user error."""
