"""Command latency of circusd's control plane.

    .venv/bin/python benchmarks/control_latency.py [--repeat N] [--processes 500]

Three figures per command (list, status, stats), for 5 watchers of one
process each and for 500 processes (5 watchers of 100):

- in-daemon: from the request frame received by the controller to its reply
  handed to ZeroMQ (parse, validate, execute, serialise, send): the time the
  daemon itself spends. The Arbiter runs in this process, on this loop, with
  its real Controller; a timing wrapper around the controller's request
  handler measures it.
- round trip: a CircusClient in another process (a real circusd subprocess
  on the same configuration), persistent DEALER, one loopback hop.
- circusctl: `circusctl status` as a whole process, wall time (startup,
  imports, connect, call, exit).

Targets (issue 3): in-daemon list/status < 0.3 ms; stats for 500 processes
< 50 ms; circusctl status < 80 ms.
"""
import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from suite.util import free_port  # (benchmarks/ is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

COMMANDS = [("list", {}), ("status", {}), ("stats", {}), ("stats", {"name": "w0"})]


def summary(samples):
    samples = sorted(samples)
    n = len(samples)
    return {"p50": statistics.median(samples), "p90": samples[int(n * 0.9) - 1],
            "p99": samples[max(0, int(n * 0.99) - 1)], "max": samples[-1]}


def label(command, props):
    return command + ("(%s)" % props["name"] if props else "")


# --- in-daemon ------------------------------------------------------------------
async def in_daemon(watchers, per_watcher, repeat):
    from circus.arbiter import Arbiter
    from circus.client import AsyncCircusClient
    from circus.watcher import Watcher

    endpoint = "tcp://127.0.0.1:%d" % free_port()
    arbiter = Arbiter([Watcher("w%d" % i, "sleep 3600", numprocesses=per_watcher)
                       for i in range(watchers)],
                      endpoint=endpoint, pubsub_endpoint="tcp://127.0.0.1:%d" % free_port())
    run = asyncio.ensure_future(arbiter.run())
    while arbiter.status != "active":
        if run.done():
            run.result()
        await asyncio.sleep(0.01)
    controller = arbiter.controller
    timings = []
    handle = controller._handle

    async def timed(envelope, raw):
        start = time.perf_counter()
        await handle(envelope, raw)
        timings.append(time.perf_counter() - start)

    controller._handle = timed
    results = {}
    client = AsyncCircusClient(endpoint=endpoint, timeout=30)
    try:
        for command, props in COMMANDS:
            n = repeat if command != "stats" else max(20, repeat // 10)
            for _ in range(5):  # warm up (psutil's first cpu_percent, caches)
                await client.call({"command": command, "properties": props})
            timings.clear()
            for _ in range(n):
                reply = await client.call({"command": command, "properties": props})
                assert reply["status"] == "ok", reply
            results[label(command, props)] = summary(timings)
    finally:
        client.stop()
        arbiter.request_quit()
        await run
    return results


# --- a real circusd -------------------------------------------------------------
def round_trip(watchers, per_watcher, repeat, circusctl_runs=20):
    from circus.client import CircusClient
    workdir = tempfile.mkdtemp(prefix="circus-latency-")
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    config = os.path.join(workdir, "circus.ini")
    with open(config, "w") as handle:
        handle.write("[circus]\nendpoint = %s\npubsub_endpoint = tcp://127.0.0.1:%d\n\n"
                     % (endpoint, free_port()))
        for i in range(watchers):
            handle.write("[watcher:w%d]\ncmd = sleep 3600\nnumprocesses = %d\n\n"
                         % (i, per_watcher))
    env = dict(os.environ, PYTHONPATH=ROOT)
    daemon = subprocess.Popen([sys.executable, "-m", "circus.circusd", config],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    client = CircusClient(endpoint=endpoint, timeout=30)
    results = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.call({"command": "numprocesses"})["numprocesses"] >= \
                        watchers * per_watcher:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError("circusd did not start its processes")
            time.sleep(0.1)
        for command, props in COMMANDS:
            n = repeat if command != "stats" else max(20, repeat // 10)
            for _ in range(5):
                client.call({"command": command, "properties": props})
            samples = []
            for _ in range(n):
                start = time.perf_counter()
                client.call({"command": command, "properties": props})
                samples.append(time.perf_counter() - start)
            results[label(command, props)] = summary(samples)
        circusctl = os.path.join(os.path.dirname(sys.executable), "circusctl")
        walls = []
        for _ in range(circusctl_runs):
            start = time.perf_counter()
            subprocess.run([circusctl, "--endpoint", endpoint, "status"], check=True,
                           stdout=subprocess.DEVNULL, env=env)
            walls.append(time.perf_counter() - start)
        if walls:
            results["circusctl status (process)"] = summary(walls)
    finally:
        client.stop()
        daemon.terminate()
        daemon.wait(60)
    return results


def print_table(title, results):
    print("\n%s" % title)
    print("  %-28s %9s %9s %9s %9s" % ("command", "p50 ms", "p90 ms", "p99 ms", "max ms"))
    for name, s in results.items():
        print("  %-28s %9.3f %9.3f %9.3f %9.3f" % (name, s["p50"] * 1000, s["p90"] * 1000,
                                                   s["p99"] * 1000, s["max"] * 1000))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1000, help="calls per command")
    parser.add_argument("--processes", type=int, default=500, help="processes, large case")
    parser.add_argument("--circusctl-runs", type=int, default=20,
                        help="circusctl status runs per case (0: none)")
    parser.add_argument("--json", help="also write the figures (in seconds) to this file")
    args = parser.parse_args(argv)
    import psutil
    import zmq
    print("control_latency: %s, Python %s, pyzmq %s (libzmq %s), %d CPUs, %s"
          % (platform.platform(), platform.python_version(), zmq.__version__,
             zmq.zmq_version(), os.cpu_count(), time.strftime("%Y-%m-%d %H:%M")))
    del psutil
    cases = []
    for watchers, per_watcher in ((5, 1), (5, args.processes // 5)):
        scenario = "%d watchers, %d processes" % (watchers, watchers * per_watcher)
        inside = asyncio.run(in_daemon(watchers, per_watcher, args.repeat))
        print_table("in-daemon (%s)" % scenario, inside)
        outside = round_trip(watchers, per_watcher, args.repeat, args.circusctl_runs)
        print_table("round trip from another process (%s)" % scenario, outside)
        cases.append({"watchers": watchers, "processes": watchers * per_watcher,
                      "in_daemon": inside, "round_trip": outside})
    if args.json:
        import json
        with open(args.json, "w") as handle:
            json.dump({"repeat": args.repeat, "cases": cases}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
