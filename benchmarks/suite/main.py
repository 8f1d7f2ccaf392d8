"""The benchmark suite's entry point (benchmarks/run.py calls main())."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from suite import archive, console, control, daemon_costs, envs, noise, reload, servers, web
from suite.report import render
from suite.util import BENCH_DIR, PYTHON, WORK_DIR, log

DEFAULT_OUT = os.path.join(BENCH_DIR, "results")
SCENARIOS = ("web", "reload", "control", "stats", "latency", "console", "metrics")

# what each mode runs; see benchmarks/README for the reasons
PLANS = {
    "full": {
        "web": {"apps": ["hello", "work"], "workers": [2, 4], "duration": 8, "rounds": 3,
                "warmup": 1, "stacks": "all", "noise_budget": 240},
        "reload": {"steady": 10, "load": 20, "reloads": 3, "max_age": 2,
                   "max_age_variance": 1, "warmup": 2, "noise_budget": 120,
                   "stacks": ["circus-meinheld", "circus-waitress", "circus-chaussette",
                              "gunicorn-sync", "gunicorn-meinheld"]},
        "control": {"sizes": [100, 500, 1000], "idle_seconds": 30, "list_repeat": 500,
                    "stats_repeat": 5, "stats_budget": 8, "respawns": 10,
                    "start_repeat": 3, "scale_by": 100, "scale_repeat": 3,
                    "circusctl_runs": 30, "old_circus": True,
                    "scale": {"processes": 10000, "idle_seconds": 30, "stats_repeat": 5}},
        "stats": {"processes": [500, 1000], "duration": 20, "old_circus": True},
        "latency": {"repeat": 1000, "processes": 500},
        "console": {"watchers": 50, "processes": 1000, "clients": 20, "duration": 20,
                    "requests": 100, "flood_mb": 50},
        "metrics": {"processes": 1000, "watchers": 50, "scrapes": 30, "duration": 20},
    },
    "quick": {
        "web": {"apps": ["hello"], "workers": [2], "duration": 3, "rounds": 3, "warmup": 1,
                "noise_budget": 10,
                "stacks": ["circus-meinheld", "circus-waitress", "gunicorn-sync",
                           "gunicorn-meinheld", "nginx"]},
        "reload": {"steady": 3, "load": 5, "reloads": 3, "max_age": 2, "max_age_variance": 1,
                   "warmup": 1, "noise_budget": 6, "stacks": ["circus-meinheld", "gunicorn-sync"]},
        "control": {"sizes": [100, 1000], "idle_seconds": 5, "list_repeat": 200,
                    "stats_repeat": 2, "stats_max_size": 500, "respawns": 3, "scale_by": 100,
                    "scale_repeat": 1,
                    "circusctl_runs": 10, "old_circus": True},
        "stats": {"processes": [500], "duration": 5, "old_circus": False},
        "latency": {"repeat": 200, "processes": 500},
        "console": {"watchers": 50, "processes": 1000, "clients": 20, "duration": 5,
                    "requests": 30, "flood_mb": 50},
        "metrics": {"processes": 1000, "watchers": 50, "scrapes": 10, "duration": 6},
    },
    # the CI smoke test: the project's venv and wrk only, a few seconds
    "smoke": {
        "web": {"apps": ["hello"], "workers": [2], "duration": 2, "rounds": 1, "warmup": 1,
                "stacks": ["circus-meinheld"], "noise_budget": 0},
        "reload": None,
        "control": {"sizes": [10], "idle_seconds": 1, "list_repeat": 20, "stats_repeat": 2,
                    "respawns": 2, "scale_by": 5, "scale_repeat": 1, "circusctl_runs": 0,
                    "old_circus": False,
                    "scale": {"processes": 50, "idle_seconds": 1, "stats_repeat": 1}},
        "stats": {"processes": [10], "duration": 2, "old_circus": False},
        "latency": {"repeat": 20, "processes": 10},
        "console": {"watchers": 3, "processes": 6, "clients": 2, "duration": 1,
                    "requests": 3, "flood_mb": 50},
        "metrics": {"processes": 10, "watchers": 2, "scrapes": 3, "duration": 1},
    },
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Run the circus benchmark suite and write a dated result file "
                    "(Markdown + JSON) and PNG plots.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="fewer configurations and short runs (under 3 minutes)")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke",
                      help="the smallest scenario, for CI: no extra installs, no plots")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios among %s (default: all)"
                             % ",".join(SCENARIOS))
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="directory for the result files (default: benchmarks/results)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--stacks", default=None,
                        help="comma-separated server keys (e.g. circus-meinheld): run only "
                             "these among the mode's servers")
    parser.set_defaults(mode="full")
    return parser


def all_stacks():
    return servers.circus_stacks() + servers.gunicorn_stacks() + [servers.nginx_stack()]


def select_stacks(names, keep=None):
    """The stacks named (or all), in that order; only those in keep if given."""
    stacks = all_stacks()
    if names != "all":
        by_key = {s.key: s for s in stacks}
        stacks = [by_key[n] for n in names]
    if keep is not None:
        stacks = [s for s in stacks if s.key in keep]
    return stacks


def check_tools(mode, only, skipped):
    if not shutil.which("wrk") and ({"web", "reload"} & only):
        raise SystemExit("wrk is needed for the web and reload scenarios: apt-get install wrk")
    if mode != "smoke" and not envs.nginx_path():
        skipped["nginx ceiling"] = "nginx is not installed"
    if mode != "smoke" and not shutil.which("hyperfine"):
        skipped["circusctl wall time"] = "hyperfine is not installed"


def _terminate(signum, frame):
    # unwind through every finally: the servers started so far get stopped
    raise SystemExit(128 + signum)


def main(argv=None):
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        raise SystemExit("unknown scenario(s): %s" % ", ".join(sorted(unknown)))
    plan = PLANS[args.mode]
    keep = None
    if args.stacks:
        keep = {s.strip() for s in args.stacks.split(",") if s.strip()}
        unknown = keep - {s.key for s in all_stacks()}
        if unknown:
            raise SystemExit("unknown server(s): %s" % ", ".join(sorted(unknown)))
    started = time.monotonic()
    tree_at_start = envs.circus_tree()
    stamp = time.strftime("%Y-%m-%d-%H%M")
    os.makedirs(args.out, exist_ok=True)
    workdir = os.path.join(WORK_DIR, "run-%s-%s" % (stamp, args.mode))
    os.makedirs(workdir, exist_ok=True)
    skipped = {}
    check_tools(args.mode, only, skipped)
    envs.compile_circus()

    needs_gunicorn = args.mode != "smoke"
    gunicorn_bin = envs.gunicorn_env() if needs_gunicorn else None
    old_bin = None
    if any(s in only and plan.get(s) and plan[s]["old_circus"] for s in ("control", "stats")):
        old_bin = envs.circus019_env()

    data = {"mode": args.mode, "command": _command_line(argv),
            "machine": envs.machine(gunicorn_bin, old_bin), "skipped": skipped,
            "notes": [], "plans": {k: v for k, v in plan.items() if k in only}}
    if args.mode == "smoke":
        data["notes"].append("smoke mode: the smallest scenario of each kind, checks that the "
                             "suite works; its numbers mean little")

    data["load_average"] = {"start": _loadavg()}
    if "web" in only and plan["web"]:
        stacks = [s for s in select_stacks(plan["web"]["stacks"], keep)
                  if s.kind != "nginx" or "nginx ceiling" not in skipped]
        budget = plan["web"]["noise_budget"]
        guard = noise.Guard(budget) if budget else None
        data["web"] = web.run(plan["web"], stacks, workdir, gunicorn_bin, guard)
        if guard is not None:
            data["web"]["noise"] = {"limit_pct": noise.LIMIT_PCT, "budget_s": guard.budget,
                                    "spent_s": guard.spent, "repeated": guard.repeated,
                                    "kept_noisy": guard.kept_noisy}
        data["load_average"]["after web"] = _loadavg()
    if "reload" in only and plan["reload"]:
        budget = plan["reload"]["noise_budget"]
        guard = noise.Guard(budget) if budget else None
        data["reload"] = reload.run(plan["reload"], select_stacks(plan["reload"]["stacks"], keep),
                                    workdir, gunicorn_bin, guard)
        if guard is not None:
            data["reload"]["noise"] = {"limit_pct": noise.LIMIT_PCT, "budget_s": guard.budget,
                                       "spent_s": guard.spent, "repeated": guard.repeated,
                                       "kept_noisy": guard.kept_noisy}
        data["load_average"]["after reload"] = _loadavg()
    if "control" in only and plan["control"]:
        daemons = [("circus", os.path.dirname(PYTHON))]
        if old_bin:
            daemons.append(("circus-0.19", old_bin))
        cplan = dict(plan["control"])
        if "circusctl wall time" in skipped:
            cplan["circusctl_runs"] = 0
        ctl_bindirs = {}
        if cplan.get("circusctl_runs"):
            ctl_bindirs["circus"] = envs.circus_installed_env()
        data["control"] = control.run(cplan, daemons, workdir, ctl_bindirs)
    if "stats" in only and plan.get("stats"):
        data["stats"] = daemon_costs.run_stats(plan["stats"], workdir)
    if "latency" in only and plan.get("latency"):
        data["latency"] = daemon_costs.run_latency(plan["latency"], workdir)
    if "console" in only and plan.get("console"):
        data["console"] = console.run(plan["console"], workdir)
    if "metrics" in only and plan.get("metrics"):
        data["metrics"] = daemon_costs.run_metrics(plan["metrics"], workdir)

    data["elapsed_s"] = time.monotonic() - started
    if envs.circus_tree() != tree_at_start:
        revision = envs.circus_revision()
        data["notes"].append("circus/ changed while the suite ran (git %s at the end): daemons "
                             "started later ran the newer code" % revision)
    data["load_average"]["end"] = _loadavg()
    stem = os.path.join(args.out, "%s-%s" % (stamp, args.mode))
    data["json_name"] = os.path.basename(stem) + ".json"
    data["plots"] = []
    if gunicorn_bin and not args.no_plots:
        data["plots"] = plots(data, stem, gunicorn_bin)
    with open(stem + ".json", "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    with open(stem + ".md", "w") as handle:
        handle.write(render(data))
    shutil.rmtree(workdir, ignore_errors=True)
    complete = set(only) == set(SCENARIOS) and not args.stacks
    if args.mode == "full" and complete and os.path.abspath(args.out) == DEFAULT_OUT:
        # the published directory keeps one full run; earlier ones become headlines
        archive.archive(args.out, stem)
    log("done in %.0f s: %s.md", data["elapsed_s"], stem)
    print(stem + ".md")
    return 0


def plots(data, stem, gunicorn_bin):
    """Draw with the matplotlib of the gunicorn venv; the JSON is written
    first so that the plots read exactly what the table shows."""
    data["plots"] = []
    with open(stem + ".json", "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.py")
    proc = subprocess.run([os.path.join(gunicorn_bin, "python"), script, stem + ".json", stem],
                          capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        log("plots failed: %s", proc.stderr[-2000:])
        data["notes"].append("plots failed: %s" % proc.stderr.strip().splitlines()[-1])
        return []
    return proc.stdout.split()


def _loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


def _command_line(argv):
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python benchmarks/run.py"] + args)


if __name__ == "__main__":
    sys.exit(main())
