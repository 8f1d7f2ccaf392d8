"""The watcher and process state machines, without forking anything: the
transition tables edge by edge, and the watcher's operations walking their
states over fake processes that a fake kernel "runs" on the test's loop."""
import asyncio
import itertools
import signal
import time
import types

import pytest

from circus.errors import IllegalTransition
from circus.process import UNEXISTING, Process
from circus.states import PROCESS_TRANSITIONS, WATCHER_TRANSITIONS, ProcessState, WatcherState
from circus.watcher import Watcher, spawning  # spawning: where Watcher finds Process

W = WatcherState
P = ProcessState

# the lifecycle as the watcher really has it, written out independently of
# the table so that a changed table is a changed test
WATCHER_EDGES = {
    (W.STOPPED, W.STARTING),   # start
    (W.STOPPED, W.CLOSED),     # close (rm, replaced by reloadconfig)
    (W.STARTING, W.ACTIVE),    # every first process ready
    (W.STARTING, W.STOPPING),  # max_retry while starting
    (W.ACTIVE, W.STOPPING),    # stop, max_retry
    (W.STOPPING, W.STOPPED),   # every process gone
    (W.STOPPING, W.ACTIVE),    # a hook kept a process: the stop is refused
}
PROCESS_EDGES = {
    (P.CREATED, P.STARTING),   # spawned
    (P.STARTING, P.READY),     # READY=1 or ready_delay
    (P.STARTING, P.STOPPING),  # stopped before ready, or readiness timed out
    (P.STARTING, P.EXITED),    # died before ready
    (P.READY, P.STOPPING),
    (P.READY, P.EXITED),       # died
    (P.STOPPING, P.EXITED),
    (P.STOPPING, P.STARTING),  # stop signal vetoed before it was ready
    (P.STOPPING, P.READY),     # stop signal vetoed
}


def all_pairs(states):
    return list(itertools.product(states, states))


def test_the_tables_are_the_lifecycles():
    assert {(a, b) for a, nexts in WATCHER_TRANSITIONS.items() for b in nexts} == WATCHER_EDGES
    assert {(a, b) for a, nexts in PROCESS_TRANSITIONS.items() for b in nexts} == PROCESS_EDGES
    assert set(WATCHER_TRANSITIONS) == set(W) and set(PROCESS_TRANSITIONS) == set(P)


def test_wire_values_are_the_strings_clients_read():
    assert [s.value for s in W] == ["stopped", "starting", "active", "stopping", "closed"]
    assert W.ACTIVE == "active" and "%s" % W.STOPPING == "stopping"
    import json
    assert json.dumps({"status": W.STARTING}) == '{"status": "starting"}'


@pytest.mark.parametrize("old,new", all_pairs(W))
def test_watcher_set_state_takes_legal_edges_and_refuses_the_others(old, new):
    watcher = Watcher("edges", "true")
    published = []
    watcher._publish = lambda topic, msg: published.append((topic, msg))
    watcher._state = old  # put it where the edge begins
    if (old, new) in WATCHER_EDGES:
        watcher._set_state(new, reason="why")
        assert watcher.state is new and watcher.status == new.value
        expected = {(W.STARTING, W.ACTIVE): [("watcher.edges.start", {})],
                    (W.STOPPING, W.STOPPED): [("watcher.edges.stop", {"reason": "why"})]}
        assert [(t, {k: v for k, v in m.items() if k != "time"}) for t, m in published] == \
            expected.get((old, new), [])
    else:
        with pytest.raises(IllegalTransition, match="watcher edges: no transition from %s to %s"
                           % (old, new)):
            watcher._set_state(new)
        assert watcher.state is old and not published


@pytest.mark.parametrize("old,new", all_pairs(P))
def test_process_set_state_takes_legal_edges_and_refuses_the_others(old, new):
    process = Process(1, "true", spawn=False)
    process._state = old
    if (old, new) in PROCESS_EDGES:
        process._set_state(new)
        assert process.state is new
    else:
        with pytest.raises(IllegalTransition):
            process._set_state(new)
        assert process.state is old


def test_watcher_predicates_follow_the_state():
    watcher = Watcher("p", "true")
    expected = {W.STOPPED: "is_stopped", W.STARTING: "is_starting", W.ACTIVE: "is_active",
                W.STOPPING: "is_stopping", W.CLOSED: "is_closed"}
    for state, predicate in expected.items():
        watcher._state = state
        assert [p for p in expected.values() if getattr(watcher, p)()] == [predicate]
        assert watcher.is_running() == (state in (W.STARTING, W.ACTIVE))


