"""Prometheus metrics: circusd's counters (circus.counters, fed by events and
commands), circusd-metrics' exposition and probes, and a real Prometheus
server scraping it every second."""
import asyncio
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from circus.controller import Controller
from circus.metrics.families import FAMILIES, PER_PROCESS, sample_names
from circus.watcher import Watcher
from support import ROOT, free_port, prometheus, tools, wait_for
from support.aio import running, until

DASHBOARD = os.path.join(ROOT, "recipes", "grafana", "dashboard.json")


# --- circusd's counters, in-process ----------------------------------------------
def counters_of(arbiter, name):
    return arbiter.metrics()["watchers"][name]


def test_counters_follow_spawns_crashes_reloads_and_stops():
    async def main():
        async with running([Watcher("web", "sleep 600", numprocesses=2)]) as arbiter:
            web = arbiter.get_watcher("web")
            snapshot = counters_of(arbiter, "web")
            assert (snapshot["wanted"], snapshot["running"], snapshot["ready"]) == (2, 2, 2)
            assert snapshot["state"] == "active" and snapshot["autostart"] is True
            assert snapshot["counters"]["spawns"] == 2
            assert snapshot["counters"]["respawns"] == 0
            victim = web.pids[0]
            os.kill(victim, signal.SIGKILL)
            await arbiter.events.wait(lambda t, m: t == "watcher.web.respawn")
            counters = counters_of(arbiter, "web")["counters"]
            assert counters["respawns"] == 1 and counters["spawns"] == 3
            assert counters["exits"] == {"signal:SIGKILL": 1}
            # a reload: its duration lands in the histogram
            await web.reload()
            counters = counters_of(arbiter, "web")["counters"]
            histogram = counters["reload_duration"]
            assert sum(histogram["counts"]) == 1 and histogram["sum"] > 0
            # asked to go: sleep dies of SIGTERM, and nothing is respawned
            await web.decr(1)
            counters = counters_of(arbiter, "web")["counters"]
            assert counters["exits"]["signal:SIGTERM"] == 3  # 2 by the reload, 1 by decr
            assert counters["respawns"] == 1
            assert counters_of(arbiter, "web")["running"] == 1
            # stopped by the flapping plugin: a give-up
            await web.stop(reason="flapping")
            assert counters_of(arbiter, "web")["counters"]["give_ups"] == {"flapping": 1}
            assert counters_of(arbiter, "web")["state"] == "stopped"
    asyncio.run(main())


def test_counters_of_failed_starts_and_give_ups(tmp_path):
    async def main():
        watchers = [Watcher("missing", str(tmp_path / "no-such-program"), max_retry=1),
                    Watcher("early", "sh -c 'exit 3'", max_retry=2)]
        async with running(watchers) as arbiter:
            for name in ("missing", "early"):
                await arbiter.events.topic("watcher.%s.max_retry" % name)
                await until(lambda n=name: arbiter.get_watcher(n).is_stopped())
            missing = counters_of(arbiter, "missing")["counters"]
            assert missing["spawn_failures"] == {"error": 2}
            assert missing["give_ups"] == {"max_retry": 1} and missing["spawns"] == 0
            early = counters_of(arbiter, "early")["counters"]
            assert early["spawn_failures"] == {"early_exit": 3}
            assert early["exits"] == {"exit:3": 3} and early["spawns"] == 3
            assert early["give_ups"] == {"max_retry": 1}
            assert early["respawns"] == 2  # the third failure gave up instead
    asyncio.run(main())


