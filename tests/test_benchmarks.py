"""The benchmark suite's smallest scenario runs and writes a well-formed result.

Checks the shape of the result file (sections, table headers, machine
information, numbers that parse), never the numbers themselves. Needs the
project's venv and wrk only: smoke mode installs nothing and draws no plots.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "benchmarks", "run.py")

pytestmark = pytest.mark.slow

NUMBER = re.compile(r"^-?\d+(\.\d+)?( \(-?\d+(\.\d+)?–-?\d+(\.\d+)?\))?$")


def _table(text, first_header):
    """Rows (lists of cells) of the Markdown table whose first header is given."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            assert set(lines[index + 1].replace("|", "").split()) == {"---"}, lines[index + 1]
            rows = []
            for row in lines[index + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
                assert len(rows[-1]) == len(cells), row
            return cells, rows
    raise AssertionError("no table starting with %r" % first_header)


@pytest.mark.needs("wrk", "meinheld")  # smoke mode runs circus-meinheld
def test_smoke_run_writes_a_well_formed_result(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, RUN, "--smoke", "--out", str(out)],
                          capture_output=True, text=True,
                          timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md_files = sorted(out.glob("*-smoke.md"))
    assert len(md_files) == 1, list(out.iterdir())
    assert proc.stdout.strip() == str(md_files[0])
    assert re.match(r"\d{4}-\d{2}-\d{2}-\d{4}-smoke\.md$", md_files[0].name)
    text = md_files[0].read_text()

    for section in ("# circus benchmarks:", "## Machine", "## Notes", "## Targets",
                    "## Web throughput and latency", "### hello app, 2 workers",
                    "## Control plane at scale", "## Command latency inside circusd",
                    "## circusd-stats overhead", "## Web console",
                    "## Prometheus scrape cost"):
        assert section in text, section

    headers, rows = _table(text, "item")
    machine = {row[0]: row[1] for row in rows}
    for key in ("date", "cpu", "cpu_count", "python", "circus", "pyzmq", "wrk"):
        assert machine.get(key) not in (None, "", "n/a"), key
    assert int(machine["cpu_count"]) >= 1
    assert machine["python"].count(".") == 2

    headers, rows = _table(text, "server")
    assert headers[:6] == ["server", "requests/s", "p50 ms", "p99 ms", "errors", "non-2xx"]
    assert rows and rows[0][0].startswith("circus")
    for cell in rows[0][1:6]:
        assert NUMBER.match(cell), cell
    assert float(rows[0][1].split()[0]) > 0
    cpu = rows[0][headers.index("server CPU us/request")]
    assert NUMBER.match(cpu) and float(cpu.split()[0]) > 0, cpu

    # each round's requests/s and the spread of wrk's connections over the
    # workers: meinheld keeps them alive, so all of them are counted
    rounds = text.split("how wrk's", 1)[1]
    headers, rows = _table(rounds, "server")
    assert headers == ["server", "round 1"]
    requests, spread = re.match(r"^(\d+) \(([\d/]+)\)$", rows[0][1]).groups()
    assert int(requests) > 0
    assert len(spread.split("/")) == 2  # two workers

    headers, rows = _table(text, "measure")
    assert headers == ["measure", "circus"]
    measured = {row[0]: row[1] for row in rows}
    for label in ("start until 10 processes run (s)",
                  "`list` round trip, median, 10 processes (ms)",
                  "respawn after `kill -9`, median, 10 processes (ms)",
                  "circusd CPU, idle 1 s, 10 processes (% of one core)"):
        assert NUMBER.match(measured[label]), (label, measured.get(label))

    headers, rows = _table(text, "target")
    assert headers == ["target", "measured", "met"]
    assert all(row[2] in ("yes", "**no**", "not measured") for row in rows)

    headers, rows = _table(text, "figure")
    assert headers == ["figure", "p50", "p90", "p99", "max"]
    figures = {row[0]: row[1:] for row in rows}
    for label in ("scrape, collection (circus_scrape_duration_seconds), ms",
                  "`list` round trip, idle, ms", "`list` round trip, scraped, ms"):
        assert all(NUMBER.match(cell) for cell in figures[label]), (label, figures.get(label))

    data = json.loads((out / md_files[0].name.replace(".md", ".json")).read_text())
    assert data["mode"] == "smoke"
    run = data["web"]["groups"][0]["rows"][0]["runs"][0]
    assert run["requests"] > 0
    assert sum(run["connections_per_process"]) == data["web"]["connections"]
    # a hello-world request costs meinheld tens of microseconds, not nothing
    assert 1 < run["server_cpu_us_per_request"] < 10000
    assert data["control"]["by_daemon"]["circus"]["sizes"]["10"]["start_s"] > 0


def test_archive_keeps_the_latest_run_and_indexes_the_others(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from suite import archive
    finally:
        sys.path.pop(0)

    def result(stem, target_rows):
        table = "\n".join("| %s | %s | %s |" % row for row in target_rows)
        (tmp_path / (stem + ".md")).write_text(
            "# circus benchmarks: %s (full mode)\n\n## Machine\n\n| item | value |\n\n"
            "## Targets\n\n| target | measured | met |\n| --- | --- | --- |\n%s\n\n"
            "## Web\n\nrest\n" % (stem, table))
        (tmp_path / (stem + ".json")).write_text("{}")
        (tmp_path / (stem + "-web.png")).write_bytes(b"png")

    result("2026-01-01-1000-full", [("a", "1 s", "yes"), ("b", "n/a", "not measured")])
    result("2026-01-02-1000-full", [("a", "2 s", "**no**")])
    result("2026-01-03-1000-full", [("a", "3 s", "yes")])
    assert archive.archive(str(tmp_path), str(tmp_path / "2026-01-03-1000-full")) == [
        "2026-01-01-1000-full", "2026-01-02-1000-full"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-01-03-1000-full-web.png", "2026-01-03-1000-full.json",
        "2026-01-03-1000-full.md", "INDEX.md"]
    index = (tmp_path / "INDEX.md").read_text()
    # newest first, each with its own targets; rows never measured are left out
    assert index.index("2026-01-02-1000-full") < index.index("2026-01-01-1000-full")
    assert "| a | 2 s | **no** |" in index and "| a | 1 s | yes |" in index
    assert "not measured" not in index and "rest" not in index

    # a later run archives the kept one and keeps the earlier headlines
    result("2026-01-04-1000-full", [("a", "4 s", "yes")])
    archive.archive(str(tmp_path), str(tmp_path / "2026-01-04-1000-full"))
    index = (tmp_path / "INDEX.md").read_text()
    assert [line for line in index.splitlines() if line.startswith("## ")] == [
        "## circus benchmarks: 2026-01-03-1000-full (full mode)",
        "## circus benchmarks: 2026-01-02-1000-full (full mode)",
        "## circus benchmarks: 2026-01-01-1000-full (full mode)"]
