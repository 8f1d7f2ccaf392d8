"""Many processes in one watcher: the spawn loop leaves circusd's loop its
turns, wids stay the smallest free ones, a crash storm is replaced once and
in full, a mass stop signals everything before it waits.

In-process arbiter, real `sleep` children.
"""
import asyncio
import os
import signal
import subprocess
import time

from circus.watcher import Watcher, spawning
from support.aio import running, until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 180))


async def _count_turns(turns, stop):
    while not stop.is_set():
        await asyncio.sleep(0)
        turns.append(time.monotonic())


def test_spawning_many_processes_gives_the_loop_its_turns():
    async def main():
        watcher = Watcher("many", "sleep 120", numprocesses=1)
        async with running([watcher]):
            turns, stop = [], asyncio.Event()
            counter = asyncio.ensure_future(_count_turns(turns, stop))
            await asyncio.sleep(0)
            started = time.monotonic()
            await watcher.incr(299)
            spent = time.monotonic() - started
            stop.set()
            await counter
            assert len(watcher.processes) == 300
            during = [t for t in turns if started <= t <= started + spent]
            # a turn at least every SPAWN_SLICE of spawning, whatever the
            # machine's speed (slower spawns mean more pauses, not fewer)
            assert len(during) >= spent / (spawning.SPAWN_SLICE * 4), (len(during), spent)
            # and never a long stretch without one
            gaps = [b - a for a, b in zip(during, during[1:])]
            assert sorted(gaps)[len(gaps) // 2] < 0.05
    run(main())


def test_wids_stay_the_smallest_free_ones():
    async def main():
        watcher = Watcher("w", "sleep 120", numprocesses=5)
        async with running([watcher]) as arbiter:
            assert sorted(p.wid for p in watcher.processes.values()) == [1, 2, 3, 4, 5]
            by_wid = {p.wid: p.pid for p in watcher.processes.values()}
            mark = len(arbiter.events.items)
            os.kill(by_wid[2], signal.SIGKILL)
            os.kill(by_wid[4], signal.SIGKILL)
            await until(lambda: len([t for t, _ in arbiter.events.items[mark:]
                                     if t.endswith(".spawn")]) == 2,
                        message="two replacements")
            assert sorted(p.wid for p in watcher.processes.values()) == [1, 2, 3, 4, 5]
            await watcher.incr(2)
            assert sorted(p.wid for p in watcher.processes.values()) == list(range(1, 8))
            await watcher.decr(3)
            # the oldest went: wids 1, 2... are free again, and taken first
            free = set(range(1, 8)) - {p.wid for p in watcher.processes.values()}
            await watcher.incr(1)
            assert min(free) in {p.wid for p in watcher.processes.values()}
    run(main())


async def kill_every_process(watcher, arbiter):
    """SIGKILL every process of watcher once past MIN_UPTIME (deaths before
    it would count as failed starts); (the pids, the index of the events
    from then on)."""
    await until(lambda: all(p.age() > spawning.MIN_UPTIME + 0.1
                            for p in watcher.processes.values()),
                message="the processes to be past MIN_UPTIME")
    victims = list(watcher.processes)
    mark = len(arbiter.events.items)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    return victims, mark


def test_a_crash_storm_is_replaced_in_full_and_only_once():
    async def main():
        watcher = Watcher("storm", "sleep 120", numprocesses=40)
        async with running([watcher]) as arbiter:
            victims, mark = await kill_every_process(watcher, arbiter)

            def spawns():
                return [m["process_pid"] for t, m in arbiter.events.items[mark:]
                        if t == "watcher.storm.spawn"]
            await until(lambda: len(spawns()) >= 40 and len(watcher.processes) == 40,
                        timeout=30, message="40 replacements")
            # nothing more comes (the count is settled: no task left spawning)
            await until(lambda: not watcher._lock.locked() and watcher._replace_later is None,
                        message="the replacement to finish")
            assert len(spawns()) == 40 and len(watcher.processes) == 40
            assert not set(victims) & set(watcher.processes)
            assert all(not p.stopping for p in watcher.processes.values())
    run(main())


def test_a_decr_during_a_crash_storm_is_not_undone_by_its_replacement(monkeypatch):
    """The replacement of a storm carries its count from slice to slice; a
    decr meanwhile lowers what is wanted, and the count follows."""
    monkeypatch.setattr(spawning, "SPAWN_SLICE", 0.0)  # every spawn ends a slice

    async def main():
        watcher = Watcher("storm", "sleep 120", numprocesses=20)
        async with running([watcher]) as arbiter:
            _, mark = await kill_every_process(watcher, arbiter)
            await until(lambda: any(t.endswith(".respawn") for t, _ in arbiter.events.items[mark:]),
                        message="the first replacement")
            await watcher.decr(10)
            await until(lambda: watcher._replace_later is None and not watcher._lock.locked()
                        and len(watcher.live_processes()) == 10,
                        timeout=30, message="10 processes, the storm's replacement over")
            # nothing is scheduled that could spawn more
            assert len(watcher.live_processes()) == 10 == watcher.numprocesses
    run(main())


def test_a_start_of_thousands_keeps_the_heap_out_of_full_collections():
    import gc

    async def main():
        frozen = []

        async def watch_the_collector():
            while True:
                frozen.append(gc.get_freeze_count())
                await asyncio.sleep(0.005)
        watcher = Watcher("many", "sleep 120", numprocesses=1000)
        looking = asyncio.ensure_future(watch_the_collector())
        try:
            async with running([watcher]):
                assert len(watcher.processes) == 1000
                assert max(frozen) > 10000  # frozen while it spawned
                assert gc.get_freeze_count() == 0  # and thawed once done
        finally:
            looking.cancel()
    run(main())


def test_a_give_up_during_a_large_start_ends_its_spawning():
    """Processes that die at once fail their start while the batch pauses for
    the loop: once max_retry gives up, not one more is spawned."""
    async def main():
        watcher = Watcher("doomed", "false", numprocesses=300, max_retry=2)
        async with running([watcher]) as arbiter:
            await until(lambda: any(t.endswith(".max_retry") for t, _ in arbiter.events.items),
                        timeout=30, message="the give-up")
            await until(lambda: watcher.is_stopped() and not watcher._lock.locked(),
                        timeout=30, message="the watcher to be stopped")
            topics = [t for t, _ in arbiter.events.items]
            gave_up = topics.index("watcher.doomed.max_retry")
            assert "watcher.doomed.spawn" not in topics[gave_up:]
            assert topics.count("watcher.doomed.spawn") < 300
            assert not watcher.processes
    run(main())


def test_stopping_many_processes_signals_them_all_then_waits(tmp_path):
    async def main():
        watcher = Watcher("mass", "sleep 120", numprocesses=200)
        async with running([watcher]) as arbiter:
            pids = list(watcher.processes)
            mark = len(arbiter.events.items)
            assert await watcher.stop()
            topics = [t for t, _ in arbiter.events.items[mark:]]
            kills = [i for i, t in enumerate(topics) if t.endswith(".kill")]
            reaps = [i for i, t in enumerate(topics) if t.endswith(".reap")]
            assert len(kills) == len(reaps) == 200
            # every stop signal went out before the first exit was handled
            assert max(kills) < min(reaps)
            assert not any(os.path.exists("/proc/%d" % pid) and _alive(pid) for pid in pids)
            # SIGCHLD, held back while the signals went out, is let through again
            assert signal.SIGCHLD not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    run(main())


def test_a_signal_hook_runs_with_sigchld_let_through(tmp_path):
    """SIGCHLD is held during a mass stop only when no user code runs between
    the signals: a process a hook starts would inherit it blocked."""
    masks = []

    def before_signal(watcher, arbiter, hook_name, pid, signum, **kwargs):
        status = subprocess.run(["cat", "/proc/self/status"], capture_output=True,
                                text=True, check=True).stdout
        masks.append(int(next(line.split()[1] for line in status.splitlines()
                              if line.startswith("SigBlk:")), 16))
        return True

    async def main():
        watcher = Watcher("hooked", "sleep 120", numprocesses=3,
                          hooks={"before_signal": before_signal})
        async with running([watcher]):
            assert await watcher.stop()
        assert len(masks) == 3
        assert not any(mask & (1 << (signal.SIGCHLD - 1)) for mask in masks), masks
    run(main())


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_stats_of_a_thousand_processes_leaves_the_collector_and_the_loop_alone(monkeypatch):
    """The stats reply's thousands of objects are built, encoded and freed
    with no collection of the cyclic garbage collector (at 10,000 processes
    its full collections took 200-300 ms), and the look at /proc gives the
    loop turns as the infos do."""
    import gc
    import json

    from circus import procstats
    from circus.commands import stats
    from circus.controller import Controller

    # smaller chunks: turns to count that the rest of the machine cannot blur
    monkeypatch.setattr(stats, "INFOS_PER_TURN", 64)
    monkeypatch.setattr(procstats, "SCAN_CHUNK", 64)

    class Router:
        def __init__(self):
            self.sent = []

        async def send_multipart(self, frames):
            self.sent.append(frames)

        def close(self, linger=None):
            pass

    async def main():
        watcher = Watcher("many", "sleep 120", numprocesses=1000)
        async with running([watcher]) as arbiter:
            controller = Controller(arbiter, None, None)
            controller.router = Router()
            try:
                request = json.dumps({"id": "s", "command": "stats"}).encode()
                await controller._handle([b"client"], request)  # command lines read
                collections = []

                def collected(phase, info):
                    if phase == "start":
                        collections.append(info["generation"])
                turns, stop = [], asyncio.Event()
                counter = asyncio.ensure_future(_count_turns(turns, stop))
                await asyncio.sleep(0)
                gc.collect()  # none due while the request is parsed
                # from the request to the reply sent and freed
                gc.callbacks.append(collected)
                try:
                    await controller._handle([b"client"], request)
                finally:
                    gc.callbacks.remove(collected)
                assert not gc.isenabled()  # until the loop's next turn
                await asyncio.sleep(0)
                assert gc.isenabled()
                stop.set()
                await counter
            finally:
                await controller.stop()
            assert collections == []
            reply = json.loads(controller.router.sent[-1][-1])
            infos = reply["infos"]["many"]
            assert len(infos) == 1000 and all(isinstance(i, dict) for i in infos.values())
            # a turn after every 64 processes looked at (ours at least), then
            # every 64 described
            assert len(turns) >= 2 * (1000 // 64) - 2
    run(main())
