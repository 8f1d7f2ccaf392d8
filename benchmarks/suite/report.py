"""The Markdown result file: every figure straight from the run's data."""
from suite import split


def num(value, digits=1, unit=""):
    if value is None:
        return "n/a"
    if isinstance(value, float) and digits is not None:
        return ("%%.%df" % digits) % value + unit
    return "%s%s" % (value, unit)


def rng(summary, digits=1):
    """median (min–max) of a util.summary()."""
    if not summary or summary.get("median") is None:
        return "n/a"
    if summary["n"] == 1:
        return num(summary["median"], digits)
    return "%s (%s–%s)" % (num(summary["median"], digits), num(summary["min"], digits),
                           num(summary["max"], digits))


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(" --- " for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def _group(web, app, workers):
    for group in (web or {}).get("groups", []):
        if group["app"] == app and group["workers"] == workers:
            return group
    return None


def _row(group, key):
    for row in group["rows"]:
        if row["key"] == key:
            return row
    return {}


def _ratio(group, circus_key, gunicorn_key):
    if group is None:
        return None
    for ratio in group["ratios"]:
        if ratio["circus"] == circus_key and ratio["gunicorn"] == gunicorn_key:
            return ratio
    return None


def _control(data, daemon, size, key):
    control = data.get("control") or {}
    try:
        return control["by_daemon"][daemon]["sizes"][str(size)][key]
    except KeyError:
        return None


def _verdict(ok):
    if ok is None:
        return "not measured"
    return "yes" if ok else "**no**"


def targets(data):
    """(target, measured, met) for the targets of the other issues."""
    rows = []
    start = _control(data, "circus", 1000, "start_s")
    runs = _control(data, "circus", 1000, "start_runs_s") or []
    measured = num(start, 2, " s")
    if len(runs) > 1:
        measured += " (median of %d starts: %s)" % (len(runs),
                                                     ", ".join("%.2f" % r for r in runs))
    rows.append(("1000 `sleep` processes of one watcher all running within 1 s of circusd's "
                 "start", measured, _verdict(None if start is None else start <= 1.0)))
    control = data.get("control") or {}
    biggest = max(control.get("sizes") or [0])
    idle = _control(data, "circus", biggest, "idle_cpu_pct")
    rows.append(("idle circusd with 1000 children under 0.1% of one core",
                 "%s with %d children over %s s" % (num(idle, 3, " %"), biggest,
                                                    control.get("idle_seconds")),
                 _verdict(None if idle is None or biggest < 1000 else idle < 0.1)))
    respawn = _control(data, "circus", biggest, "respawn_ms")
    worst = respawn["max"] if respawn else None
    rows.append(("a crashed (`kill -9`) process respawned within 50 ms",
                 "median %s, worst %s (%d kills, %d processes)" % (
                     num(respawn and respawn["median"], 1, " ms"), num(worst, 1, " ms"),
                     respawn["n"] if respawn else 0, biggest),
                 _verdict(None if worst is None else worst <= 50)))
    for command in ("list", "status"):
        value = _control(data, "circus", biggest, "%s_ms" % command)
        rows.append(("`%s` round trip under 0.3 ms (client side over a persistent DEALER "
                     "socket: an upper bound of the in-daemon time)" % command,
                     "median %s with %d processes" % (num(value and value["median"], 3, " ms"),
                                                      biggest),
                     _verdict(None if not value else value["median"] < 0.3)))
    rows += _scale_targets(control.get("scale"))
    stats = _control(data, "circus", 500, "stats_ms")
    rows.append(("`stats` for 500 processes under 50 ms",
                 "median %s" % num(stats and stats["median"], 1, " ms"),
                 _verdict(None if not stats else stats["median"] < 50)))
    ctl = (control.get("by_daemon", {}).get("circus") or {}).get("circusctl_status")
    old = (control.get("by_daemon", {}).get("circus-0.19") or {}).get("circusctl_status")
    rows.append(("`circusctl status` as a whole process under 80 ms wall time (hyperfine)",
                 "median %s (Circus 0.19's circusctl: %s)" % (
                     num(ctl and ctl["median_ms"], 1, " ms"),
                     num(old and old["median_ms"], 1, " ms")),
                 _verdict(None if not ctl else ctl["median_ms"] < 80)))
    for case in (data.get("latency") or {}).get("cases", []):
        inside = case["in_daemon"]
        for command in ("list", "status"):
            value = inside.get(command)
            rows.append(("`%s` in-daemon (request in, reply out) under 0.3 ms, %d watchers, "
                         "%d processes" % (command, case["watchers"], case["processes"]),
                         "median %s, p99 %s" % (num(value and value["p50"] * 1000, 3, " ms"),
                                                num(value and value["p99"] * 1000, 3, " ms")),
                         _verdict(None if not value else value["p50"] * 1000 < 0.3)))
        if case["processes"] >= 500:
            value = inside.get("stats")
            rows.append(("`stats` in-daemon for %d processes under 50 ms" % case["processes"],
                         "median %s" % num(value and value["p50"] * 1000, 1, " ms"),
                         _verdict(None if not value else value["p50"] * 1000 < 50)))
    for processes, limit in ((500, 1.0), (1000, 2.0)):
        ours = _stats_result(data, "ours", processes)
        if not ours:
            continue
        old = _stats_result(data, "circus019", processes)
        original = _stats_result(data, "ours", processes, client="original")
        measured = "%s, read by its own clients (Circus 0.19's: %s" % (
            num(ours["circusd_stats_cpu_percent"], 2, " %"),
            num(old and old["circusd_stats_cpu_percent"], 2, " %"))
        if old and ours["circusd_stats_cpu_percent"]:
            measured += ": %.1f times as much" % (old["circusd_stats_cpu_percent"]
                                                  / ours["circusd_stats_cpu_percent"])
        measured += ")"
        if original:
            measured += "; %s read by a client of the original stream (`stat.`)" % num(
                original["circusd_stats_cpu_percent"], 2, " %")
        rows.append(("circusd-stats with %d processes under %s%% of one core, every pid "
                     "each tick" % (processes, ("%g" % limit)), measured,
                     _verdict(ours["circusd_stats_cpu_percent"] < limit
                              and ours["pids_per_tick_min"] == processes)))
    rows += metrics_targets(data.get("metrics"))
    rows += _web_targets(data.get("web"))
    reload = data.get("reload") or {}
    for row in reload.get("rows", []):
        if row["kind"] != "circus" or "steady" not in row:
            continue
        bad = sum(row[p]["errors"] + row[p]["non2xx"] for p in ("reload", "recycle"))
        rows.append(("%s: 0 errors during %d reloads and max_age recycling, keep-alive on"
                     % (row["label"], reload["reloads"]),
                     "%d errors, %d non-2xx (reload); %d errors, %d non-2xx (recycle)" % (
                         row["reload"]["errors"], row["reload"]["non2xx"],
                         row["recycle"]["errors"], row["recycle"]["non2xx"]),
                     _verdict(bad == 0)))
        worst = max(row["reload_p99_ratio"] or 0, row["recycle_p99_ratio"] or 0)
        rows.append(("%s: p99 during reloads and recycling no more than 2x steady" % row["label"],
                     "%.2fx (reload), %.2fx (recycle)" % (row["reload_p99_ratio"] or 0,
                                                          row["recycle_p99_ratio"] or 0),
                     _verdict(worst <= 2.0)))
    from suite import console  # it imports num and table from here
    rows += console.targets(data.get("console"))
    return rows


def metrics_targets(metrics):
    """The targets of issue 15: a scrape's cost, and circusd's latency while scraped."""
    if not metrics:
        return []
    big = metrics["processes"] >= 1000
    scrape = metrics["scrape"]
    rows = [("collecting a Prometheus scrape for 1000 processes under 50 ms",
             "median %s with %d processes (the whole HTTP scrape: %s; %d series)" % (
                 num(scrape["collect_ms"]["p50"], 1, " ms"), metrics["processes"],
                 num(scrape["wall_ms"]["p50"], 1, " ms"), scrape["series"]),
             _verdict(scrape["collect_ms"]["p50"] < 50 if big else None)),
            ("the `metrics` command in circusd well under 1 ms with %d watchers"
             % metrics["watchers"],
             "mean %s" % num(scrape["metrics_command_mean_ms"], 3, " ms"),
             _verdict(scrape["metrics_command_mean_ms"] < 1
                      if metrics["watchers"] >= 50 and scrape["metrics_command_mean_ms"]
                      is not None else None))]
    latency = metrics["latency"]
    for command in ("list", "status"):
        idle, scraped = latency["idle"][command], latency["scraped"][command]
        ratio = scraped["p50"] / idle["p50"] if idle["p50"] else None
        rows.append(("`%s` round trip unchanged while scraped every second (median "
                     "within 10%%)" % command,
                     "median %s idle, %s scraped (%sx); p99 %s and %s" % (
                         num(idle["p50"], 3, " ms"), num(scraped["p50"], 3, " ms"),
                         num(ratio, 2), num(idle["p99"], 3, " ms"),
                         num(scraped["p99"], 3, " ms")),
                     _verdict(ratio <= 1.1 if ratio is not None and big else None)))
    return rows


def metrics_section(metrics):
    scrape = metrics["scrape"]
    latency = metrics["latency"]
    headers = ["figure", "p50", "p90", "p99", "max"]
    rows = []
    for label, key in (("scrape, collection (circus_scrape_duration_seconds), ms",
                        "collect_ms"), ("scrape, whole HTTP request, ms", "wall_ms")):
        values = scrape[key]
        rows.append([label] + [num(values[k], 1) for k in ("p50", "p90", "p99", "max")])
    for phase in ("idle", "scraped"):
        for command, values in latency[phase].items():
            rows.append(["`%s` round trip, %s, ms" % (command, phase)]
                        + [num(values[k], 3) for k in ("p50", "p90", "p99", "max")])
    intro = ("benchmarks/metrics_overhead.py: circusd with %d `sleep` processes in %d "
             "watchers and one socket, `prometheus` set with per-process series on. %d "
             "scrapes one after the other: %s series, %s bytes each; the `metrics` command "
             "took %s ms in circusd on average. Then `list` and `status` every 10 ms for "
             "%s s each phase, first with nothing scraping (idle), then while %s scrapes "
             "circusd-metrics every second (scraped)." % (
                 metrics["processes"], metrics["watchers"], scrape["wall_ms"]["n"],
                 num(scrape["series"], 0), num(scrape["bytes"], 0),
                 num(scrape["metrics_command_mean_ms"], 3), num(latency["duration_s"], 0),
                 latency["scraper"]))
    return intro + "\n\n" + table(headers, rows)


def _versus(group, circus_key, other_key, strict):
    """(measured text, ok) of circus_key against other_key in a group."""
    if other_key == "nginx":
        theirs, ours = _row(group, other_key).get("rps"), _row(group, circus_key).get("rps")
        if not (theirs and ours and theirs.get("median") and ours.get("median")):
            return "n/a", None
        ratio = {"ratio": ours["median"] / theirs["median"], "per_round": None}
    else:
        ratio = _ratio(group, circus_key, other_key)
    if not ratio:
        return "n/a", None
    measured = "%.2fx requests/s" % ratio["ratio"]
    if ratio["per_round"]:
        measured += " (per-round %s)" % rng(ratio["per_round"], 2)
    cpu = [_row(group, key).get("server_cpu_us_per_request") or {}
           for key in (circus_key, other_key)]
    if all(c.get("median") for c in cpu):
        measured += "; server CPU per request %.1f against %.1f us" % (
            cpu[0]["median"], cpu[1]["median"])
    return measured, (ratio["ratio"] > 1.0 if strict else ratio["ratio"] >= 1.0)


def _web_targets(web):
    if not web:
        return []  # not run (--only without web)
    rows = []
    group = _group(web, "hello", 2)
    measured, ok = _versus(group, "circus-meinheld", "gunicorn-meinheld", False)
    ceiling, _ = _versus(group, "circus-meinheld", "nginx", False)
    if ceiling != "n/a":
        measured += "; against nginx returning a fixed body (the ceiling): " + ceiling
    rows.append(("hello world, 2 workers, wrk -t2 -c50: built-in worker (meinheld) at least "
                 "matches gunicorn's meinheld worker", measured, _verdict(ok)))
    # the default backend: never behind gunicorn sync, and ahead on hello
    for app, workers in (("hello", 2), ("hello", 4), ("work", 2), ("work", 4)):
        group = _group(web, app, workers)
        if group is None and (app, workers) != ("hello", 2):
            continue
        strict = app == "hello"
        measured, ok = _versus(group, "circus-waitress", "gunicorn-sync", strict)
        rows.append(("%s app, %d workers, wrk -t2 -c50: built-in worker, default backend "
                     "(waitress), %s gunicorn sync" % (app, workers, "beats" if strict else
                                                       "at least even with"),
                     measured, _verdict(ok)))
    return rows


def _scale_targets(scale):
    """The targets of the run with the most processes (10,000)."""
    if not scale:
        return []
    size = scale["processes"]
    failed = scale.get("failure")

    def row(target, key, measured, ok):
        if key not in scale:
            return (target, "stopped: %s" % failed if failed else "n/a",
                    _verdict(False if failed else None))
        return (target, measured, _verdict(ok))
    start = scale.get("start_s")
    polled = scale.get("list_during_start_ms") or {}
    stats = scale.get("stats_ms") or {}
    idle = scale.get("idle_cpu_pct")
    gone = scale.get("quit_all_gone_ms")
    return [
        row("%d `sleep` processes of one watcher all running within 10 s of circusd's start"
            % size, "start_s", num(start, 2, " s"), start is not None and start <= 10),
        row("`list` answered in under 10 ms at any moment of that start (polled all along "
            "by another process)", "list_during_start_ms",
            "max %s, p99 %s, median %s over %s calls" % (
                num(polled.get("max"), 1, " ms"), num(polled.get("p99"), 1, " ms"),
                num(polled.get("median"), 2, " ms"), polled.get("n")),
            polled.get("max") is not None and polled["max"] < 10 and not polled.get("errors")),
        row("`stats` of %d processes under 0.5 s" % size, "stats_ms",
            "median %s" % num(stats.get("median"), 0, " ms"),
            stats.get("median") is not None and stats["median"] < 500),
        row("idle circusd with %d children under 0.1%% of one core" % size, "idle_cpu_pct",
            "%s over %s s" % (num(idle, 3, " %"), scale.get("idle_seconds")),
            idle is not None and idle < 0.1),
        row("`quit` with %d processes: every child gone within 3 s" % size,
            "quit_all_gone_ms", "%s (circusd exited after %s)" % (
                num(gone and gone / 1000, 2, " s"),
                num(scale.get("quit_ms") and scale["quit_ms"] / 1000, 2, " s")),
            gone is not None and gone <= 3000),
    ]


def scale_section(scale):
    size = scale["processes"]
    polled = scale.get("list_during_start_ms") or {}
    stats = scale.get("stats_ms") or {}
    rows = [
        ("start until %d processes run" % size, num(scale.get("start_s"), 2, " s")),
        ("`list` round trips during that start", "%s calls over %s: max %s, p99 %s, median %s, "
         "%s errors" % (polled.get("n", "n/a"), num(polled.get("polled_s"), 1, " s"),
                        num(polled.get("max"), 1, " ms"), num(polled.get("p99"), 1, " ms"),
                        num(polled.get("median"), 2, " ms"), polled.get("errors", "n/a"))),
        ("`stats` round trip, median of %s" % stats.get("n", 0),
         num(stats.get("median"), 0, " ms")),
        ("circusd CPU, idle %s s" % scale.get("idle_seconds"),
         num(scale.get("idle_cpu_pct"), 3, " % of one core")),
        ("circusd RSS", num(scale.get("rss_mb"), 1, " MiB")),
        ("circusd's memory per managed process", num(scale.get("rss_per_process_kib"), 2, " KiB")
         + (" (RSS difference with the %d-process run)" % scale["rss_baseline"][0]
            if scale.get("rss_baseline") else " (RSS over processes)")),
        ("`quit`, until circusd exited", num(scale.get("quit_ms"), 0, " ms")),
        ("`quit`, until every child is gone", num(scale.get("quit_all_gone_ms"), 0, " ms")),
        ("limits of the run", "RLIMIT_NOFILE %s, RLIMIT_NPROC %s, pid_max %s, threads-max %s%s"
         % (_limit(scale.get("limits", {}).get("nofile")),
            _limit(scale.get("limits", {}).get("nproc")),
            scale.get("limits", {}).get("pid_max"), scale.get("limits", {}).get("threads_max"),
            "; raised: " + "; ".join(scale["limits_raised"]) if scale.get("limits_raised")
            else "")),
        ("circusd's process ceilings set", ", ".join("%s = %s" % item for item in
                                                      sorted(scale.get("ceilings", {}).items()))
         or "none in its options"),
    ]
    if scale.get("failure"):
        rows.append(("stopped by", scale["failure"]))
    intro = ("Our circusd alone (the comparison with Circus 0.19 stops at the sizes above), "
             "one watcher of `sleep 3600` with numprocesses = %d. From circusd's first answer until "
             "every child has exec'd `sleep`, another process calls `list` over and over "
             "on one persistent socket, 1 ms apart." % size)
    return intro + "\n\n" + table(["measure", "circus"], rows)


def _limit(pair):
    if not pair:
        return "n/a"
    return "/".join("unlimited" if v in (-1, None) or v >= 2 ** 62 else str(v) for v in pair)


def _stats_result(data, name, processes=None, client="own"):
    for result in (data.get("stats") or {}).get("results", []):
        if (result["name"] == name and result.get("client", "own") == client
                and processes in (None, result["processes"])):
            return result
    return None


def stats_section(stats):
    headers = ["daemon", "read by", "processes", "circusd-stats CPU % of one core",
               "circusd CPU %", "circusd-stats RSS MiB", "messages/s", "KiB/s",
               "pids per tick"]
    rows = []
    for r in stats["results"]:
        client = r.get("client", "own")
        reader = ("its own clients" if client == "own" else "a client of the original stream")
        rows.append(["circus" if r["name"] == "ours" else "Circus 0.19",
                     "%s (`%s`)" % (reader, r.get("topic", "stat.")), r["processes"],
                     num(r["circusd_stats_cpu_percent"], 2), num(r["circusd_cpu_percent"], 2),
                     num(r["circusd_stats_rss_mb"], 1), num(r["messages_per_s"], 0),
                     num(r.get("kbytes_per_s"), 0),
                     "%s-%s" % (r["pids_per_tick_min"], r["pids_per_tick_max"])])
    intro = ("benchmarks/stats_overhead.py: circusd runs one watcher of `sleep 3600` with "
             "`stats_endpoint` set; once the stream covers every process, a subscriber stays "
             "connected and circusd-stats' CPU time is measured over %s s. Each daemon runs "
             "its own circusd-stats; both must publish every pid each tick (last column). "
             "The subscriber reads what the daemon's own clients read: ours the batches "
             "(`batch.stat.`: circus-top, the stats client, the console), Circus 0.19's "
             "`stat.`; ours is then read the original way too (`stat.`: one message per "
             "process, what Circus 0.19's circus-top subscribes to). circusd-stats builds "
             "only what is subscribed to."
             % (stats["results"][0]["duration_s"] if stats["results"] else "?"))
    return intro + "\n\n" + table(headers, rows)


def latency_section(latency):
    headers = ["case", "command", "in-daemon p50 ms", "in-daemon p99 ms",
               "round trip p50 ms", "round trip p99 ms"]
    rows = []
    for case in latency["cases"]:
        label = "%d watchers, %d processes" % (case["watchers"], case["processes"])
        for command, inside in case["in_daemon"].items():
            outside = case["round_trip"].get(command) or {}
            rows.append([label, "`%s`" % command, num(inside["p50"] * 1000, 3),
                         num(inside["p99"] * 1000, 3),
                         num(outside.get("p50") and outside["p50"] * 1000, 3),
                         num(outside.get("p99") and outside["p99"] * 1000, 3)])
    intro = ("benchmarks/control_latency.py, %d calls per command (a tenth for `stats`): "
             "in-daemon is the time from the request frame received by circusd's controller "
             "to its reply handed to ZeroMQ (an Arbiter in the benchmark's process, timed "
             "around the controller's handler); round trip is a client in another process "
             "against a real circusd on the same configuration." % latency["repeat"])
    return intro + "\n\n" + table(headers, rows)


def machine_section(data):
    machine = data["machine"]
    rows = [("mode", data["mode"]), ("command", "`%s`" % data["command"]),
            ("suite run time", num(data.get("elapsed_s"), 0, " s"))]
    rows += [(key, "n/a" if value is None else value) for key, value in machine.items()]
    return table(["item", "value"], rows)


def web_section(web):
    out = ["Each figure is the median of %d interleaved wrk runs of %d s "
           "(`wrk -t%d -c%d -d%ds --timeout %s --latency`), the range in brackets is min–max "
           "over those runs; errors and non-2xx are totals over all runs. Ratios are this "
           "stack's requests/s over the gunicorn stack's, both measured in this group, "
           "back to back. \"Server CPU\" is the CPU time of the server's processes "
           "(master and workers) per request served: what a request costs the server, "
           "whatever share of the CPUs it got against wrk. \"Others' CPU\" is the share "
           "of the machine's CPU that processes outside the measurement (not the servers, "
           "not wrk) used during the runs."
           % (web["rounds"], web["duration"], web["threads"],
                              web["connections"], web["duration"], web["timeout"])]
    guard = web.get("noise")
    if guard:
        out.append("A run during which other processes used more than %.0f%% of the machine "
                   "was thrown away and run again (at most twice, within %d s in all): "
                   "%d runs were repeated, %d noisy runs were kept once the budget was spent "
                   "(%.0f s spent waiting and repeating)." % (
                       guard["limit_pct"], guard["budget_s"], guard["repeated"],
                       guard["kept_noisy"], guard["spent_s"]))
    for group in web["groups"]:
        gunicorns = [r for r in group["rows"] if r["kind"] == "gunicorn" and r["runs"]]
        headers = ["server", "requests/s", "p50 ms", "p99 ms", "errors", "non-2xx"]
        headers += ["x %s" % r["key"] for r in gunicorns]
        headers += ["server CPU us/request", "others' CPU %"]
        rows = []
        for row in group["rows"]:
            if not row["runs"]:
                rows.append([row["label"], "failed: %s" % row.get("failure", "no run")]
                            + [""] * (len(headers) - 2))
                continue
            cells = [row["label"], rng(row["rps"], 0), rng(row["p50_ms"], 2),
                     rng(row["p99_ms"], 2), sum(r["errors"] for r in row["runs"]),
                     sum(r["non2xx"] for r in row["runs"])]
            for other in gunicorns:
                ratio = _ratio(group, row["key"], other["key"])
                cells.append("%.2f" % ratio["ratio"] if ratio else "")
            cells.append(rng(row.get("server_cpu_us_per_request"), 1))
            cells.append(rng(row.get("foreign_cpu_pct"), 0))
            rows.append(cells)
        out.append("### %s app, %d workers\n\n%s" % (group["app"], group["workers"],
                                                    table(headers, rows)))
        per_round = _rounds_and_connections(group)
        if per_round:
            out.append("Each round's requests/s, and in brackets how wrk's %d connections "
                       "were spread over the server's processes (counted halfway through "
                       "the run):\n\n%s" % (web["connections"], per_round))
    return "\n\n".join(out)


def _rounds_and_connections(group):
    measured = [row for row in group["rows"] if row["runs"]]
    if not any("connections_per_process" in run for row in measured for run in row["runs"]):
        return None
    rounds = max(run["round"] for row in measured for run in row["runs"]) + 1
    rows = []
    for row in measured:
        cells = [row["label"]] + [""] * rounds
        for run in row["runs"]:
            cells[run["round"] + 1] = "%.0f (%s)" % (
                run["rps"], split.spelled(run.get("connections_per_process")))
        rows.append(cells)
    return table(["server"] + ["round %d" % (n + 1) for n in range(rounds)], rows)


def reload_section(reload):
    out = ["App `%s`, %d workers. Steady: wrk for %d s; then the same load for %d s with %d "
           "reloads evenly spaced (circus: `reload` with waiting=true; gunicorn: `kill -HUP`), "
           "then %d s of recycling on a fresh start (circus: max_age = %s, max_age_variance = "
           "%s; gunicorn: --max-requests %d --max-requests-jitter %d). wrk keeps its "
           "connections alive. Errors are wrk's socket errors (connect/read/write/timeout); "
           "workers seen counts every worker pid seen during the phase." % (
               reload["app"], reload["workers"], reload["steady_duration"],
               reload["load_duration"], reload["reloads"], reload["load_duration"],
               reload["max_age"], reload["max_age_variance"],
               reload["gunicorn_recycle"]["max-requests"],
               reload["gunicorn_recycle"]["max-requests-jitter"])]
    guard = reload.get("noise")
    if guard:
        out.append("A run (steady, reloads or recycling) during which other processes used "
                   "more than %.0f%% of the machine was run again (at most twice, within %d s in all): %d repeated, "
                   "%d noisy ones kept." % (guard["limit_pct"], guard["budget_s"],
                                            guard["repeated"], guard["kept_noisy"]))
    headers = ["server", "phase", "requests/s", "p50 ms", "p99 ms", "p99 / steady",
               "errors (c/r/w/t)", "non-2xx", "workers seen", "reload took ms",
               "others' CPU %"]
    rows = []
    for row in reload["rows"]:
        if "steady" not in row:
            rows.append([row["label"], "failed: %s" % row.get("failure")] + [""] * 9)
            continue
        for phase in ("steady", "reload", "recycle"):
            result = row[phase]
            errors = "%d (%d/%d/%d/%d)" % (result["errors"], result["errors_connect"],
                                           result["errors_read"], result["errors_write"],
                                           result["errors_timeout"])
            ratio = row.get("%s_p99_ratio" % phase)
            took = ""
            if phase == "reload":
                took = ", ".join("%.0f" % t for t in row["reload_ms"])
            seen = row.get("%s_workers_seen" % phase, "")
            if phase == "recycle" and seen != "" and seen <= reload["workers"]:
                seen = "%d: none replaced" % seen
            rows.append([row["label"], phase, num(result["rps"], 0), num(result["p50_ms"], 2),
                         num(result["p99_ms"], 2), "" if ratio is None else "%.2f" % ratio,
                         errors, result["non2xx"], seen, took,
                         num(result.get("foreign_cpu_pct"), 0)])
    out.append(table(headers, rows))
    return "\n\n".join(out)


def control_section(control):
    daemons = control["daemons"]
    both = len(daemons) == 2
    headers = ["measure"] + daemons + (["%s / %s" % (daemons[1], daemons[0])] if both else [])
    rows = []

    def add(label, values, digits, unit="", lower_is_better=True):
        cells = [num(v, digits) if not isinstance(v, str) else v for v in values]
        if both:
            a, b = values
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
                cells.append("%.1f" % (b / a))
            else:
                cells.append("")
        rows.append([label + (" (%s)" % unit if unit else "")] + cells)

    def get(daemon, size, key, field=None):
        value = control["by_daemon"].get(daemon, {}).get("sizes", {}).get(str(size), {}).get(key)
        if field and isinstance(value, dict):
            return value.get(field)
        return value

    sizes = control["sizes"]
    biggest = max(sizes)
    for size in sizes:
        count = len(get(daemons[0], size, "start_runs_s") or [])
        add("start until %d processes run%s" % (size, ", median of %d" % count
                                                 if count > 1 else ""),
            [get(d, size, "start_s") for d in daemons], 3, "s")
    for size in sizes:
        for command in ("list", "status", "stats"):
            if all(get(d, size, "%s_ms" % command) is None for d in daemons):
                continue
            add("`%s` round trip, median, %d processes" % (command, size),
                [get(d, size, "%s_ms" % command, "median") for d in daemons],
                3 if command != "stats" else 1, "ms")
    add("respawn after `kill -9`, median, %d processes" % biggest,
        [get(d, biggest, "respawn_ms", "median") for d in daemons], 1, "ms")
    add("respawn after `kill -9`, worst", [get(d, biggest, "respawn_ms", "max")
                                           for d in daemons], 1, "ms")
    add("circusd CPU, idle %s s, %d processes" % (control["idle_seconds"], biggest),
        [get(d, biggest, "idle_cpu_pct") for d in daemons], 3, "% of one core")
    add("circusd RSS, %d processes" % biggest, [get(d, biggest, "rss_mb") for d in daemons],
        1, "MiB")
    scale = get(daemons[0], biggest, "scale_by")
    for key, text in (("incr_reply_ms", "`incr` by %s, reply (waiting)"),
                      ("incr_running_ms", "`incr` by %s, until all run"),
                      ("decr_reply_ms", "`decr` by %s, reply (waiting)"),
                      ("decr_gone_ms", "`decr` by %s, until all gone")):
        add(text % scale, [get(d, biggest, key, "median") for d in daemons], 1, "ms")
    add("`quit` with %d processes, until circusd exited" % biggest,
        [get(d, biggest, "quit_ms") for d in daemons], 1, "ms")
    add("`quit` with %d processes, until every child is gone" % biggest,
        [get(d, biggest, "quit_all_gone_ms") for d in daemons], 1, "ms")
    ctl = [(control["by_daemon"].get(d) or {}).get("circusctl_status") for d in daemons]
    add("`circusctl status`, whole process (hyperfine median; both installed with pip, "
        "not editable)",
        [c["median_ms"] if c else None for c in ctl], 1, "ms")
    intro = ("Both daemons run the same ini file (one watcher, `cmd = sleep 3600`, "
             "numprocesses = N) from their own virtualenv and are driven by the same raw "
             "ZeroMQ DEALER client (one JSON frame out, one back), so these figures compare "
             "the daemons. Start time runs from the exec of circusd until N children have "
             "exec'd `sleep`. Command round trips are medians over repeated calls on one "
             "persistent socket. The last column is how many times larger the second "
             "daemon's figure is.")
    return intro + "\n\n" + table(headers, rows)


def render(data):
    parts = ["# circus benchmarks: %s (%s mode)" % (data["machine"]["date"], data["mode"])]
    parts.append(
        "Written by `%s`; every figure below comes from that run and nothing was edited by "
        "hand. Raw data: `%s`. How to read it: benchmarks/README." % (
            data["command"], data["json_name"]))
    parts.append("## Machine\n\n" + machine_section(data))
    notes = list(data.get("notes", []))
    notes.append("wrk runs on the same machine as the servers with %d threads; on %d CPUs the "
                 "load generator and the servers share the cores, so absolute requests/s are "
                 "those of this machine and the ratios are what carries over."
                 % (2, data["machine"]["cpu_count"]))
    notes.append("load average (1, 5, 15 min) of the machine: %s" % "; ".join(
        "%s %s" % (when, value) for when, value in data.get("load_average", {}).items()))
    for scenario, reason in data.get("skipped", {}).items():
        notes.append("%s: not measured: %s" % (scenario, reason))
    parts.append("## Notes\n\n" + "\n".join("- " + n for n in notes))
    parts.append("## Targets\n\n" + table(["target", "measured", "met"], targets(data)))
    if data.get("web"):
        parts.append("## Web throughput and latency\n\n" + web_section(data["web"]))
    if data.get("reload"):
        parts.append("## Reloads and recycling under load\n\n" + reload_section(data["reload"]))
    if data.get("control"):
        parts.append("## Control plane at scale\n\n" + control_section(data["control"]))
        if data["control"].get("scale"):
            parts.append("### %d processes\n\n" % data["control"]["scale"]["processes"]
                         + scale_section(data["control"]["scale"]))
    if data.get("latency"):
        parts.append("## Command latency inside circusd\n\n" + latency_section(data["latency"]))
    if data.get("stats"):
        parts.append("## circusd-stats overhead\n\n" + stats_section(data["stats"]))
    if data.get("console"):
        from suite import console
        parts.append("## Web console\n\n" + console.section(data["console"]))
    if data.get("metrics"):
        parts.append("## Prometheus scrape cost\n\n" + metrics_section(data["metrics"]))
    if data.get("plots"):
        parts.append("## Plots\n\n" + "\n".join("![%s](%s)" % (p, p) for p in data["plots"]))
    return "\n\n".join(parts) + "\n"