# --- a fake kernel: processes that fork nothing --------------------------------

class Kernel:
    """Runs fake processes: pids that are no process of this machine, and
    signals answered by exits through the watcher's reaper callback."""

    def __init__(self, loop):
        self.loop = loop
        self.pids = itertools.count(4_000_000_000)
        self.owners = {}
        self.signals = []
        self.deaf = False          # SIGTERM ignored: only SIGKILL ends a process
        self.crash_code = None     # every process exits at once with this code
        self.spawns_in_flight = 0  # the reaper's, kept by the watcher

    def check_soon(self, pids):
        pass  # fake processes exit only through exit()

    # the reaper's interface
    def watch(self, pid, callback):
        self.owners[pid] = callback
        if self.crash_code is not None:
            self.loop.call_soon(self.exit, pid, self.crash_code << 8)

    def exit(self, pid, wait_status):
        callback = self.owners.pop(pid, None)
        if callback is not None:
            callback(pid, wait_status)

    def kill(self, pid, signum):
        self.signals.append((pid, signum))
        if signum == signal.SIGKILL or (signum == signal.SIGTERM and not self.deaf):
            self.loop.call_soon(self.exit, pid, signum)  # a wait status for "killed by signum"

    def process_class(self):
        kernel = self

        class FakeProcess(Process):
            def begin_spawn(self):
                pass

            def finish_spawn(self):
                self._popen = types.SimpleNamespace(pid=next(kernel.pids), returncode=None)
                self.started = time.time()
                self._set_state(ProcessState.STARTING)
                return self._popen

            def send_signal(self, signum):
                if self.alive:
                    kernel.kill(self.pid, signum)
        return FakeProcess


class Recorder:
    """Every state a watcher takes, and every event it publishes."""

    def __init__(self, watcher):
        self.states = []
        self.events = []
        write = watcher._set_state

        def spy(new, **details):
            write(new, **details)
            self.states.append(new)
        watcher._set_state = spy
        watcher._publish = lambda topic, msg: self.events.append(
            (topic.rsplit(".", 1)[1], {k: v for k, v in msg.items() if k != "time"}))

    def topics(self):
        return [t for t, _ in self.events]

    def take(self):
        states, self.states = self.states, []
        return states


@pytest.fixture
def fake(monkeypatch, caplog):
    """fake(watcher) -> (kernel, recorder): the watcher attached to the
    running loop, its processes fake ones. An illegal transition in a
    callback or a background task (logged, not raised) fails the test."""
    def attach(watcher):
        loop = asyncio.get_running_loop()
        kernel = Kernel(loop)
        monkeypatch.setattr(spawning, "Process", kernel.process_class())
        watcher.attach(loop, kernel)
        return kernel, Recorder(watcher)
    yield attach
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is not None]
    assert not failures, [r.getMessage() for r in failures]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def until(predicate):
    while not predicate():
        await asyncio.sleep(0)


def test_start_stop_restart_reload_walk_their_states(fake):
    async def main():
        watcher = Watcher("w", "fake", numprocesses=2, graceful_timeout=5)
        kernel, seen = fake(watcher)
        assert await watcher.start() is True
        assert seen.take() == [W.STARTING, W.ACTIVE]
        assert seen.topics() == ["spawn", "ready", "spawn", "ready", "start"]
        assert [p.state for p in watcher.processes.values()] == [P.READY, P.READY]

        await watcher.reload()  # the watcher stays active; only processes change
        assert seen.take() == [] and watcher.is_active() and len(watcher.processes) == 2
        assert seen.topics()[-1] == "reload"

        assert await watcher.restart() is True
        assert seen.take() == [W.STOPPING, W.STOPPED, W.STARTING, W.ACTIVE]

        processes = list(watcher.processes.values())
        assert await watcher.stop() is True
        assert seen.take() == [W.STOPPING, W.STOPPED]
        assert [p.state for p in processes] == [P.EXITED, P.EXITED]
        assert [p.returncode for p in processes] == [-signal.SIGTERM] * 2
        assert seen.topics()[-1] == "stop" and not watcher.processes

        assert await watcher.stop() is True  # stopped already: nothing changes
        assert seen.take() == [] and seen.topics()[-1] == "already_stopped"
        await watcher.reload()  # reloading a stopped watcher starts it
        assert seen.take() == [W.STARTING, W.ACTIVE]
        await watcher.close()
        assert seen.take() == [W.STOPPING, W.STOPPED, W.CLOSED]
    run(main())