def test_pids_are_sent_only_when_they_changed():
    async def main():
        watchers = [Watcher("a", "sleep 600", numprocesses=2), Watcher("b", "sleep 600")]
        async with running(watchers) as arbiter:
            first = arbiter.metrics()["watchers"]
            assert sorted(first["a"]["pids"]) == sorted(arbiter.get_watcher("a").pids)
            known = {name: w["pids_version"] for name, w in first.items()}
            steady = arbiter.metrics(known)["watchers"]
            assert not any("pids" in w for w in steady.values())
            # a respawn changes a's set (a reap, then a spawn): a's pids come again
            os.kill(arbiter.get_watcher("a").pids[0], signal.SIGKILL)
            await arbiter.events.topic("watcher.a.respawn")
            changed = arbiter.metrics(known)["watchers"]
            assert sorted(changed["a"]["pids"]) == sorted(arbiter.get_watcher("a").pids)
            assert changed["a"]["pids_version"] != known["a"] and "pids" not in changed["b"]
            # a watcher removed and added again under its name starts a new version
            await arbiter.rm_watcher("b")
            await arbiter.add_watcher("b", "sleep 600", start=True)
            again = arbiter.metrics(known)["watchers"]["b"]
            assert again["pids"] == arbiter.get_watcher("b").pids
            assert again["pids_version"] != known["b"]
            # readiness needs no pid at all
            assert not any("pids" in w for w in arbiter.metrics(pids=False)[
                "watchers"].values())
    asyncio.run(main())


def test_a_readiness_timeout_is_a_failed_start(tmp_path):
    async def main():
        # ready = notify, and the process never says READY=1
        late = Watcher("late", "sleep 600", ready="notify", ready_timeout=0.2, max_retry=-1)
        async with running([late]) as arbiter:
            await arbiter.events.topic("watcher.late.ready_timeout")
            counters = counters_of(arbiter, "late")["counters"]
            assert counters["spawn_failures"].get("ready_timeout") == 1
    asyncio.run(main())


def test_max_age_recycles_are_counted():
    async def main():
        web = Watcher("web", "sleep 600", max_age=0.3, max_age_variance=0)
        async with running([web]) as arbiter:
            await arbiter.events.topic("watcher.web.recycle")
            await arbiter.events.wait(lambda t, m: t == "watcher.web.reap")
            counters = counters_of(arbiter, "web")["counters"]
            assert counters["recycles"] >= 1 and counters["respawns"] == 0
    asyncio.run(main())


def test_commands_are_counted_by_name_status_and_latency():
    async def main():
        async with running([Watcher("web", "sleep 600")]) as arbiter:
            controller = Controller(arbiter, None, None)
            try:
                for raw in (b'{"command": "list"}', b'{"command": "LIST"}',
                            b'{"command": "status", "properties": {"name": "nope"}}',
                            b'{"command": "made-up"}', b"not json"):
                    await controller.dispatch(raw)
            finally:
                await controller.stop()
            commands = {(c["command"], c["status"]): c["duration"]
                        for c in arbiter.metrics()["commands"]}
            assert set(commands) == {("list", "ok"), ("status", "error"),
                                     ("unknown", "error"), ("invalid", "error")}
            assert sum(commands["list", "ok"]["counts"]) == 2
            assert 0 < commands["list", "ok"]["sum"] < 1
    asyncio.run(main())


def test_metrics_snapshot_of_50_watchers_is_well_under_a_millisecond():
    async def main():
        watchers = [Watcher("w%d" % i, "sleep 600", numprocesses=2) for i in range(50)]
        async with running(watchers) as arbiter:
            await until(lambda: arbiter.numprocesses() == 100)
            for _ in range(20):
                arbiter.metrics()
            timings = []
            for _ in range(200):
                started = time.perf_counter()
                json.dumps(arbiter.metrics())  # what the reply costs, serialised
                timings.append(time.perf_counter() - started)
            assert statistics.median(timings) < 0.001, statistics.median(timings)
    asyncio.run(main())


# --- circusd-metrics, with a real circusd ----------------------------------------
def get(port, path, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def answered(port, path):
    try:
        return get(port, path)
    except OSError:
        return None


@pytest.fixture
def metrics_daemon(circusd):
    def start(config, per_process=False, wait=True):
        port = free_port()
        daemon = circusd("[circus]\nprometheus = 127.0.0.1:%d\nprometheus_per_process = %s\n"
                         % (port, per_process) + textwrap.dedent(config), start=False)
        daemon.metrics_port = port
        daemon.start(wait=wait)
        if wait:
            wait_for(lambda: (answered(port, "/healthz") or [None])[0] == 200, timeout=30,
                     message="circusd-metrics answering")
        return daemon
    return start


def samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in parse_text(text) for s in f.samples}


def value(text, name, **labels):
    return samples(text).get((name, tuple(sorted(labels.items()))))


WEB = """
[watcher:web]
cmd = sleep 600
numprocesses = 2

[socket:web]
host = 127.0.0.1
port = %d
"""


