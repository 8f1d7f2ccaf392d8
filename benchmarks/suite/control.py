"""Control plane at scale: our circusd against the original Circus 0.19.

Both daemons run the same ini file (one watcher of `sleep` processes) from
their own virtualenv, and are driven by the same raw ZeroMQ client
(suite.rawclient), so each figure compares the daemons only.
"""
import json
import os
import random
import signal
import subprocess
import tempfile
import time

from suite import limits, util
from suite.rawclient import RawClient, RawError
from suite.util import PYTHON, log

SLEEP_CMD = "sleep 3600"
LISTPOLL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "listpoll.py")


def daemon_config(endpoint, pubsub, numprocesses, circus_options=None, watcher_options=None):
    extra_circus = "".join("%s = %s\n" % item for item in (circus_options or {}).items())
    extra_watcher = "".join("%s = %s\n" % item for item in (watcher_options or {}).items())
    return ("[circus]\n"
            "endpoint = %s\n"
            "pubsub_endpoint = %s\n"
            "%s"
            "\n"
            "[watcher:sleepers]\n"
            "cmd = %s\n"
            "numprocesses = %d\n"
            "%s" % (endpoint, pubsub, extra_circus, SLEEP_CMD, numprocesses, extra_watcher))


class Daemon:
    """One circusd (ours or 0.19) on a config with N sleep processes."""

    def __init__(self, label, bindir, workdir, numprocesses, circus_options=None,
                 watcher_options=None):
        self.label = label
        self.bindir = bindir
        self.numprocesses = numprocesses
        self.endpoint = "tcp://127.0.0.1:%d" % util.free_port()
        self.pubsub = "tcp://127.0.0.1:%d" % util.free_port()
        self.dir = tempfile.mkdtemp(prefix="%s-%d-" % (label, numprocesses),
                                    dir=os.path.abspath(workdir))
        self.config = os.path.join(self.dir, "circus.ini")
        with open(self.config, "w") as handle:
            handle.write(daemon_config(self.endpoint, self.pubsub, numprocesses,
                                       circus_options, watcher_options))
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        self.service = util.Service(
            "circusd(%s)" % label, [os.path.join(bindir, "circusd"), self.config],
            cwd=self.dir, env=env, log_path=os.path.join(self.dir, "circusd.log"))
        self.client = None

    @property
    def pid(self):
        return self.service.pid

    def sleepers(self):
        return [p for p in util.children(self.pid) if util.comm(p) == "sleep"]

    def start_and_time(self, timeout=120, interval=0.002):
        """Seconds from the exec of circusd until numprocesses sleep
        processes run (exec'd, not merely forked). Counting circusd's
        children costs CPU (3 to 6 ms with 10,000 of them), taken from the
        start it measures on these 2 cores: counting every 20 ms used a
        tenth of the machine during a 10,000-process start. So while fewer
        children than numprocesses exist, the pause between two looks is
        interval, or 19 times the last count's CPU time if that is longer
        (the counting takes 5% of a core at most); from then on it is
        interval, while the children are confirmed to run sleep (each
        pid's comm read once)."""
        self.service.start()
        t0 = self.service.started_at
        confirmed = set()
        deadline = t0 + timeout
        while True:
            cpu = time.thread_time()
            count = util.count_children(self.pid)
            pause = max(interval, 19 * (time.thread_time() - cpu))
            if count >= self.numprocesses:
                pause = interval
                kids = util.children(self.pid)
                for pid in kids:
                    if pid not in confirmed and util.comm(pid) == "sleep":
                        confirmed.add(pid)
                confirmed &= set(kids)
                if len(confirmed) >= self.numprocesses:
                    elapsed = time.monotonic() - t0
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("%s: %d/%d processes after %ds" % (
                    self.label, len(confirmed), self.numprocesses, timeout))
            self.service.check()
            time.sleep(pause)
        self.client = RawClient(self.endpoint, timeout=120)
        util.wait_until(lambda: self.client.try_call("list", timeout=1.0) is not None, 30,
                        what="%s to answer" % self.label)
        return elapsed

    def latency(self, command, repeat, budget=None, **props):
        """Round trip times (ms) of repeat calls on one persistent socket;
        with a budget (seconds), fewer calls once it is spent (at least one)."""
        times = []
        t0 = time.monotonic()
        for _ in range(repeat):
            if times and budget is not None and time.monotonic() - t0 > budget:
                break
            reply, seconds = self.client.call(command, **props)
            if reply.get("status") != "ok":
                raise RawError("%s: %s answered %r" % (self.label, command, reply))
            times.append(seconds * 1000.0)
        return times

    def respawn_times(self, count):
        """kill -9 one sleep process, count times: ms until a new one runs."""
        times = []
        for _ in range(count):
            before = set(self.sleepers())
            victim = random.choice(sorted(before))
            t0 = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            deadline = t0 + 30
            while True:
                kids = util.children(self.pid)
                fresh = [p for p in kids if p not in before and util.comm(p) == "sleep"]
                if fresh:
                    times.append((time.perf_counter() - t0) * 1000.0)
                    break
                if time.perf_counter() > deadline:
                    times.append(None)
                    break
                time.sleep(0.0005)
            time.sleep(0.2)
        return times

    def wait_count(self, target, timeout=120):
        t0 = time.monotonic()
        util.wait_until(lambda: len(self.sleepers()) == target, timeout, interval=0.005,
                        what="%s: %d processes" % (self.label, target))
        return time.monotonic() - t0

    def scale(self, command, nb):
        """incr/decr by nb with waiting: round trip and time until the
        number of running processes matches (ms)."""
        target = len(self.sleepers()) + (nb if command == "incr" else -nb)
        t0 = time.perf_counter()
        reply, seconds = self.client.call(command, name="sleepers", nb=nb, waiting=True)
        if reply.get("status") != "ok":
            raise RawError("%s: %s answered %r" % (self.label, command, reply))
        self.wait_count(target)
        return seconds * 1000.0, (time.perf_counter() - t0) * 1000.0

    def idle(self, seconds):
        """circusd's own CPU (percent of one core) over seconds of idleness."""
        cpu0, t0 = util.cpu_seconds(self.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = util.cpu_seconds(self.pid), time.monotonic()
        return 100.0 * (cpu1 - cpu0) / (t1 - t0)

    def quit(self):
        """quit: ms until circusd has exited and every child is gone."""
        kids = util.children(self.pid)
        t0 = time.perf_counter()
        try:
            self.client.call("quit", timeout=60, waiting=True)
        except RawError:
            pass  # some daemons close the socket before answering
        self.service.proc.wait(120)
        exited = (time.perf_counter() - t0) * 1000.0
        util.wait_until(lambda: not any(util.alive(p) for p in kids), 60, interval=0.002,
                        what="children to go")
        return exited, (time.perf_counter() - t0) * 1000.0

    def stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        self.service.stop(timeout=60)


def circusctl_wall(bindir, endpoint, runs, workdir, label):
    """hyperfine over `circusctl --endpoint E status`: the whole process."""
    out = os.path.join(workdir, "hyperfine-%s.json" % label)
    argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out,
            "--style", "none",
            "%s --endpoint %s status" % (os.path.join(bindir, "circusctl"), endpoint)]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    util.run_quiet(argv, timeout=300, check=True, env=env, cwd=workdir)
    with open(out) as handle:
        result = json.load(handle)["results"][0]
    times = [t * 1000.0 for t in result["times"]]
    return {"median_ms": result["median"] * 1000.0, "mean_ms": result["mean"] * 1000.0,
            "min_ms": result["min"] * 1000.0, "max_ms": result["max"] * 1000.0,
            "runs": len(times)}