def test_starting_lasts_until_the_first_processes_are_ready(fake):
    async def main():
        watcher = Watcher("web", "fake", numprocesses=2, ready="notify", ready_timeout=5)
        kernel, seen = fake(watcher)
        start = asyncio.ensure_future(watcher.start())
        await until(lambda: len(watcher.processes) == 2)
        assert watcher.status == "starting" and seen.take() == [W.STARTING]
        first, second = watcher.pids
        watcher.process_ready(first)
        await asyncio.sleep(0)
        assert watcher.is_starting() and watcher.processes[first].state is P.READY
        assert watcher.processes[second].state is P.STARTING
        watcher.process_ready(second)
        assert await start is True
        assert seen.take() == [W.ACTIVE]
        assert seen.topics() == ["spawn", "spawn", "ready", "ready", "start"]
        watcher.process_ready(second)  # said twice: no news, no event
        assert seen.topics().count("ready") == 2
        await watcher.close()
    run(main())


def test_stopping_lasts_until_every_process_is_gone(fake):
    async def main():
        watcher = Watcher("deaf", "fake", graceful_timeout=0.2)
        kernel, seen = fake(watcher)
        kernel.deaf = True
        await watcher.start()
        process = next(iter(watcher.processes.values()))
        seen.take()
        stop = asyncio.ensure_future(watcher.stop())
        await until(lambda: kernel.signals)
        assert watcher.status == "stopping" and process.state is P.STOPPING
        assert await stop is True
        assert seen.take() == [W.STOPPING, W.STOPPED]
        assert [s for _, s in kernel.signals] == [signal.SIGTERM, signal.SIGKILL]
        assert process.state is P.EXITED and process.returncode == -signal.SIGKILL
    run(main())


def test_give_up_after_max_retry_walks_through_stopping(fake):
    async def main():
        watcher = Watcher("crasher", "fake", max_retry=2)
        kernel, seen = fake(watcher)
        kernel.crash_code = 3
        await watcher.start()  # ready at spawn: started, then crashes
        await until(watcher.is_stopped)
        assert seen.take() == [W.STARTING, W.ACTIVE, W.STOPPING, W.STOPPED]
        assert seen.topics().count("spawn") == 3  # the start and 2 retries
        stop = [m for t, m in seen.events if t == "stop"]
        assert len(stop) == 1 and "gave up after 2 retries" in stop[0]["reason"]
        assert seen.topics().index("max_retry") < seen.topics().index("stop")
        # started again: failures forgotten, the same walk
        kernel.crash_code = None
        assert await watcher.start() is True
        assert seen.take() == [W.STARTING, W.ACTIVE] and watcher._gave_up is None
        await watcher.close()
    run(main())


def test_give_up_while_starting_never_gets_active(fake):
    async def main():
        watcher = Watcher("nospawn", "fake", max_retry=1,
                          hooks={"before_spawn": lambda **kw: False})
        kernel, seen = fake(watcher)
        assert await watcher.start() is False
        await until(watcher.is_stopped)
        assert seen.take() == [W.STARTING, W.STOPPING, W.STOPPED]
        # each refused spawn is a failed start, then the give-up
        assert seen.topics() == ["spawn_failure", "spawn_failure", "max_retry", "stop"]
        assert [m["cause"] for t, m in seen.events if t == "spawn_failure"] == [
            "refused", "refused"]
        assert "before_spawn" in watcher._gave_up and not kernel.owners
    run(main())


def test_give_up_while_active_and_a_start_that_comes_first_finishes_it(fake):
    async def main():
        watcher = Watcher("w", "fake", max_retry=0)
        kernel, seen = fake(watcher)
        await watcher.start()
        seen.take()
        victim = watcher.pids[0]
        # the process dies young: with max_retry 0 the watcher gives up at once
        kernel.exit(victim, 3 << 8)
        assert watcher.is_stopping() and seen.take() == [W.STOPPING]
        # a start asked before the give-up's own stop ran: it completes the
        # stop first, then starts; the give-up does not stop it again
        assert await watcher.start() is True
        for task in watcher._tasks:  # the give-up's own stop, queued behind the start
            await task
        assert seen.take() == [W.STOPPED, W.STARTING, W.ACTIVE] and watcher.is_active()
        assert len(watcher.processes) == 1
        stop = [m for t, m in seen.events if t == "stop"]
        assert len(stop) == 1 and "gave up after 0 retries" in stop[0]["reason"]
        await watcher.close()
    run(main())


