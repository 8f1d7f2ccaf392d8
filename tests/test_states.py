"""The process state machine, without forking anything: the transition
table edge by edge, and a process's own futures and timers over a fake
kernel on the test's loop."""
import asyncio
import itertools
import signal
import time
import types

import pytest

from circus.errors import IllegalTransition
from circus.process import UNEXISTING, Process
from circus.states import PROCESS_TRANSITIONS, ProcessState

P = ProcessState

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


def test_the_table_is_the_lifecycle():
    assert {(a, b) for a, nexts in PROCESS_TRANSITIONS.items() for b in nexts} == PROCESS_EDGES
    assert set(PROCESS_TRANSITIONS) == set(P)


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
            def spawn(self):
                self._popen = types.SimpleNamespace(pid=next(kernel.pids), stdout=None,
                                                    stderr=None, returncode=None)
                self.started = time.time()
                self._set_state(ProcessState.STARTING)

            def send_signal(self, signum):
                if self.alive:
                    kernel.kill(self.pid, signum)
        return FakeProcess


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))



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


def test_process_without_a_loop_has_no_futures_and_the_documented_status():
    process = Process(1, "true", spawn=False)
    assert process.state is P.CREATED and process.status == UNEXISTING
    assert process.ready_future is None and process.exit_future is None
    assert not process.alive and not process.stopping
