"""The console scenario: benchmarks/console_load.py (it can be run by hand,
see its docstring), its figures kept as it writes them, its target rows
and its section of the result file."""
from suite.daemon_costs import _run
from suite.report import num, table

# the log tail's measure: circusd's memory while a process writes this fast
FLOOD_MB = 50
FLOOD_RSS_MB = 16


def run(plan, workdir):
    return _run("console_load.py", ["--watchers", plan["watchers"], "--processes",
                                    plan["processes"], "--clients", plan["clients"],
                                    "--duration", plan["duration"], "--requests",
                                    plan["requests"], "--flood-mb", plan.get("flood_mb", 0)],
                workdir, "console", timeout=900)


def _verdict(ok):
    if ok is None:
        return "not measured"
    return "yes" if ok else "**no**"


def targets(console):
    if not console:
        return []
    rows = []
    page = console["pages"]["overview_html"]
    full = console["watchers"] >= 50 and console["processes"] >= 1000
    rows.append(("web console: the overview of 50 watchers and 1000 processes served in "
                 "under 200 ms",
                 "median %s, p95 %s, max %s (%d watchers, %d processes, %d requests)" % (
                     num(page["median"], 1, " ms"), num(page["p95"], 1, " ms"),
                     num(page["max"], 1, " ms"), console["watchers"], console["processes"],
                     page["n"]),
                 _verdict(page["p95"] < 200 if full else None)))
    streaming = console["streaming"]
    many = console["clients"] >= 20
    rows.append(("web console: %d browsers on live streams cost the console under 5%% of one "
                 "core" % console["clients"],
                 "%s with the streams (%s without: %s for the streams)" % (
                     num(streaming["console_cpu_percent"], 2, " %"),
                     num(console["idle"]["console_cpu_percent"], 2, " %"),
                     num(console["console_cost_percent"], 2, " %")),
                 _verdict(streaming["console_cpu_percent"] < 5 if many else None)))
    rows.append(("web console: the live streams add nothing measurable to circusd (under "
                 "0.5% of one core)",
                 "circusd %s with the streams, %s without" % (
                     num(streaming["circusd_cpu_percent"], 2, " %"),
                     num(console["idle"]["circusd_cpu_percent"], 2, " %")),
                 _verdict(console["circusd_cost_percent"] < 0.5 if many else None)))
    flood = console.get("flood")
    if flood:
        full = flood["target_mb_s"] >= FLOOD_MB and flood["seconds"] >= 5
        rows.append(("web console: circusd's RSS grows under %d MB with a %d MB/s writer and "
                     "its log tail open" % (FLOOD_RSS_MB, FLOOD_MB),
                     "%s (the writer kept %s for %s s; the console %s)" % (
                         num(flood["circusd_rss_growth_mb"], 2, " MB"),
                         num(flood["rate_mb_s"], 1, " MB/s"), num(flood["seconds"], 1),
                         num(flood["console_rss_growth_mb"], 2, " MB")),
                     # the writer must have kept its pace: a circusd holding it back
                     # would have been spared the test
                     _verdict(flood["circusd_rss_growth_mb"] < FLOOD_RSS_MB
                              and flood["rate_mb_s"] >= 0.9 * FLOOD_MB if full else None)))
    return rows


def section(console):
    pages = console["pages"]
    headers = ["measure", "value"]
    rows = [
        ["overview HTML, new connection each, median / p95 / max ms",
         "%s / %s / %s (%d bytes)" % (num(pages["overview_html"]["median"], 1),
                                       num(pages["overview_html"]["p95"], 1),
                                       num(pages["overview_html"]["max"], 1),
                                       pages["overview_html"]["bytes"])],
        ["overview JSON (/api/e/ID/watchers), median / p95 / max ms",
         "%s / %s / %s (%d bytes)" % (num(pages["overview_json"]["median"], 1),
                                       num(pages["overview_json"]["p95"], 1),
                                       num(pages["overview_json"]["max"], 1),
                                       pages["overview_json"]["bytes"])],
        ["console CPU % of one core, no stream", num(console["idle"]["console_cpu_percent"], 2)],
        ["console CPU %% of one core, %d streams" % console["clients"],
         num(console["streaming"]["console_cpu_percent"], 2)],
        ["circusd CPU % of one core, no stream", num(console["idle"]["circusd_cpu_percent"], 2)],
        ["circusd CPU %% of one core, %d streams" % console["clients"],
         num(console["streaming"]["circusd_cpu_percent"], 2)],
        ["events per stream per second (median)", num(console["events_per_client_per_s"], 2)],
        ["streams open", str(console["streams_open"])],
        ["console RSS MiB", num(console["console_rss_mb"], 1)],
    ]
    flood = console.get("flood")
    if flood:
        rows += [
            ["log tail: the writer's rate, MB/s (asked: %s)" % num(flood["target_mb_s"], 0),
             num(flood["rate_mb_s"], 2)],
            ["log tail: circusd RSS MiB before the flood / growth",
             "%s / %s" % (num(flood["circusd_rss_mb"], 1),
                          num(flood["circusd_rss_growth_mb"], 2))],
            ["log tail: console RSS growth MiB", num(flood["console_rss_growth_mb"], 2)],
            ["log tail: circusd / console CPU % of one core",
             "%s / %s" % (num(flood["circusd_cpu_percent"], 1),
                          num(flood["console_cpu_percent"], 1))],
            ["log tail: output events per second, kB/s to the page",
             "%s, %s" % (num(flood["output_events_per_s"], 2), num(flood["page_kb_per_s"], 1))],
        ]
    intro = ("benchmarks/console_load.py: circusd runs %d watchers of `sleep 3600` (%d "
             "processes) with circusd-stats; circushttpd follows it. Pages are fetched on a "
             "new connection each; CPU is measured over %s s without a browser, then with %d "
             "event streams open on the overview (each read like a browser)."
             % (console["watchers"], console["processes"], console["idle"]["seconds"],
                console["clients"]))
    if flood:
        intro += (" Then a process writing %s MB/s of 100-byte lines starts and one page "
                  "shows its log tail for %s s; memory is sampled every half second, its "
                  "growth counted from before the flood started."
                  % (num(flood["target_mb_s"], 0), num(flood["seconds"], 1)))
    return intro + "\n\n" + table(headers, rows)
