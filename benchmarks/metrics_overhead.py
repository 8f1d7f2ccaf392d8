"""What Prometheus scraping costs circus (circusd-metrics, issue 15).

    .venv/bin/python benchmarks/metrics_overhead.py [--processes 1000] [--watchers 50]
                                                     [--scrapes 30] [--duration 20]
                                                     [--json FILE]

circusd runs --watchers watchers of `sleep 3600`, --processes processes in
all, one circus socket, and `prometheus` set with per-process series on
(the most a scrape collects). Once every process runs:

- scrape cost: --scrapes scrapes of /metrics one after the other (0.2 s
  apart), each timed by the client (HTTP request to the last byte, the
  exposition included) and by circusd-metrics itself (its
  circus_scrape_duration_seconds: circusd's reply, /proc and sock_diag);
  beside them the `metrics` command's mean time inside circusd, from its
  own circus_command_duration_seconds histogram;
- command latency: `list` and `status` round trips from a client in this
  process, one every 10 ms for --duration seconds, first with nothing
  scraping, then while a real Prometheus server (if installed; else a
  plain HTTP loop) scrapes circusd-metrics every second. Both phases use
  the same client, the same pacing and the same circusd.

Every process started here is stopped at the end; everything listens on
127.0.0.1.
"""
import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from suite.util import free_port  # (benchmarks/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def log(message, *args):
    print("[metrics_overhead] " + (message % args if args else message), file=sys.stderr,
          flush=True)


def summary(samples):
    samples = sorted(samples)
    n = len(samples)
    return {"n": n, "p50": statistics.median(samples), "p90": samples[int(n * 0.9) - 1],
            "p99": samples[max(0, int(n * 0.99) - 1)], "max": samples[-1]}


