"""PNG plots of one result (JSON), drawn with matplotlib.

Run by the suite with the interpreter of benchmarks/.work/gunicorn, which has
matplotlib: python plot.py RESULT.json OUTPUT_PREFIX. Prints the names of
the files it wrote, one a line.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"circus": "#2b7bba", "gunicorn": "#e08a1e", "nginx": "#7f7f7f"}


def _title(data, text):
    return "%s\n%s, %s CPUs, %s" % (text, data["machine"]["date"], data["machine"]["cpu_count"],
                                     data["mode"])


def web(data, prefix):
    groups = data["web"]["groups"]
    fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 8.5), squeeze=False)
    for col, group in enumerate(groups):
        rows = [r for r in group["rows"] if r["runs"]]
        names = [r["key"] for r in rows]
        xs = range(len(rows))
        colors = [COLORS[r["kind"]] for r in rows]
        ax = axes[0][col]
        med = [r["rps"]["median"] for r in rows]
        err = [[m - r["rps"]["min"] for m, r in zip(med, rows)],
               [r["rps"]["max"] - m for m, r in zip(med, rows)]]
        ax.bar(xs, med, color=colors, yerr=err, capsize=3)
        ax.set_title("%s app, %d workers" % (group["app"], group["workers"]), fontsize=10)
        ax.set_ylabel("requests/s (median, min-max)")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax = axes[1][col]
        width = 0.4
        ax.bar([x - width / 2 for x in xs], [r["p50_ms"]["median"] for r in rows], width,
               color=colors, alpha=0.55, label="p50")
        ax.bar([x + width / 2 for x in xs], [r["p99_ms"]["median"] for r in rows], width,
               color=colors, label="p99")
        ax.set_yscale("log")
        ax.set_ylabel("latency ms (p50 light, p99 dark; log)")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    fig.suptitle(_title(data, "Web throughput and latency (wrk -t%d -c%d, %d x %d s)" % (
        data["web"]["threads"], data["web"]["connections"], data["web"]["rounds"],
        data["web"]["duration"])), fontsize=11)
    fig.tight_layout()
    path = prefix + "-web.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def reload(data, prefix):
    rows = [r for r in data["reload"]["rows"] if "steady" in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 5))
    phases = ("steady", "reload", "recycle")
    width = 0.27
    for i, phase in enumerate(phases):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        values = [r[phase]["p99_ms"] for r in rows]
        bars = ax.bar(xs, values, width, label=phase,
                      color=("#9ecae1", "#3182bd", "#08519c")[i])
        for bar, row in zip(bars, rows):
            bad = row[phase]["errors"] + row[phase]["non2xx"]
            if bad:
                ax.annotate("%d err" % bad, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, color="#b2182b")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["key"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("p99 latency ms")
    ax.legend()
    ax.set_title(_title(data, "p99 steady, during %d reloads, during recycling (errors marked)"
                        % data["reload"]["reloads"]), fontsize=10)
    fig.tight_layout()
    path = prefix + "-reload.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def control(data, prefix):
    control = data["control"]
    daemons = control["daemons"]
    sizes = control["sizes"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    ax = axes[0]
    for daemon, color in zip(daemons, ("#2b7bba", "#e08a1e")):
        by = control["by_daemon"][daemon]["sizes"]
        ax.plot(sizes, [by[str(s)]["start_s"] for s in sizes], "o-", color=color, label=daemon)
    ax.set_xlabel("sleep processes")
    ax.set_ylabel("seconds from start until all run")
    ax.legend()
    ax.set_title("start", fontsize=10)
    ax = axes[1]
    biggest = str(max(sizes))
    labels = ["list", "status", "stats", "respawn", "incr", "decr", "quit"]
    width = 0.38
    for i, (daemon, color) in enumerate(zip(daemons, ("#2b7bba", "#e08a1e"))):
        row = control["by_daemon"][daemon]["sizes"].get(biggest, {})

        def med(key):
            value = row.get(key)
            return value["median"] if isinstance(value, dict) else value
        values = [med("list_ms"), med("status_ms"), med("stats_ms"), med("respawn_ms"),
                  med("incr_running_ms"), med("decr_gone_ms"), row.get("quit_all_gone_ms")]
        xs = [j + (i - 0.5) * width for j in range(len(labels))]
        ax.bar(xs, [v if v else float("nan") for v in values], width, color=color,
               label=daemon)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_yscale("log")
    ax.set_ylabel("ms (median; log)")
    ax.legend()
    ax.set_title("with %s processes" % biggest, fontsize=10)
    fig.suptitle(_title(data, "Control plane"), fontsize=11)
    fig.tight_layout()
    path = prefix + "-control.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv):
    source, prefix = argv[1], argv[2]
    with open(source) as handle:
        data = json.load(handle)
    for name, draw in (("web", web), ("reload", reload), ("control", control)):
        if data.get(name):
            path = draw(data, prefix)
            if path:
                print(os.path.basename(path))


if __name__ == "__main__":
    main(sys.argv)
