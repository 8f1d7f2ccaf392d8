"""What circusd-stats costs: our circusd against the original Circus 0.19.

    .venv/bin/python benchmarks/stats_overhead.py [--processes 500 [1000 ...]]
                               [--duration 20] [--only ours|circus019] [--json FILE]

For each size, and for each daemon one after the other: circusd runs one
watcher of `sleep 3600` with that many processes and stats_endpoint set,
so it starts its circusd-stats. Once every process runs and the stream
covers them all, a subscriber stays connected (someone watching, as
circus-top or the web console would) and circusd-stats' CPU time (utime +
stime of all its threads, from psutil) is measured over --duration
seconds, after a warm-up.

The subscriber subscribes to what that daemon's own clients read: for our
circusd-stats, the batches (``batch.stat.``, what circus.stats.client,
circus-top and the console read), then, on the same daemon, ``stat.`` (what
Circus 0.19's circus-top and clients written against it read: one message
per process); for Circus 0.19's, ``stat.``. Reported: circusd-stats' CPU as
a percentage of one core, circusd's own over the same window, the messages
and KiB received per second and the distinct pids seen per tick (every
pid, each tick: both sides must carry the same information for the
figures to compare).

The original Circus 0.19.0 is installed from PyPI into its own venv,
benchmarks/.work/circus019 (its package is also called `circus`, so it
never shares ours). Every process started here is stopped at the end.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import zmq

from suite.util import free_port  # (benchmarks/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work")
WARMUP = 3.0


def log(message, *args):
    print("[stats_overhead] " + (message % args if args else message), file=sys.stderr,
          flush=True)


def circus019_python():
    """The venv's python, with circus 0.19.0 installed (once, by the suite's envs)."""
    sys.path.insert(0, HERE)
    from suite import envs
    return os.path.join(envs.circus019_env(), "python")


def write_config(directory, processes):
    ports = [free_port() for _ in range(3)]
    endpoint, pubsub, stats = ("tcp://127.0.0.1:%d" % p for p in ports)
    path = os.path.join(directory, "circus.ini")
    with open(path, "w") as handle:
        handle.write("[circus]\nendpoint = %s\npubsub_endpoint = %s\nstats_endpoint = %s\n\n"
                     "[watcher:sleepers]\ncmd = sleep 3600\nnumprocesses = %d\n"
                     % (endpoint, pubsub, stats, processes))
    return path, stats


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(0.1)


def _children(daemon):
    try:
        return daemon.children()
    except psutil.NoSuchProcess:
        return []


def _cmdline(proc):
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _cpu(proc):
    times = proc.cpu_times()
    return times.user + times.system


# what each kind of client subscribes to: circus's own clients read the
# batches (circus.stats.client), Circus 0.19's and every client written
# against it read stat.*
OWN_TOPIC = b"batch.stat."
ORIGINAL_TOPIC = b"stat."


class Coverage:
    """Which pids of the watcher the messages carry, second by second."""

    def __init__(self, watcher="sleepers"):
        self.watcher = watcher
        self.messages = 0
        self.bytes = 0
        self.per_second = {}

    def add(self, frames, second=None):
        self.messages += 1
        self.bytes += sum(len(f) for f in frames)
        topic = frames[0].decode()
        if topic == "batch.stat." + self.watcher:
            pids = {row[0] for row in json.loads(frames[1])["rows"]}
        elif topic.startswith("stat.%s." % self.watcher) and topic.count(".") == 2:
            pids = {int(topic.rsplit(".", 1)[1])}
        else:
            return set()
        if second is not None:
            self.per_second.setdefault(second, set()).update(pids)
        return pids


def measure_client(sub, topic, stats, daemon, processes, duration):
    """circusd-stats' CPU while one client subscribed to topic reads it."""
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    try:
        # the stream covers every process before anything is measured
        seen = set()
        coverage = Coverage()

        def covered():
            while sub.poll(100):
                seen.update(coverage.add(sub.recv_multipart()))
            return len(seen) >= processes
        wait_for(covered, 60, "stats about all %d processes" % processes)
        end = time.monotonic() + WARMUP
        while time.monotonic() < end:
            if sub.poll(100):
                sub.recv_multipart()
        cpu_stats, cpu_daemon = _cpu(stats), _cpu(daemon)
        begin = time.monotonic()
        coverage = Coverage()
        while time.monotonic() - begin < duration:
            if sub.poll(100):
                coverage.add(sub.recv_multipart(), int(time.monotonic() - begin))
        elapsed = time.monotonic() - begin
        cpu_stats, cpu_daemon = _cpu(stats) - cpu_stats, _cpu(daemon) - cpu_daemon
    finally:
        sub.setsockopt(zmq.UNSUBSCRIBE, topic)
    ticks = [len(p) for s, p in coverage.per_second.items() if 0 < s < int(elapsed) - 1]
    return {
        "duration_s": round(elapsed, 1),
        "circusd_stats_cpu_percent": round(cpu_stats / elapsed * 100, 2),
        "circusd_stats_cpu_ms_per_s": round(cpu_stats / elapsed * 1000, 1),
        "circusd_cpu_percent": round(cpu_daemon / elapsed * 100, 2),
        "circusd_stats_rss_mb": round(stats.memory_info().rss / 2 ** 20, 1),
        "messages_per_s": round(coverage.messages / elapsed, 1),
        "kbytes_per_s": round(coverage.bytes / elapsed / 1024, 1),
        "pids_per_tick_min": min(ticks) if ticks else None,
        "pids_per_tick_max": max(ticks) if ticks else None,
    }