def get(port, path="/metrics"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def scrape_value(body, name):
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def metrics_command_totals(body):
    """(sum, count) of circusd's `metrics` command latency histogram."""
    total = count = None
    for line in body.decode().splitlines():
        if 'command="metrics"' in line and 'status="ok"' in line:
            if line.startswith("circus_command_duration_seconds_sum"):
                total = float(line.rsplit(" ", 1)[1])
            elif line.startswith("circus_command_duration_seconds_count"):
                count = float(line.rsplit(" ", 1)[1])
    return total or 0.0, count or 0.0


def start_circusd(workdir, processes, watchers):
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    metrics_port = free_port()
    config = os.path.join(workdir, "circus.ini")
    per_watcher, extra = divmod(processes, watchers)
    with open(config, "w") as handle:
        handle.write("[circus]\nendpoint = %s\npubsub_endpoint = tcp://127.0.0.1:%d\n"
                     "prometheus = 127.0.0.1:%d\nprometheus_per_process = true\n\n"
                     % (endpoint, free_port(), metrics_port))
        for i in range(watchers):
            handle.write("[watcher:w%d]\ncmd = sleep 3600\nnumprocesses = %d\n\n"
                         % (i, per_watcher + (1 if i < extra else 0)))
        handle.write("[socket:web]\nhost = 127.0.0.1\nport = %d\n" % free_port())
    daemon = subprocess.Popen([sys.executable, "-m", "circus.circusd", config],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    return daemon, endpoint, metrics_port


def wait_running(client, daemon, metrics_port, processes):
    deadline = time.monotonic() + 180
    while True:
        try:
            counted = client.call({"command": "numprocesses"}).get("numprocesses", 0)
            # circusd-metrics counts as one process of its own
            if counted >= processes + 1 and get(metrics_port, "/healthz")[0] == 200:
                return
        except Exception:
            pass
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise RuntimeError("circusd did not start its processes and circusd-metrics")
        time.sleep(0.2)


def measure_scrapes(port, count):
    walls, collects, sizes, series = [], [], [], []
    # the first scrapes import the command, track every pid: not steady state
    for _ in range(2):
        status, body = get(port)
    before = metrics_command_totals(body)
    for _ in range(count):
        started = time.perf_counter()
        status, body = get(port)
        walls.append(time.perf_counter() - started)
        assert status == 200, status
        collects.append(scrape_value(body, "circus_scrape_duration_seconds"))
        sizes.append(len(body))
        series.append(sum(1 for line in body.splitlines() if line and not line.startswith(b"#")))
        time.sleep(0.2)
    after = metrics_command_totals(body)
    # each scrape's reply counts the command of the scrape before it
    mean = (after[0] - before[0]) / (after[1] - before[1]) if after[1] > before[1] else None
    return {"wall_ms": {k: v * 1000 if k != "n" else v for k, v in summary(walls).items()},
            "collect_ms": {k: v * 1000 if k != "n" else v
                           for k, v in summary(collects).items()},
            "bytes": statistics.median(sizes), "series": statistics.median(series),
            "metrics_command_mean_ms": mean * 1000 if mean is not None else None}


def latencies(client, duration):
    results = {}
    for command in ("list", "status"):
        samples = []
        deadline = time.monotonic() + duration / 2
        while time.monotonic() < deadline:
            started = time.perf_counter()
            reply = client.call({"command": command})
            samples.append(time.perf_counter() - started)
            assert reply.get("status") != "error", reply
            time.sleep(0.01)
        results[command] = {k: v * 1000 if k != "n" else v
                            for k, v in summary(samples).items()}
    return results


class Scraper:
    """Prometheus scraping every second, or a plain HTTP loop without it."""

    def __init__(self, workdir, port):
        self.proc = None
        self.thread = None
        self.stopping = threading.Event()
        self.scrapes = 0
        binary = shutil.which("prometheus")
        if binary:
            directory = os.path.join(workdir, "prometheus")
            os.makedirs(directory)
            config = os.path.join(directory, "prometheus.yml")
            with open(config, "w") as handle:
                handle.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                             "scrape_configs:\n  - job_name: circus\n    static_configs:\n"
                             "      - targets: ['127.0.0.1:%d']\n" % port)
            self.web_port = free_port()
            self.kind = "prometheus"
            self.proc = subprocess.Popen(
                [binary, "--config.file", config, "--storage.tsdb.path",
                 os.path.join(directory, "data"),
                 "--web.listen-address", "127.0.0.1:%d" % self.web_port],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory)
            self._wait_scraping()
        else:
            self.kind = "HTTP loop, every second (prometheus is not installed)"
            self.thread = threading.Thread(target=self._loop, args=(port,), daemon=True)
            self.thread.start()

    def _up(self):
        query = "http://127.0.0.1:%d/api/v1/query?query=up" % self.web_port
        import urllib.request
        try:
            with urllib.request.urlopen(query, timeout=2) as response:
                result = json.load(response)["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"
        except OSError:
            return False

    def _wait_scraping(self):
        deadline = time.monotonic() + 60
        while not self._up():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("prometheus did not start scraping")
            time.sleep(0.5)

    def _loop(self, port):
        while not self.stopping.wait(1.0):
            get(port)
            self.scrapes += 1

    def stop(self):
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run(processes, watchers, scrapes, duration):
    from circus.client import CircusClient
    workdir = tempfile.mkdtemp(prefix="circus-metrics-")
    daemon, endpoint, port = start_circusd(workdir, processes, watchers)
    client = CircusClient(endpoint=endpoint, timeout=30)
    scraper = None
    try:
        wait_running(client, daemon, port, processes)
        log("%d processes in %d watchers running; %d scrapes", processes, watchers, scrapes)
        result = {"processes": processes, "watchers": watchers,
                  "scrape": measure_scrapes(port, scrapes)}
        for _ in range(20):  # warm up the client and the commands
            client.call({"command": "list"})
        log("command latency, nothing scraping, %s s", duration)
        idle = latencies(client, duration)
        scraper = Scraper(workdir, port)
        log("command latency, scraped every second by %s, %s s", scraper.kind, duration)
        scraped = latencies(client, duration)
        result["latency"] = {"idle": idle, "scraped": scraped, "scraper": scraper.kind,
                             "duration_s": duration}
        return result
    finally:
        if scraper is not None:
            scraper.stop()
        client.stop()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(120)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds of each latency phase (idle, then scraped)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    log("%s, Python %s, %d CPUs", platform.platform(), platform.python_version(),
        os.cpu_count())
    result = run(args.processes, min(args.watchers, args.processes), args.scrapes,
                 args.duration)
    scrape = result["scrape"]
    print("scrape, %d processes: wall p50 %.1f ms, collection p50 %.1f ms, %d series, "
          "%d bytes; `metrics` in circusd %.3f ms" % (
              result["processes"], scrape["wall_ms"]["p50"], scrape["collect_ms"]["p50"],
              scrape["series"], scrape["bytes"], scrape["metrics_command_mean_ms"] or 0))
    for command in ("list", "status"):
        idle = result["latency"]["idle"][command]
        scraped = result["latency"]["scraped"][command]
        print("%s round trip p50/p99: %.3f/%.3f ms idle, %.3f/%.3f ms scraped" % (
            command, idle["p50"], idle["p99"], scraped["p50"], scraped["p99"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
