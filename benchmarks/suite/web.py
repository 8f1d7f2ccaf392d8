"""Web throughput and latency: every stack, same app, same worker count.

For each (app, workers) group all stacks are started side by side (each on
its own port; idle servers cost nothing measurable), warmed up, then wrk runs
against them in turn, round after round: A B C ... A B C ... so that whatever
else the machine does during the group hits every stack alike.
"""
from suite import noise, split, util, wrk
from suite.servers import Server
from suite.util import log

FIELDS = ("rps", "p50_ms", "p99_ms", "errors", "non2xx", "foreign_cpu_pct",
          "server_cpu_us_per_request")


def run(plan, stacks, workdir, gunicorn_bin, guard=None):
    groups = []
    for app in plan["apps"]:
        for workers in plan["workers"]:
            groups.append(run_group(plan, stacks, app, workers, workdir, gunicorn_bin,
                                    guard))
    return {"duration": plan["duration"], "rounds": plan["rounds"], "threads": wrk.THREADS,
            "connections": wrk.CONNECTIONS, "timeout": wrk.TIMEOUT, "groups": groups}


def measured_run(server, duration, guard):
    """One wrk run with the foreign CPU measured; repeated when the rest of
    the machine took too much of it (see suite.noise)."""
    attempt = 0
    discarded = []
    while True:
        if guard is not None:
            guard.wait_quiet()
        with noise.Meter(lambda: [server.pid] + util.descendants(server.pid)) as meter, \
                split.Sampler(server.port, lambda: [p for p in util.descendants(server.pid)
                                                    if not util.is_spawner(p)],
                              duration / 2) as sampler:
            result = wrk.run(server.port, duration)
        result["foreign_cpu_pct"] = meter.foreign_pct
        # what a request costs the server, whatever share of the CPUs it got
        result["server_cpu_us_per_request"] = (1e6 * meter.server_seconds / result["requests"]
                                               if result["requests"] else None)
        result["connections_per_process"] = sampler.counts
        if guard is None or not guard.retry(meter.foreign_pct, attempt, duration):
            result["discarded_foreign_cpu_pct"] = discarded
            return result
        log("web:   %s: others used %.0f%% of the machine, running again",
            server.stack.key, meter.foreign_pct)
        discarded.append(meter.foreign_pct)
        attempt += 1


def run_group(plan, stacks, app, workers, workdir, gunicorn_bin, guard=None):
    log("web: app %s, %d workers: %s", app, workers, ", ".join(s.key for s in stacks))
    runs = {s.key: [] for s in stacks}
    failures = {}
    with util.Services() as services:
        servers = []
        for stack in stacks:
            server = Server(stack, app, workers, workdir, gunicorn_bin=gunicorn_bin)
            services.add(server.service)
            servers.append(server.start())
        live = []
        for server in servers:
            try:
                live.append(server.wait_ready())
            except Exception as error:  # report it; measure the others
                failures[server.stack.key] = str(error).splitlines()[0]
                log("web: %s did not start: %s", server.stack.key, error)
        for server in live:
            wrk.run(server.port, plan["warmup"])
        for round_no in range(plan["rounds"]):
            for server in live:
                try:
                    result = measured_run(server, plan["duration"], guard)
                except wrk.WrkError as error:
                    failures[server.stack.key] = str(error).splitlines()[0]
                    continue
                result["round"] = round_no
                runs[server.stack.key].append(result)
                log("web:   round %d %-20s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  "
                    "errors %d  non-2xx %d  others %.0f%%  server CPU %.1f us/req  "
                    "connections %s", round_no + 1, server.stack.key, result["rps"],
                    result["p50_ms"], result["p99_ms"], result["errors"], result["non2xx"],
                    result["foreign_cpu_pct"], result["server_cpu_us_per_request"] or 0,
                    split.spelled(result["connections_per_process"]))
    rows = []
    for stack in stacks:
        row = {"key": stack.key, "label": stack.label, "kind": stack.kind,
               "runs": runs[stack.key]}
        for field in FIELDS:
            row[field] = util.summary([r[field] for r in runs[stack.key]])
        if stack.key in failures:
            row["failure"] = failures[stack.key]
        rows.append(row)
    group = {"app": app, "workers": workers, "rows": rows}
    group["ratios"] = ratios(rows)
    return group


def ratios(rows):
    """Each circus stack's requests/s over each gunicorn stack's, in this
    group: the ratio of the medians, and the range of the per-round ratios
    (round i of A against round i of B, measured back to back)."""
    out = []
    for row in rows:
        if row["kind"] != "circus" or not row["runs"]:
            continue
        for other in rows:
            if other["kind"] != "gunicorn" or not other["runs"]:
                continue
            per_round = []
            theirs = {r["round"]: r["rps"] for r in other["runs"]}
            for run in row["runs"]:
                if theirs.get(run["round"]):
                    per_round.append(run["rps"] / theirs[run["round"]])
            out.append({"circus": row["key"], "gunicorn": other["key"],
                        "ratio": row["rps"]["median"] / other["rps"]["median"],
                        "per_round": util.summary(per_round)})
    return out
