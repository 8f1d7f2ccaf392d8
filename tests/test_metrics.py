"""circusd's counters (circus.counters, fed by events and commands)."""
import asyncio
import json
import os
import signal
import statistics
import time

from circus.controller import Controller
from circus.watcher import Watcher
from support.aio import running, until


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
