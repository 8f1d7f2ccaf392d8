"""What /healthz and /readyz answer, from circusd's replies.

- /healthz (liveness): circusd's loop answers a command within a short
  timeout. A circusd that is stuck, or gone, fails it; a watcher that is
  not ready does not (restarting circusd would not make it ready).
- /readyz (readiness): circusd is active (not starting, not stopping) and
  every autostart watcher has its wanted number of ready processes; the
  body names each that has not. While circusd starts, and from the moment
  it is asked to stop, traffic should go elsewhere.
"""
import time

from circus.errors import CallError


def liveness(call):
    """(ok, text); call(command, **properties) -> reply, CallError when
    circusd does not answer."""
    started = time.perf_counter()
    try:
        reply = call("numwatchers")
    except CallError as exc:
        return False, "circusd did not answer: %s\n" % exc
    took = (time.perf_counter() - started) * 1000
    if reply.get("status") != "ok":
        return False, "circusd answered with an error: %s\n" % reply.get("reason", reply)
    return True, "ok: circusd answered in %.1f ms\n" % took


def not_ready(reply):
    """The reasons a `metrics` reply is not ready ([] when it is)."""
    reasons = []
    state = reply.get("state")
    if state != "active":
        reasons.append("circusd is %s" % state)
    for name, watcher in sorted((reply.get("watchers") or {}).items()):
        if not watcher.get("autostart"):
            continue
        if watcher["ready"] < watcher["wanted"]:
            reasons.append("%s: %d of %d processes ready (%s)"
                           % (name, watcher["ready"], watcher["wanted"], watcher["state"]))
    return reasons


def readiness(call):
    """(ok, text)."""
    try:
        reply = call("metrics", pids=False)
    except CallError as exc:
        return False, "not ready: circusd did not answer: %s\n" % exc
    if reply.get("status") != "ok":
        return False, "not ready: circusd answered with an error: %s\n" % reply.get(
            "reason", reply)
    reasons = not_ready(reply)
    if reasons:
        return False, "not ready:\n" + "".join("- %s\n" % r for r in reasons)
    return True, "ready: %d watchers\n" % len(reply.get("watchers") or {})
