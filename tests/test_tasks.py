"""BackgroundTasks: tasks nobody awaits, held until done, failures logged."""
import asyncio
import gc
import logging
import weakref

from circus.tasks import BackgroundTasks


async def _wait_on_a_future_nobody_else_holds():
    # the future and the task only reference each other: without a holder,
    # the garbage collector may take both while the task waits
    await asyncio.get_running_loop().create_future()


def test_a_waiting_task_survives_garbage_collection():
    async def main():
        tasks = BackgroundTasks("test")
        held = weakref.ref(tasks.spawn(_wait_on_a_future_nobody_else_holds()))
        loose = weakref.ref(asyncio.get_running_loop().create_task(
            _wait_on_a_future_nobody_else_holds()))
        await asyncio.sleep(0)  # both now wait on their future
        gc.collect()
        # the control: what happens to a task nobody holds
        assert loose() is None
        assert held() is not None and not held().done()
        assert len(tasks) == 1
        tasks.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the done callbacks run
        assert len(tasks) == 0

    asyncio.run(main())


def test_a_failure_is_logged_with_the_owner_and_a_success_is_not(caplog):
    name = ["before"]

    async def fails():
        raise RuntimeError("boom")

    async def succeeds():
        return 42

    async def main():
        tasks = BackgroundTasks(lambda: "watcher %s" % name[0])
        name[0] = "renamed"
        ok = tasks.spawn(succeeds())
        bad = tasks.spawn(fails())
        await asyncio.gather(ok, bad, return_exceptions=True)
        await asyncio.sleep(0)
        assert len(tasks) == 0

    with caplog.at_level(logging.ERROR, logger="circus"):
        asyncio.run(main())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["watcher renamed: background task failed"]
    assert errors[0].exc_info[1].args == ("boom",)
