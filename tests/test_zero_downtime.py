"""Zero downtime under load, measured as a user would: a real circusd, a
[socket:web] on loopback, 2 workers, and wrk with 50 keep-alive connections
while the workers are replaced, by 3 `circusctl reload web` calls or by
max_age recycling. Nothing may fail: no connect/read/write error, no
timeout, no non-2xx answer. And circusd's own event stream must show that
at no time fewer than 2 workers were ready and not yet told to stop
(`ready` events minus `kill`/`reap` events).

A request counts as timed out after 5 s (wrk's --timeout; its default of
2 s also catches a machine that is merely overloaded by other jobs).
ZERO_DOWNTIME_SECONDS sets the length of each wrk run (default 20, as in
the issue); `python tests/test_zero_downtime.py [seconds] [stack...]`
prints the figures of every scenario, with a steady run for comparison.
"""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from support import BIN, ROOT, free_port, tools
from support.events import EventLog

WRK = tools.path("wrk")
DURATION = int(os.environ.get("ZERO_DOWNTIME_SECONDS", "20"))
WORKERS = 2
CONNECTIONS = 50

pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs("wrk"),
    pytest.mark.timeout(DURATION + 120),
]

# How each stack is run, as the recipes run it. chaussette cannot report
# readiness nor stop gracefully on SIGTERM: it gets a delay and SIGINT.
STACKS = {
    "worker-waitress": (
        "%s --fd $(circus.sockets.web) --backend waitress tests.apps.hello:application"
        % os.path.join(BIN, "circus-worker"),
        "ready = notify\n"),
    "worker-meinheld": (
        "%s --fd $(circus.sockets.web) --backend meinheld tests.apps.hello:application"
        % os.path.join(BIN, "circus-worker"),
        "ready = notify\n"),
    "chaussette-meinheld": (
        "%s --fd $(circus.sockets.web) --backend meinheld tests.apps.hello.application"
        % os.path.join(BIN, "chaussette"),
        "ready_delay = 0.5\nstop_signal = INT\n"),
}
# what each stack runs besides circus
STACK_TOOLS = {"worker-waitress": (), "worker-meinheld": ("meinheld",),
               "chaussette-meinheld": ("chaussette", "meinheld")}
SCENARIOS = {
    "reload": "",
    "max_age": "max_age = 2\nmax_age_variance = 1\n",
    "steady": "",  # for the figures only
}

# wrk prints its exact counters through this hook (its text summary rounds
# latencies and omits zero counters).
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "timeout": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d, '
    .. '"max_us": %d}\\n', summary.requests, e.connect, e.read, e.write,
    e.timeout, e.status, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def config(stack, scenario, port):
    cmd, readiness = STACKS[stack]
    return (
        "[watcher:web]\n"
        "cmd = %s\n"
        "use_sockets = True\n"
        "numprocesses = %d\n"
        "working_dir = %s\n"
        "copy_env = True\n"
        "%s%s"
        "[socket:web]\n"
        "host = 127.0.0.1\n"
        "port = %d\n" % (cmd, WORKERS, ROOT, readiness, SCENARIOS[scenario], port))


