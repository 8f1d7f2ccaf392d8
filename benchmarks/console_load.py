"""What the web console costs: circushttpd in front of a big circusd.

    .venv/bin/python benchmarks/console_load.py [--watchers 50] [--processes 1000]
                                                [--clients 20] [--duration 20]
                                                [--requests 50] [--flood-mb 50]
                                                [--json FILE]

circusd runs --watchers watchers of `sleep 3600` (--processes in all) with
stats_endpoint set (so circusd-stats publishes every process every second,
as in production), and circushttpd follows it. Once the console knows
every process:

- the overview page (HTML, and its JSON twin /api/.../watchers) is fetched
  --requests times, each on a new connection as a browser's first visit
  would, and the time to the last byte is recorded;
- the console's and circusd's CPU time (psutil: user + system) are measured
  over --duration seconds with no browser, then again with --clients event
  streams open on the overview (each a thread reading like a browser,
  counting the events it gets): the difference is what the live pages cost.
- then a watcher that was not started (`flood`, one process writing
  --flood-mb MB/s of 100-byte lines on stdout) starts, a browser opens its
  page's stream (the log tail), and circusd's and the console's memory are
  sampled every half second for --duration seconds: their growth from
  before the flood started, the rate the writer kept (from circusd's
  `output` cursor: every byte it wrote) and what the page received.

Only public tools: the console's own HTTP interface, circus.client (the
protocol), http.client, psutil. Every process started here is stopped at
the end.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from suite.util import free_port  # (benchmarks/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WARMUP = 3.0
# --flood-mb MB/s of 100-byte lines, in 64 kB writes
FLOODER = """
import os, sys, time
chunk = (b"flood " + b"x" * 93 + b"\\n") * 640
rate = float(sys.argv[1]) * 1000 * 1000
started, sent = time.monotonic(), 0
while True:
    os.write(1, chunk)
    sent += len(chunk)
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)
"""


def log(message, *args):
    print("[console_load] " + (message % args if args else message), file=sys.stderr,
          flush=True)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(0.2)


def write_config(directory, watchers, processes, flood_mb):
    endpoint, pubsub, stats = ("tcp://127.0.0.1:%d" % free_port() for _ in range(3))
    per_watcher, extra = divmod(processes, watchers)
    lines = ["[circus]", "endpoint = %s" % endpoint, "pubsub_endpoint = %s" % pubsub,
             "stats_endpoint = %s" % stats, ""]
    for index in range(watchers):
        lines += ["[watcher:app%02d]" % index, "cmd = sleep 3600",
                  "numprocesses = %d" % (per_watcher + (1 if index < extra else 0)), ""]
    flooder = os.path.join(directory, "flooder.py")
    with open(flooder, "w") as handle:
        handle.write(FLOODER)
    # started only for the last measure (the others are of an idle circusd)
    lines += ["[watcher:flood]", "cmd = %s %s %s" % (sys.executable, flooder, flood_mb),
              "autostart = false", ""]
    path = os.path.join(directory, "circus.ini")
    with open(path, "w") as handle:
        handle.write("\n".join(lines))
    return path, endpoint


def get(port, path, timeout=30):
    """(status, seconds to the last byte, body) on a new connection."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return response.status, time.perf_counter() - started, body


def cpu(proc):
    times = proc.cpu_times()
    return times.user + times.system