def run_scale(plan, bindir, workdir, baseline=None):
    """Our circusd with plan["processes"] children of one watcher: the start,
    `list` polled by another process all along the start, `stats`, idle
    CPU, memory and quit. baseline: (processes, RSS in MiB) of a smaller
    run, to tell circusd's memory per managed process."""
    size = plan["processes"]
    log("control: circus with %d processes", size)
    result = {"processes": size, "limits_before": limits.current()}
    changes, put_back = limits.raise_for(size)
    result["limits_raised"] = changes
    result["limits"] = limits.current()
    circus_options, watcher_options = limits.ceilings(size)
    result["ceilings"] = dict(circus_options, **watcher_options)
    daemon = Daemon("circus", bindir, workdir, size, circus_options, watcher_options)
    out = os.path.join(daemon.dir, "listpoll.json")
    stop_file = os.path.join(daemon.dir, "listpoll.stop")
    poller = subprocess.Popen([PYTHON, LISTPOLL, daemon.endpoint, out, stop_file,
                               str(plan.get("list_gap", 0.001))], stdin=subprocess.DEVNULL)
    try:
        try:
            # counting 10,000 children takes a while: look less often than
            # for a thousand, or the counting competes with circusd
            result["start_s"] = daemon.start_and_time(timeout=plan.get("start_timeout", 120),
                                                      interval=0.02)
        finally:
            with open(stop_file, "w"):
                pass
            try:
                poller.wait(60)
            except subprocess.TimeoutExpired:
                poller.kill()
                poller.wait()
        with open(out) as handle:
            polled = json.load(handle)
        latencies = polled["latencies_ms"]
        result["list_during_start_ms"] = {
            "n": len(latencies), "errors": polled["errors"], "polled_s": polled["polled_s"],
            "max": max(latencies) if latencies else None,
            "p99": util.percentile(latencies, 99), "median": util.percentile(latencies, 50)}
        # the start's tail settles first: the last children's dynamic
        # loading, and each process's first-second timer (MIN_UPTIME)
        time.sleep(1.0)
        result["stats_ms"] = util.summary(daemon.latency("stats", plan["stats_repeat"]))
        time.sleep(1.0)  # and so do the stats calls' (freed memory, collections)
        result["idle_cpu_pct"] = daemon.idle(plan["idle_seconds"])
        result["idle_seconds"] = plan["idle_seconds"]
        rss = util.rss_bytes(daemon.pid)
        result["rss_mb"] = rss / 2 ** 20
        if baseline and baseline[0] < size:
            result["rss_per_process_kib"] = ((rss - baseline[1] * 2 ** 20)
                                             / (size - baseline[0]) / 1024)
            result["rss_baseline"] = list(baseline)
        else:
            result["rss_per_process_kib"] = rss / size / 1024
        result["quit_ms"], result["quit_all_gone_ms"] = daemon.quit()
    except Exception as error:  # a finding: say what stopped it
        result["failure"] = "%s: %s" % (type(error).__name__, str(error).splitlines()[0])
        result["log_tail"] = daemon.service.tail(2000)
        log("control: %d processes failed: %s", size, result["failure"])
    finally:
        daemon.stop()
        put_back()
    return result