def run_wrk(port, seconds, script):
    out = subprocess.run(
        [WRK, "-t2", "-c%d" % CONNECTIONS, "-d%ds" % seconds, "--timeout", "5s",
         "-s", script, "http://127.0.0.1:%d/" % port],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("WRK "):
            result = json.loads(line[4:])
            result["text"] = out.stdout
            return result
    raise AssertionError("wrk printed no result (status %d):\n%s" % (out.returncode, out.stdout))


class Events(threading.Thread):
    """Records watcher.web.* events for as long as the load runs."""

    def __init__(self, daemon):
        super().__init__(daemon=True)
        self.log = EventLog(daemon, topics=("watcher.web.",)).sync("web")
        self.items = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            event = self.log.consumer.recv(0.05)
            if event is not None:
                self.items.append(event)

    def finish(self):
        self.halt.set()
        self.join()
        self.log.close()
        return self.items


def fewest_ready(initial, events):
    """The smallest number of workers that were ready and not yet killed."""
    ready = set(initial)
    fewest = len(ready)
    for topic, msg in events:
        kind, pid = topic.rsplit(".", 1)[1], msg.get("process_pid")
        if kind == "ready":
            ready.add(pid)
        elif kind in ("kill", "reap", "ready_timeout"):
            ready.discard(pid)
        fewest = min(fewest, len(ready))
    return fewest


def circusctl(daemon, *args):
    return subprocess.run(
        [os.path.join(BIN, "circusctl"), "--endpoint", daemon.endpoint, "--timeout", "60",
         *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=90)


def run_scenario(circusd, tmp_path, stack, scenario, seconds=DURATION):
    """circusd serving `stack`, wrk for `seconds` while `scenario` replaces
    workers; returns wrk's figures, the events and what circusctl said."""
    port = free_port()
    daemon = circusd(config(stack, scenario, port))
    script = tmp_path / "report.lua"
    script.write_text(WRK_SCRIPT)
    events = Events(daemon)
    initial = daemon.call("list", name="web")["pids"]
    events.start()
    replies = []

    def reload_three_times(started):
        for i in range(3):
            time.sleep(max(0.0, started + seconds * (i + 1) / 4 - time.monotonic()))
            replies.append(circusctl(daemon, "reload", "web", "--waiting"))

    reloader = None
    if scenario == "reload":
        reloader = threading.Thread(target=reload_three_times, args=(time.monotonic(),))
        reloader.start()
    try:
        result = run_wrk(port, seconds, str(script))
    finally:
        if reloader is not None:
            reloader.join()
        items = events.finish()
    result.update(initial=initial, events=items, replies=replies,
                  fewest_ready=fewest_ready(initial, items),
                  spawned=sum(1 for t, _ in items if t.endswith(".spawn")),
                  daemon=daemon)
    return result


def describe(result):
    return ("%d requests, errors connect %d read %d write %d timeout %d, non-2xx %d, "
            "p50 %.1f ms p99 %.1f ms max %.1f ms, %d workers spawned, fewest ready %d"
            % (result["requests"], result["connect"], result["read"], result["write"],
               result["timeout"], result["non2xx"], result["p50_us"] / 1000,
               result["p99_us"] / 1000, result["max_us"] / 1000, result["spawned"],
               result["fewest_ready"]))


@pytest.mark.parametrize("scenario", ["reload", "max_age"])
@pytest.mark.parametrize("stack", [
    pytest.param(stack, marks=pytest.mark.needs(*STACK_TOOLS[stack])) for stack in STACKS])
def test_no_request_fails_while_workers_are_replaced(circusd, tmp_path, stack, scenario):
    result = run_scenario(circusd, tmp_path, stack, scenario)
    print("%s %s: %s" % (stack, scenario, describe(result)))
    assert len(result["initial"]) == WORKERS, result["initial"]
    for reply in result["replies"]:
        assert reply.returncode == 0, reply.stdout
    if scenario == "reload":
        assert len(result["replies"]) == 3
        assert result["spawned"] == 3 * WORKERS
    else:
        assert result["spawned"] >= seconds_to_recycles(DURATION)
    assert result["requests"] > 0
    errors = {k: result[k] for k in ("connect", "read", "write", "timeout", "non2xx")}
    assert errors == dict.fromkeys(errors, 0), describe(result) + "\n" + result["text"]
    assert result["fewest_ready"] >= WORKERS, result["events"]
    if stack.startswith("worker-"):
        # status 3 would mean the worker cut requests at its graceful timeout
        codes = [m["exit_code"] for t, m in result["events"] if t.endswith(".reap")]
        assert codes and set(codes) == {0}, result["events"]


def seconds_to_recycles(seconds):
    # each worker lives 2 to 3 s (max_age 2, variance 1): at least one
    # replacement per worker every 3 s, minus the first period
    return WORKERS * (seconds // 3 - 1)


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    from support import Circusd

    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else DURATION
    for stack in sys.argv[2:] or list(STACKS):
        for scenario in ("steady", "reload", "max_age"):
            with tempfile.TemporaryDirectory(prefix="zero-downtime-") as tmp:
                started = []

                def factory(text):
                    started.append(Circusd(Path(tmp), text))
                    return started[-1].start()
                try:
                    result = run_scenario(factory, Path(tmp), stack, scenario, seconds)
                    print("%-20s %-8s %s" % (stack, scenario, describe(result)), flush=True)
                finally:
                    for daemon in started:
                        daemon.stop()