def test_refused_stops_keep_the_watcher_and_the_process_running(fake):
    veto = {"before_stop": True, "before_signal": False}

    async def main():
        watcher = Watcher("kept", "fake", hooks={
            "before_stop": lambda **kw: veto["before_stop"],
            "before_signal": lambda signum, **kw: veto["before_signal"]})
        kernel, seen = fake(watcher)
        await watcher.start()
        process = next(iter(watcher.processes.values()))
        seen.take()
        assert await watcher.stop() is False  # before_signal refused
        assert seen.take() == [W.STOPPING, W.ACTIVE]
        assert process.state is P.READY and not kernel.signals
        assert "before_signal" in watcher.refusal
        veto["before_stop"] = False
        assert await watcher.stop() is False  # before_stop refused: no state change at all
        assert seen.take() == [] and "before_stop" in watcher.refusal
        # closing ignores vetoes
        await watcher.close()
        assert seen.take() == [W.STOPPING, W.STOPPED, W.CLOSED] and process.state is P.EXITED
    run(main())


def test_a_closed_watcher_never_starts_again(fake):
    async def main():
        watcher = Watcher("gone", "fake", graceful_timeout=5)
        kernel, seen = fake(watcher)
        await watcher.start()
        # a start that waits for the lock while the watcher is being removed
        closing = asyncio.ensure_future(watcher.close())
        await asyncio.sleep(0)
        late = asyncio.ensure_future(watcher.start())
        await closing
        assert await late is False
        assert watcher.status == "closed" and not watcher.processes
        assert await watcher.reload() is False and not watcher.processes
        await watcher.close()  # twice: nothing more
        assert seen.take() == [W.STARTING, W.ACTIVE, W.STOPPING, W.STOPPED, W.CLOSED]
    run(main())


def test_process_lifecycle_ready_timeout_and_refused_stop(fake):
    async def main():
        watcher = Watcher("web", "fake", numprocesses=2, ready="notify", ready_timeout=0.05)
        kernel, seen = fake(watcher)
        start = asyncio.ensure_future(watcher.start())
        await until(lambda: len(watcher.processes) == 2)
        late, ready = watcher.processes.values()
        watcher.process_ready(ready.pid)
        assert ready.state is P.READY and ready.ready_future.result() is True
        # the other never says READY=1: it goes stopping at the timeout, then
        # is killed; the start waits for it to be gone
        await until(lambda: late.state is P.STOPPING)
        assert late.ready_future.result() is False and late.returncode is None
        assert await start is True
        assert late.state is P.EXITED and late.exit_future.result() == -signal.SIGTERM
        assert "ready_timeout" in seen.topics()
        assert (late.pid, signal.SIGTERM) in kernel.signals
        # a vetoed stop signal puts the process back as it was
        watcher.hooks["before_signal"] = lambda **kw: False
        assert await watcher.kill_process(ready) is None
        assert ready.state is P.READY and not ready.stopping and ready.alive
        del watcher.hooks["before_signal"]
        await watcher.close()
    run(main())


def test_process_owns_its_futures_and_timers():
    async def main():
        loop = asyncio.get_running_loop()
        kernel = Kernel(loop)
        process = kernel.process_class()(1, "fake", loop=loop)
        fired = []
        process.add_timer(0.01, fired.append, "early")
        process.schedule_expiry(30.0, lambda: fired.append("expired"))
        assert process.expires_in == 30.0
        await asyncio.sleep(0.05)
        assert fired == ["early"]
        assert process.mark_ready() is True and process.mark_ready() is False
        process.begin_stop()
        assert process.stopping and process.alive
        process.reaped(signal.SIGTERM)
        assert process.state is P.EXITED and not process.alive and not process.stopping
        assert process.exit_future.result() == -signal.SIGTERM
        assert process._timers == []  # the expiry timer is cancelled, not left to fire
        with pytest.raises(IllegalTransition):
            process.begin_stop()
    run(main())


def test_a_refused_stop_puts_the_process_back_as_ready_as_it_was():
    async def main():
        loop = asyncio.get_running_loop()
        process = Kernel(loop).process_class()(1, "fake", loop=loop)
        process.begin_stop()
        process.stop_refused()
        assert process.state is P.STARTING and not process.ready_future.done()
        # READY=1 while stopping: recorded, and it counts once the stop is refused
        process.begin_stop()
        assert process.mark_ready() is True and process.state is P.STOPPING
        process.stop_refused()
        assert process.state is P.READY and process.ready_future.result() is True
    run(main())


def test_process_without_a_loop_has_no_futures_and_the_documented_status():
    process = Process(1, "true", spawn=False)
    assert process.state is P.CREATED and process.status == UNEXISTING
    assert process.ready_future is None and process.exit_future is None
    assert not process.alive and not process.stopping