def run(plan, daemons, workdir, circusctl_bindirs=None):
    """plan: sizes, idle_seconds, repeats...; daemons: [(label, bindir)];
    circusctl_bindirs: {label: bindir} where to take a daemon's circusctl
    from, if not beside its circusd."""
    circusctl_bindirs = circusctl_bindirs or {}
    results = {"sizes": plan["sizes"], "daemons": [label for label, _ in daemons],
               "idle_seconds": plan["idle_seconds"], "by_daemon": {}}
    biggest = max(plan["sizes"])
    # interleave the daemons size by size, so drift hits both alike
    for size in plan["sizes"]:
        starts = {label: [] for label, _ in daemons}
        for _ in range(plan.get("start_repeat", 1) - 1):
            for label, bindir in daemons:
                daemon = Daemon(label, bindir, workdir, size)
                try:
                    starts[label].append(daemon.start_and_time())
                finally:
                    daemon.stop()
        for label, bindir in daemons:
            entry = results["by_daemon"].setdefault(label, {"sizes": {}})
            log("control: %s with %d processes", label, size)
            daemon = Daemon(label, bindir, workdir, size)
            try:
                starts[label].append(daemon.start_and_time())
                row = {"start_s": util.summary(starts[label])["median"],
                       "start_runs_s": starts[label]}
                row["rss_mb"] = util.rss_bytes(daemon.pid) / 2 ** 20
                row["list_ms"] = util.summary(daemon.latency("list", plan["list_repeat"]))
                row["status_ms"] = util.summary(daemon.latency("status", plan["list_repeat"]))
                if size <= plan.get("stats_max_size", size):
                    row["stats_ms"] = util.summary(daemon.latency(
                        "stats", plan["stats_repeat"], budget=plan.get("stats_budget")))
                if size == min(plan["sizes"]) and plan.get("circusctl_runs"):
                    ctl_bindir = circusctl_bindirs.get(label, bindir)
                    if os.path.exists(os.path.join(ctl_bindir, "circusctl")):
                        entry["circusctl_status"] = circusctl_wall(
                            ctl_bindir, daemon.endpoint, plan["circusctl_runs"], workdir,
                            label)
                if size == biggest:
                    time.sleep(1.0)  # let the start's bookkeeping settle
                    row["idle_cpu_pct"] = daemon.idle(plan["idle_seconds"])
                    row["rss_mb"] = util.rss_bytes(daemon.pid) / 2 ** 20
                    respawns = daemon.respawn_times(plan["respawns"])
                    row["respawn_ms"] = util.summary(respawns)
                    row["respawn_runs_ms"] = respawns
                    incr, decr = [], []
                    for _ in range(plan["scale_repeat"]):
                        incr.append(daemon.scale("incr", plan["scale_by"]))
                        decr.append(daemon.scale("decr", plan["scale_by"]))
                    row["scale_by"] = plan["scale_by"]
                    row["incr_reply_ms"] = util.summary([a for a, _ in incr])
                    row["incr_running_ms"] = util.summary([b for _, b in incr])
                    row["decr_reply_ms"] = util.summary([a for a, _ in decr])
                    row["decr_gone_ms"] = util.summary([b for _, b in decr])
                    row["quit_ms"], row["quit_all_gone_ms"] = daemon.quit()
                entry["sizes"][str(size)] = row
            finally:
                daemon.stop()
    if plan.get("scale"):
        label, bindir = daemons[0]
        biggest_rss = results["by_daemon"][label]["sizes"][str(biggest)].get("rss_mb")
        results["scale"] = run_scale(plan["scale"], bindir, workdir,
                                     (biggest, biggest_rss) if biggest_rss else None)
    return results