def measure(name, argv, directory, processes, duration, clients):
    """clients: [(label, topic)], measured one after the other on one circusd."""
    config, stats_endpoint = write_config(directory, processes)
    log_path = os.path.join(directory, "circusd-%s-%d.log" % (name, processes))
    log("%s: starting circusd with %d processes", name, processes)
    with open(log_path, "wb") as output:
        proc = subprocess.Popen(argv + [config], stdout=output, stderr=subprocess.STDOUT,
                                cwd=directory, env=dict(os.environ, PYTHONPATH=ROOT)
                                if name == "ours" else None)
    daemon = psutil.Process(proc.pid)
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvhwm = 0
    results = []
    try:
        started = time.monotonic()
        wait_for(lambda: sum(1 for c in _children(daemon) if "sleep" in _cmdline(c))
                 >= processes, 120, "%d sleep processes" % processes)
        spawn_time = time.monotonic() - started
        stats = wait_for(lambda: next((c for c in _children(daemon)
                                       if "--statspoint" in _cmdline(c)), None),
                         30, "circusd-stats")
        sub.connect(stats_endpoint)
        for client, topic in clients:
            result = {"name": name, "client": client, "topic": topic.decode(),
                      "processes": processes, "spawn_s": round(spawn_time, 2)}
            result.update(measure_client(sub, topic, stats, daemon, processes, duration))
            log("%s: %s", name, result)
            results.append(result)
        return results
    finally:
        sub.close(0)
        context.term()
        stop(proc, daemon)


def stop(proc, daemon):
    descendants = []
    try:
        descendants = daemon.children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for child in descendants:
        try:
            child.kill()
        except psutil.Error:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[500])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--only", choices=["ours", "circus019"])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    runs = []
    if args.only in (None, "ours"):
        runs.append(("ours", [sys.executable, "-m", "circus.circusd"],
                     [("own", OWN_TOPIC), ("original", ORIGINAL_TOPIC)]))
    if args.only in (None, "circus019"):
        python = circus019_python()
        runs.append(("circus019", [os.path.join(os.path.dirname(python), "circusd")],
                     [("own", ORIGINAL_TOPIC)]))
    results = []
    with tempfile.TemporaryDirectory(prefix="stats-overhead-") as directory:
        for processes in args.processes:
            for name, command, clients in runs:
                results += measure(name, command, directory, processes, args.duration,
                                   clients)
    machine = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpus": os.cpu_count(),
               "python": platform.python_version(), "psutil": psutil.__version__,
               "kernel": platform.release(), "load_average": "%.2f %.2f %.2f" % os.getloadavg()}
    print("circusd-stats overhead, %.0f s, %s (%d CPUs, load %s)"
          % (args.duration, machine["date"], machine["cpus"], machine["load_average"]))
    print("| daemon | client | processes | circusd-stats CPU (% of one core) | circusd CPU (%) "
          "| circusd-stats RSS (MB) | messages/s | KiB/s | pids per tick |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print("| %s | %s (%s) | %d | %.2f | %.2f | %.1f | %.0f | %.0f | %s-%s |" % (
            "circus (this repo)" if r["name"] == "ours" else "Circus 0.19.0", r["client"],
            r["topic"], r["processes"], r["circusd_stats_cpu_percent"],
            r["circusd_cpu_percent"], r["circusd_stats_rss_mb"], r["messages_per_s"],
            r["kbytes_per_s"], r["pids_per_tick_min"], r["pids_per_tick_max"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
