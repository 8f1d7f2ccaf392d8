"""Reloads and recycling under load.

For each stack: a steady wrk run, then the same wrk load while
  - "reload": 3 reloads, evenly spaced (circus: the reload command with
    waiting=true on the raw client; gunicorn: kill -HUP to its master);
  - "recycle": workers replaced by age (circus: max_age, max_age_variance)
    or by request count (gunicorn: --max-requests 500
    --max-requests-jitter 100) for the whole run.
wrk keeps its connections alive (HTTP/1.1) throughout. Every worker pid
seen is counted, so the table says how many workers were replaced. The
steady run and each loaded phase are repeated when other processes took
too much of the machine (suite.noise): a worker starved of CPU stalls every
keep-alive connection it holds, which would be taken for a reload tail.
Every phase's others' CPU is reported.
"""
import os
import signal
import threading
import time

from suite import noise, util, wrk
from suite.rawclient import RawClient
from suite.servers import Server
from suite.util import log
from suite.web import measured_run

APP = "hello"
WORKERS = 2
GUNICORN_RECYCLE = {"max-requests": 500, "max-requests-jitter": 100}


class PidWatcher(threading.Thread):
    """Collects every worker pid of a master while the load runs."""

    def __init__(self, master):
        super().__init__(daemon=True)
        self.master = master
        self.seen = set()
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.seen.update(util.workers(self.master))
            self.halt.wait(0.02)

    def finish(self):
        self.halt.set()
        self.join()
        self.seen.update(util.workers(self.master))
        return self.seen


def _loaded(server, duration, action=None):
    """wrk for duration seconds on server while action(server, duration)
    runs in this thread; returns (wrk result, action result, pids seen)."""
    result = {}
    watcher = PidWatcher(server.pid)
    watcher.start()

    def load():
        try:
            result["wrk"] = wrk.run(server.port, duration)
        except Exception as error:
            result["error"] = error
    thread = threading.Thread(target=load)
    thread.start()
    try:
        outcome = action(server, duration) if action else None
    finally:
        thread.join()
        seen = watcher.finish()
    if "error" in result:
        raise result["error"]
    return result["wrk"], outcome, seen


def _reloads(count):
    def act(server, duration):
        times = []
        for i in range(count):
            # evenly spaced: at 1/4, 2/4, 3/4 of the run for 3 reloads
            target = server.load_started + duration * (i + 1) / (count + 1)
            time.sleep(max(0.0, target - time.monotonic()))
            t0 = time.perf_counter()
            if server.stack.is_circus:
                with RawClient(server.endpoint, timeout=60) as client:
                    reply, _ = client.call("reload", name="web", waiting=True)
                if reply.get("status") != "ok":
                    raise RuntimeError("reload answered %r" % reply)
            else:
                os.kill(server.pid, signal.SIGHUP)
            times.append((time.perf_counter() - t0) * 1000.0)
        return times
    return act


def _with_start(action):
    def act(server, duration):
        server.load_started = time.monotonic()
        return action(server, duration) if action else None
    return act


def run(plan, stacks, workdir, gunicorn_bin, guard=None):
    results = {"app": APP, "workers": WORKERS, "steady_duration": plan["steady"],
               "load_duration": plan["load"], "reloads": plan["reloads"],
               "max_age": plan["max_age"], "max_age_variance": plan["max_age_variance"],
               "gunicorn_recycle": GUNICORN_RECYCLE, "rows": []}
    for stack in stacks:
        row = {"key": stack.key, "label": stack.label, "kind": stack.kind}
        try:
            row.update(run_stack(plan, stack, workdir, gunicorn_bin, guard))
        except Exception as error:
            log("reload: %s failed: %s", stack.key, error)
            row["failure"] = str(error).splitlines()[0]
        results["rows"].append(row)
    return results


def _meter(server):
    return noise.Meter(lambda: [server.pid] + util.descendants(server.pid))


def _start(stack, workdir, gunicorn_bin, extra=None):
    server = Server(stack, APP, WORKERS, workdir, gunicorn_bin=gunicorn_bin, extra=extra)
    return server


def _guarded(guard, what, duration, attempt):
    """attempt() -> (wrk result with foreign_cpu_pct, extra); done again, like
    the steady runs, when other processes took too much of the machine: a
    tail measured while something else starves the workers says nothing
    about a reload, and the ratio to a quiet steady run would compare unlike
    things. The discarded runs' foreign CPU is kept in the JSON."""
    tries = 0
    discarded = []
    while True:
        if guard is not None:
            guard.wait_quiet()
        result, extra = attempt()
        foreign = result["foreign_cpu_pct"]
        if guard is None or not guard.retry(foreign, tries, duration):
            result["discarded_foreign_cpu_pct"] = discarded
            return result, extra
        log("reload: %s: others used %.0f%% of the machine, running again", what, foreign)
        discarded.append(foreign)
        tries += 1


def run_stack(plan, stack, workdir, gunicorn_bin, guard=None):
    out = {}
    with util.Services() as services:
        server = _start(stack, workdir, gunicorn_bin)
        services.add(server.service)
        server.start().wait_ready()
        wrk.run(server.port, plan["warmup"])
        log("reload: %s steady", stack.key)
        out["steady"] = measured_run(server, plan["steady"], guard)
        log("reload: %s with %d reloads in %ds", stack.key, plan["reloads"], plan["load"])

        def reloads():
            with _meter(server) as meter:
                result, times, seen = _loaded(server, plan["load"],
                                              _with_start(_reloads(plan["reloads"])))
            result["foreign_cpu_pct"] = meter.foreign_pct
            return result, (times, seen)
        out["reload"], (times, seen) = _guarded(guard, "%s reload" % stack.key, plan["load"],
                                                reloads)
        out["reload_ms"] = times
        out["reload_workers_seen"] = len(seen)
    if stack.is_circus:
        extra = {"max_age": plan["max_age"], "max_age_variance": plan["max_age_variance"]}
    else:
        extra = GUNICORN_RECYCLE

    def recycling():
        with util.Services() as services:
            server = _start(stack, workdir, gunicorn_bin, extra=extra)
            services.add(server.service)
            server.start().wait_ready()
            # no warm-up run here: for gunicorn it would already recycle workers
            log("reload: %s recycling for %ds", stack.key, plan["load"])
            with _meter(server) as meter:
                result, _, seen = _loaded(server, plan["load"], _with_start(None))
            result["foreign_cpu_pct"] = meter.foreign_pct
            return result, seen
    out["recycle"], seen = _guarded(guard, "%s recycle" % stack.key, plan["load"], recycling)
    out["recycle_workers_seen"] = len(seen)
    for phase in ("reload", "recycle"):
        steady = out["steady"]["p99_ms"]
        out["%s_p99_ratio" % phase] = out[phase]["p99_ms"] / steady if steady else None
        log("reload:   %-18s %-8s %8.0f req/s p99 %7.2f ms (steady %.2f) errors %d non-2xx %d"
            " workers seen %d", stack.key, phase, out[phase]["rps"], out[phase]["p99_ms"],
            steady, out[phase]["errors"], out[phase]["non2xx"], out["%s_workers_seen" % phase])
    return out