class StreamReader(threading.Thread):
    """One browser's event stream: reads and counts events (and bytes)
    until stopped."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.events = {}
        self.bytes = 0
        self.status = None
        self.stopping = False
        self.conn = None

    def run(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.request("GET", self.path)
        response = self.conn.getresponse()
        self.status = response.status
        while not self.stopping:
            try:
                line = response.readline()
            except (OSError, ValueError, http.client.HTTPException):
                return
            if not line:
                return
            self.bytes += len(line)
            if line.startswith(b"event: "):
                name = line[7:].strip().decode()
                self.events[name] = self.events.get(name, 0) + 1

    def stop(self):
        self.stopping = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass


def summary(values):
    values = sorted(values)
    return {"n": len(values), "median": round(statistics.median(values) * 1000, 2),
            "p95": round(values[min(len(values) - 1, int(len(values) * 0.95))] * 1000, 2),
            "max": round(values[-1] * 1000, 2)}


def measure_flood(args, port, eid, endpoint, daemon, console):
    """A writer of --flood-mb MB/s with its tail open: what it costs in memory."""
    from circus.client import CircusClient
    client = CircusClient(endpoint=endpoint, timeout=30)

    def call(command, **props):
        reply = client.call({"command": command, "properties": props})
        if reply.get("status") != "ok":
            raise RuntimeError("%s: %s" % (command, reply))
        return reply

    def written():
        cursor = call("output", name="flood", lines=0)["cursor"]
        return sum(sum(streams.values()) for streams in cursor.values())
    rss = [daemon.memory_info().rss, console.memory_info().rss]
    peak = list(rss)
    reader = StreamReader(port, "/e/%s/stream?view=watcher&name=flood" % eid)
    try:
        call("start", name="flood", waiting=True)
        reader.start()
        wait_for(lambda: reader.events.get("output"), 60, "the tail's first lines")
        time.sleep(WARMUP)
        before = written(), cpu(daemon), cpu(console), reader.events.get("output", 0), \
            reader.bytes
        begin = time.monotonic()
        while time.monotonic() - begin < args.duration:
            time.sleep(0.5)
            peak = [max(peak[0], daemon.memory_info().rss),
                    max(peak[1], console.memory_info().rss)]
        elapsed = time.monotonic() - begin
        result = {
            "target_mb_s": args.flood_mb,
            "rate_mb_s": round((written() - before[0]) / elapsed / 1e6, 2),
            "seconds": round(elapsed, 1),
            "circusd_rss_mb": round(rss[0] / 2 ** 20, 1),
            "circusd_rss_growth_mb": round((peak[0] - rss[0]) / 2 ** 20, 2),
            "console_rss_growth_mb": round((peak[1] - rss[1]) / 2 ** 20, 2),
            "circusd_cpu_percent": round((cpu(daemon) - before[1]) / elapsed * 100, 2),
            "console_cpu_percent": round((cpu(console) - before[2]) / elapsed * 100, 2),
            "output_events_per_s": round((reader.events.get("output", 0) - before[3])
                                         / elapsed, 2),
            "page_kb_per_s": round((reader.bytes - before[4]) / elapsed / 1000, 1),
        }
        log("flood: %s", result)
        return result
    finally:
        reader.stop()
        try:
            call("stop", name="flood", waiting=True)
        finally:
            client.stop()


def measure(args, directory):
    config, endpoint = write_config(directory, args.watchers, args.processes, args.flood_mb)
    env = dict(os.environ, PYTHONPATH=ROOT)
    port = free_port()
    daemon_log = open(os.path.join(directory, "circusd.log"), "wb")
    daemon_proc = subprocess.Popen([sys.executable, "-m", "circus.circusd", config],
                                   stdout=daemon_log, stderr=subprocess.STDOUT, env=env,
                                   cwd=directory)
    console_log = open(os.path.join(directory, "circushttpd.log"), "wb")
    console_proc = None
    try:
        daemon = psutil.Process(daemon_proc.pid)
        console_proc = subprocess.Popen(
            [sys.executable, "-m", "circus.web", "--endpoint", endpoint, "--port", str(port),
             "--max-streams", str(max(24, args.clients + 2)),
             "--threads", str(max(32, args.clients + 12))],
            stdout=console_log, stderr=subprocess.STDOUT, env=env, cwd=directory)
        console = psutil.Process(console_proc.pid)

        def known():
            try:
                status, _, body = get(port, "/api/endpoints")
            except OSError:
                return None
            found = json.loads(body)["endpoints"] if status == 200 else []
            if not found or found[0]["watchers"] < args.watchers:
                return None
            eid = found[0]["id"]
            watchers = json.loads(get(port, "/api/e/%s/watchers" % eid)[2])["watchers"]
            running = sum(w["running"] for w in watchers)
            stats = json.loads(get(port, "/api/e/%s/watchers" % eid)[2])["stats"]["latest"]
            return running >= args.processes and len(stats) >= args.watchers and eid
        started = time.monotonic()
        eid = wait_for(known, 180, "the console to know %d processes" % args.processes)
        log("console knows %d processes after %.1f s", args.processes,
            time.monotonic() - started)
        time.sleep(WARMUP)

        pages = {}
        for label, path in (("overview_html", "/e/%s/" % eid),
                            ("overview_json", "/api/e/%s/watchers" % eid)):
            times, size = [], 0
            for _ in range(args.requests):
                status, seconds, body = get(port, path)
                if status != 200:
                    raise RuntimeError("%s answered %d" % (path, status))
                times.append(seconds)
                size = len(body)
            pages[label] = dict(summary(times), bytes=size)
            log("%s: %s", label, pages[label])

        def window(seconds):
            before = cpu(console), cpu(daemon)
            begin = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - begin
            return {"console_cpu_percent": round((cpu(console) - before[0]) / elapsed * 100, 2),
                    "circusd_cpu_percent": round((cpu(daemon) - before[1]) / elapsed * 100, 2),
                    "seconds": round(elapsed, 1)}
        idle = window(args.duration)
        log("no stream: %s", idle)
        readers = [StreamReader(port, "/e/%s/stream?view=overview" % eid)
                   for _ in range(args.clients)]
        for reader in readers:
            reader.start()
        wait_for(lambda: all(r.events.get("snapshot") for r in readers), 60,
                 "%d streams' snapshots" % args.clients)
        time.sleep(WARMUP)
        counted = [sum(r.events.values()) for r in readers]
        streaming = window(args.duration)
        per_client = [(sum(r.events.values()) - c) / streaming["seconds"]
                      for r, c in zip(readers, counted)]
        log("%d streams: %s", args.clients, streaming)
        for reader in readers:
            reader.stop()
        flood = measure_flood(args, port, eid, endpoint, daemon, console) \
            if args.flood_mb > 0 else None
        return {
            "watchers": args.watchers, "processes": args.processes, "clients": args.clients,
            "pages": pages, "idle": idle, "streaming": streaming,
            "events_per_client_per_s": round(statistics.median(per_client), 2)
            if per_client else None,
            "streams_open": sum(1 for r in readers if r.status == 200),
            "console_cost_percent": round(streaming["console_cpu_percent"]
                                          - idle["console_cpu_percent"], 2),
            "circusd_cost_percent": round(streaming["circusd_cpu_percent"]
                                          - idle["circusd_cpu_percent"], 2),
            "console_rss_mb": round(console.memory_info().rss / 2 ** 20, 1),
            "flood": flood,
        }
    finally:
        for proc in (console_proc, daemon_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
        daemon_log.close()
        console_log.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--flood-mb", dest="flood_mb", type=float, default=50.0,
                        help="MB/s the writer of the log tail measure writes (0: no such "
                             "measure)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="console-load-") as directory:
        result = measure(args, directory)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