def test_exposition_is_valid_text_and_openmetrics_and_covers_every_family(metrics_daemon):
    daemon = metrics_daemon(WEB % free_port(), per_process=True)
    port = daemon.metrics_port
    status, headers, text = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in parse_text(text)}
    # counters are named without _total in a family, with it in their samples
    expected = {f.name[:-len("_total")] if f.type == "counter" else f.name for f in FAMILIES}
    assert set(families) == expected
    for spec in FAMILIES:
        name = spec.name[:-len("_total")] if spec.type == "counter" else spec.name
        assert families[name].type == spec.type, spec.name
    pids = daemon.call("list", name="web")["pids"]
    assert value(text, "circus_up") == 1
    assert value(text, "circus_build_info", version=__import__("circus").__version__) == 1
    assert value(text, "circus_daemon_state", state="active") == 1
    assert value(text, "circus_daemon_open_fds") > 5
    assert value(text, "circus_daemon_resident_memory_bytes") > 1 << 20
    assert value(text, "circus_watcher_processes_wanted", watcher="web") == 2
    assert value(text, "circus_watcher_processes_ready", watcher="web") == 2
    assert value(text, "circus_watcher_state", watcher="web", state="active") == 1
    assert value(text, "circus_watcher_spawns_total", watcher="web") == 2
    assert value(text, "circus_socket_backlog", socket="web") == 2048
    assert value(text, "circus_socket_accept_queue", socket="web") == 0
    for pid in pids:
        assert value(text, "circus_process_resident_memory_bytes", watcher="web",
                     pid=str(pid)) > 0
    assert value(text, "circus_watcher_resident_memory_bytes", watcher="web") == sum(
        value(text, "circus_process_resident_memory_bytes", watcher="web", pid=str(p))
        for p in pids)
    # the scrape's own `metrics` command is counted by the next one
    status, headers, again = get(port, "/metrics")
    assert value(again, "circus_command_duration_seconds_count", command="metrics",
                 status="ok") >= 1
    # OpenMetrics when asked, as Prometheus asks
    status, headers, om = get(port, "/metrics", {
        "Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.endswith("# EOF\n")
    assert {f.name for f in parse_openmetrics(om)} == expected


@pytest.mark.needs("promtool")
def test_promtool_accepts_the_exposition(metrics_daemon, tmp_path):
    # every family with samples: an exit, a failed start, a give-up
    daemon = metrics_daemon(WEB % free_port() + """
[watcher:broken]
cmd = %s
max_retry = 0
""" % (tmp_path / "no-such-program"), per_process=True)
    os.kill(daemon.call("list", name="web")["pids"][0], signal.SIGKILL)
    text = wait_for(lambda: (lambda t: t if "circus_watcher_exits_total{" in t and
                             "circus_watcher_give_ups_total{" in t else None)(
        get(daemon.metrics_port, "/metrics")[2]), message="exits and give-ups scraped")
    # Prometheus's own check of the text format, its lint included
    check = subprocess.run([tools.path("promtool"), "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout + check.stderr)


def test_per_process_series_are_off_by_default(metrics_daemon):
    daemon = metrics_daemon(WEB % free_port())
    text = get(daemon.metrics_port, "/metrics")[2]
    names = {s.name for f in parse_text(text) for s in f.samples}
    assert not names & set(PER_PROCESS)
    assert "circus_watcher_cpu_seconds_total" in names


def test_per_process_series_follow_a_respawn(metrics_daemon):
    daemon = metrics_daemon(WEB % free_port(), per_process=True)
    port = daemon.metrics_port

    def scraped_pids():
        text = get(port, "/metrics")[2]
        return sorted(int(labels["pid"]) for (name, items), _ in samples(text).items()
                      if name == "circus_process_resident_memory_bytes"
                      for labels in [dict(items)] if labels["watcher"] == "web")
    before = sorted(daemon.call("list", name="web")["pids"])
    assert scraped_pids() == before
    assert scraped_pids() == before  # a steady scrape: circusd sent no pid, still all there
    os.kill(before[0], signal.SIGKILL)
    wait_for(lambda: len(daemon.call("list", name="web")["pids"]) == 2 and
             sorted(daemon.call("list", name="web")["pids"]) != before,
             message="the respawn")
    after = sorted(daemon.call("list", name="web")["pids"])
    wait_for(lambda: scraped_pids() == after, message="the new pid in the scrape")


def test_grafana_dashboard_uses_only_metrics_that_exist(metrics_daemon, tmp_path):
    daemon = metrics_daemon(WEB % free_port() + """
[watcher:broken]
cmd = %s
max_retry = 0
""" % (tmp_path / "no-such-program"), per_process=True)
    # the families that show samples only once their events happened: an
    # exit (kill -9), a failed spawn and a give-up (broken)
    pid = daemon.call("list", name="web")["pids"][0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: daemon.call("status", name="broken")["status"] == "stopped",
             message="broken given up")
    every = {name for f in FAMILIES for name in sample_names(f)}

    def scraped():
        text = get(daemon.metrics_port, "/metrics")[2]
        return {s.name for f in parse_text(text) for s in f.samples}
    wait_for(lambda: scraped() == every, message="a sample of every family")
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        # metric names: identifiers starting with circus_ (labels and
        # functions are not)
        used.update(re.findall(r"\bcircus_[a-z_]+\b", expr))
    assert used and used <= every, used - every
    # every panel reads the datasource variable
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"]
               if panel.get("targets"))


def test_readme_lists_every_metric():
    with open(os.path.join(ROOT, "README.rst")) as handle:
        readme = handle.read()
    section = readme.split("\nMetrics\n=======\n", 1)[1].split("\n=====", 1)[0]
    listed = set(re.findall(r"``(circus_[a-z_]+)(?:\{[^}]*\})?``", section))
    assert listed == {f.name for f in FAMILIES}
    for spec in FAMILIES:
        for label in spec.labels:
            assert re.search(r"``%s\{[^}]*\b%s\b" % (spec.name, label), section), (spec.name,
                                                                                 label)


def test_healthz_fails_while_circusd_is_stopped_and_recovers(metrics_daemon):
    daemon = metrics_daemon(WEB % free_port())
    port = daemon.metrics_port
    status, _, body = get(port, "/healthz")
    assert status == 200 and body.startswith("ok")
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, _, body = get(port, "/healthz")
        assert status == 503 and "did not answer" in body, body
        assert time.monotonic() - started < 5  # the health timeout, 2 s
        status, _, body = get(port, "/readyz")
        assert status == 503 and "did not answer" in body, body
        # a scrape says circusd is down rather than failing
        text = get(port, "/metrics", timeout=15)[2]
        assert value(text, "circus_up") == 0
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    wait_for(lambda: get(port, "/healthz")[0] == 200, message="healthy again")


NOTIFY_WHEN_FILE = """
import os, sys, time
from circus.sdnotify import notify
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
notify("READY=1")
time.sleep(600)
"""


def test_readyz_is_503_while_a_notify_watcher_starts_and_200_once_ready(metrics_daemon,
                                                                        tmp_path):
    script = tmp_path / "late.py"
    script.write_text(NOTIFY_WHEN_FILE)
    flag = tmp_path / "go"
    daemon = metrics_daemon("""
        [watcher:late]
        cmd = %s %s %s
        ready = notify
        ready_timeout = 60
        copy_env = true
        """ % (sys.executable, script, flag), wait=False)
    port = daemon.metrics_port
    # circusd-metrics starts first: it answers while `late` is not ready
    status, _, body = wait_for(lambda: answered(port, "/readyz"), timeout=30,
                               message="circusd-metrics answering")
    assert status == 503, body
    assert "late: 0 of 1 processes ready (starting)" in body
    assert "circusd is starting" in body
    assert get(port, "/healthz")[0] == 200  # alive all the same
    flag.write_text("")
    status, _, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
        get(port, "/readyz")), timeout=20, message="/readyz 200")
    assert body.startswith("ready")
    # an incr: not ready again until the new process says READY=1... which
    # this one does at once, since the flag exists
    assert daemon.call("incr", name="late", nb=1, waiting=True)["status"] == "ok"
    assert get(port, "/readyz")[0] == 200


# --- a real Prometheus server ------------------------------------------------------
@pytest.mark.needs("prometheus")
def test_prometheus_sees_restarts_and_process_counts(metrics_daemon, tmp_path):
    daemon = metrics_daemon(WEB % free_port())
    server = prometheus.Prometheus(tmp_path, ["127.0.0.1:%d" % daemon.metrics_port])
    server.start()
    try:
        respawns = 'circus_watcher_respawns_total{watcher="web"}'
        before = wait_for(lambda: server.value(respawns) is not None and
                          [server.value(respawns)], timeout=30,
                          message="a first scrape in prometheus")[0]
        assert server.value('up{job="circus"}') == 1
        os.kill(daemon.call("list", name="web")["pids"][0], signal.SIGKILL)
        wait_for(lambda: (server.value(respawns) or 0) > before, timeout=30,
                 message="the respawn counted in prometheus")
        exits = 'circus_watcher_exits_total{watcher="web",cause="signal",code="SIGKILL"}'
        assert server.value(exits) == 1
        running = 'circus_watcher_processes_running{watcher="web"}'
        assert server.value(running) == 2
        assert daemon.call("incr", name="web", nb=3, waiting=True)["status"] == "ok"
        wait_for(lambda: server.value(running) == 5, timeout=30,
                 message="the processes gauge at 5 in prometheus")
        assert server.value('circus_watcher_processes_wanted{watcher="web"}') == 5
    finally:
        server.stop()


# --- the options ---------------------------------------------------------------------
@pytest.mark.parametrize("value, reason", [
    ("9102", "is not HOST:PORT"), (":9102", "is not HOST:PORT"),
    ("localhost:http", "the port 'http' is not a number"),
    ("127.0.0.1:70000", "between 1 and 65535"), ("::1:9102", "in brackets")])
def test_a_bad_prometheus_address_names_the_option(tmp_path, value, reason):
    from circus.arbiter import Arbiter
    from circus.errors import ConfigError
    path = tmp_path / "circus.ini"
    path.write_text("[circus]\nprometheus = %s\n[watcher:w]\ncmd = sleep 1\n" % value)
    with pytest.raises(ConfigError) as info:
        Arbiter.load_from_config(str(path))
    assert (info.value.section, info.value.option) == ("circus", "prometheus")
    assert reason in info.value.reason, info.value.reason


def test_the_prometheus_options_reach_circusd_metrics_and_a_reload_moves_it(metrics_daemon):
    daemon = metrics_daemon("[watcher:keep]\ncmd = sleep 120\n")
    first = daemon.metrics_port
    options = daemon.call("globaloptions")["options"]
    assert options["prometheus"] == "127.0.0.1:%d" % first
    assert options["prometheus_per_process"] is False
    assert daemon.call("list")["watchers"] == ["circusd-metrics", "keep"]
    [keep] = daemon.call("list", name="keep")["pids"]
    # another port and per-process series: circusd-metrics restarts there
    second = free_port()
    daemon.config_path.write_text(
        "[circus]\nendpoint = %s\npubsub_endpoint = %s\nprometheus = 127.0.0.1:%d\n"
        "prometheus_per_process = true\n[watcher:keep]\ncmd = sleep 120\n"
        % (daemon.endpoint, daemon.pubsub, second))
    reply = daemon.call("reloadconfig", waiting=True, timeout=30)
    assert reply["status"] == "ok", reply
    assert reply["changes"]["prometheus"] == "127.0.0.1:%d" % second
    text = wait_for(lambda: (answered(second, "/metrics") or [None] * 3)[2], timeout=30,
                    message="circusd-metrics on the new port")
    assert value(text, "circus_process_cpu_seconds_total", watcher="keep",
                 pid=str(keep)) is not None
    assert answered(first, "/metrics") is None
    # no prometheus any more: it goes, the other watchers stay untouched
    daemon.config_path.write_text("[circus]\nendpoint = %s\npubsub_endpoint = %s\n"
                                  "[watcher:keep]\ncmd = sleep 120\n"
                                  % (daemon.endpoint, daemon.pubsub))
    reply = daemon.call("reloadconfig", waiting=True, timeout=30)
    assert reply["status"] == "ok" and reply["changes"]["prometheus"] is None, reply
    assert daemon.call("list")["watchers"] == ["keep"]
    assert daemon.call("list", name="keep")["pids"] == [keep]
    assert answered(second, "/metrics") is None
