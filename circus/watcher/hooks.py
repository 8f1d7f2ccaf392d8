"""Watcher hooks: the names, how one is called, and when its veto counts.

hooks maps a hook name (HOOK_NAMES) to a callable, or the dotted name of
one, called as hook(watcher=, arbiter=, hook_name=, **details). A hook that
returns False, or raises, says "do not go on":

- before_start: the watcher is not started.
- before_spawn: that process is not spawned; it counts as a failed start
  (max_retry).
- before_stop: the stop is refused. The processes keep running, the
  watcher stays active, `stop` answers an error saying so and the log has
  a warning.
- before_signal (details pid, signum): that signal is not sent. When the
  signal is the stop signal of a stop, reload, decr, kill or max_age
  recycling, the veto covers the whole stop of that process: it is not
  marked as stopping, no SIGKILL follows after graceful_timeout, and it
  keeps running as one of the watcher's processes. A refused `stop` leaves
  the watcher active (an error reply); a reload or recycling keeps the old
  process and stops the replacement it had started for it, so the watcher
  keeps numprocesses; after a refused decr the watcher runs more processes
  than numprocesses. Once a stop signal has been sent, the SIGKILL that
  follows graceful_timeout is not asked for again.
- the after_* and before_reap hooks only observe: their result is ignored.

Vetoes are honoured for what an operator or a plugin asks. They are ignored
(with a warning) where obeying would leave processes nobody manages or
wedge the watcher: when circusd quits, when a watcher is removed or
replaced by a config reload, when a watcher gives up after max_retry and
when a process that never got ready is killed.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from circus.options.facts import HOOK_NAMES
from circus.util import resolve_name

logger = logging.getLogger("circus")



def resolve_hooks(hooks: Mapping[str, Callable[..., object] | str] | None
                  ) -> dict[str, Callable[..., object]]:
    """{name: callable} from {name: callable or dotted name}; ValueError
    for a name that is not a hook, ImportError for a target not found."""
    resolved = {}
    for hook_name, target in (hooks or {}).items():
        if hook_name not in HOOK_NAMES:
            raise ValueError("unknown hook %r (one of %s)" % (hook_name, ", ".join(HOOK_NAMES)))
        resolved[hook_name] = resolve_name(target)
    return resolved


class HookCalls:
    """Watcher's side of hooks. Expects name, hooks, arbiter and _closing."""

    def call_hook(self, hook_name: str, **kwargs: Any) -> bool:
        """Run a hook; False (or an exception) means: do not go on."""
        hook = self.hooks.get(hook_name)
        if hook is None:
            return True
        try:
            result = hook(watcher=self, arbiter=self.arbiter, hook_name=hook_name, **kwargs)
        except Exception:
            logger.exception("watcher %s: hook %s failed", self.name, hook_name)
            return False
        if result is False:
            logger.info("watcher %s: hook %s returned False", self.name, hook_name)
        return result is not False

    def _vetoes_apply(self):
        """Hooks may refuse stops and signals, except while the watcher
        goes away for good (circusd quits, rm, replaced by reloadconfig)."""
        if self._closing:
            return False
        return not (self.arbiter is not None and getattr(self.arbiter, "stopping", False))
