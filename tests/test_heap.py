"""circus.heap: the garbage collector paused around a bulk reply, frozen
around a mass start (test_scale shows both at work)."""
import asyncio
import gc

import pytest

from circus import heap


@pytest.fixture(autouse=True)
def collector_back_on():
    """A failed test leaves no pause open and the collector on."""
    yield
    heap._paused_depth = 0
    heap._enable_after_pause = False
    gc.enable()


def test_paused_without_a_loop_resumes_on_exit():
    assert gc.isenabled()
    with heap.paused():
        assert not gc.isenabled()
        with heap.paused():
            pass
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_paused_on_a_loop_resumes_on_its_next_turn():
    async def main():
        with heap.paused():
            assert not gc.isenabled()
        # what this turn still does with the reply (encode, send) is covered
        assert not gc.isenabled()
        await asyncio.sleep(0)
        assert gc.isenabled()
    asyncio.run(main())


def test_a_pause_started_before_the_resume_keeps_the_collector_off():
    async def main():
        with heap.paused():
            pass
        with heap.paused():  # the first one's resume is scheduled, not run
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not gc.isenabled()
        await asyncio.sleep(0)
        assert gc.isenabled()
    asyncio.run(main())


def test_paused_leaves_a_collector_disabled_by_someone_else_disabled():
    gc.disable()
    try:
        with heap.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_frozen_freezes_only_while_a_mass_start_runs():
    heap.frozen.freeze()
    assert gc.get_freeze_count() == 0
    with heap.frozen():
        kept = [[] for _ in range(100)]
        heap.frozen.freeze()
        assert gc.get_freeze_count() >= len(kept)
    assert gc.get_freeze_count() == 0


def test_overlapping_pauses_give_the_collector_back_after_max_pause():
    """stats calls back to back from several clients never leave a turn
    with no pause: the collector is not kept off for good."""
    async def main():
        first, second, third = heap.paused(), heap.paused(), heap.paused()
        try:
            first.__enter__()
            second.__enter__()
            first.__exit__(None, None, None)
            await asyncio.sleep(0)
            assert not gc.isenabled()  # the second still holds, within MAX_PAUSE
            third.__enter__()
            heap._paused_since -= heap.MAX_PAUSE  # as if they had held that long
            second.__exit__(None, None, None)
            await asyncio.sleep(0)
            assert gc.isenabled()  # the third still holds, but for too long
        finally:
            third.__exit__(None, None, None)
        await asyncio.sleep(0)
        assert gc.isenabled()
        with heap.paused():  # and the next pause pauses again
            assert not gc.isenabled()
        await asyncio.sleep(0)
        assert gc.isenabled()
    asyncio.run(main())


def test_a_pause_held_too_long_ends_by_its_timer(monkeypatch):
    """A command stuck in its pause (no end of a pause to look at the
    clock): the timer set when the collector went off gives it back."""
    monkeypatch.setattr(heap, "MAX_PAUSE", 0.05)

    async def main():
        held = heap.paused()
        held.__enter__()
        try:
            assert not gc.isenabled()  # no turn of the loop yet: no timer ran
            deadline = asyncio.get_running_loop().time() + 5
            while not gc.isenabled() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert gc.isenabled()
        finally:
            held.__exit__(None, None, None)
        await asyncio.sleep(0)
        assert gc.isenabled()
    asyncio.run(main())
