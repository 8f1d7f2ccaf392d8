"""Two measurements that live in scripts of their own (each can be run by
hand, see their docstrings), run here so that their figures land in the
result file of the same run:

- stats: benchmarks/stats_overhead.py, circusd-stats' CPU with N processes,
  ours (read by its own clients, then by an original one) beside Circus
  0.19's;
- latency: benchmarks/control_latency.py, the time circusd itself spends on
  list/status/stats (request in, reply out), 5 watchers and N processes;
- metrics: benchmarks/metrics_overhead.py, what a Prometheus scrape costs
  with N processes, and circusd's command latency while scraped each second.

Each script writes its figures as JSON; this module keeps that JSON as is.
"""
import json
import os
import subprocess

from suite.util import BENCH_DIR, PYTHON, ROOT, log


def _run(script, args, workdir, name, timeout):
    out = os.path.join(workdir, "%s.json" % name)
    argv = [PYTHON, os.path.join(BENCH_DIR, script)] + [str(a) for a in args] + ["--json", out]
    log("%s: %s", name, " ".join(argv[1:]))
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=ROOT))
    if proc.returncode != 0:
        raise RuntimeError("%s failed: %s" % (script, proc.stderr.strip()[-2000:]))
    with open(out) as handle:
        return json.load(handle)


def run_stats(plan, workdir):
    args = ["--processes"] + list(plan["processes"]) + ["--duration", plan["duration"]]
    if not plan["old_circus"]:
        args += ["--only", "ours"]
    return _run("stats_overhead.py", args, workdir, "stats", timeout=600)


def run_latency(plan, workdir):
    return _run("control_latency.py", ["--repeat", plan["repeat"], "--processes",
                                       plan["processes"], "--circusctl-runs", 0],
                workdir, "latency", timeout=600)


def run_metrics(plan, workdir):
    return _run("metrics_overhead.py", ["--processes", plan["processes"], "--watchers",
                                        plan["watchers"], "--scrapes", plan["scrapes"],
                                        "--duration", plan["duration"]],
                workdir, "metrics", timeout=900)
