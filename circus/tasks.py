"""Tasks started and not awaited, held until they finish."""
import asyncio
import logging

from circus.errors import CommandError, MessageError

logger = logging.getLogger("circus")


class BackgroundTasks:
    """The tasks one owner starts without awaiting them.

    The event loop keeps only a weak reference to a task: one that nobody
    else references can be garbage-collected while it waits, and it then
    never finishes. These are held here until done, and a failure is logged
    with the owner's name instead of vanishing with the task."""

    def __init__(self, owner):
        # a name, or a callable giving it (a watcher can be renamed)
        self.owner = owner
        self._tasks = set()

    def spawn(self, coro, loop=None):
        return self.hold((loop or asyncio.get_running_loop()).create_task(coro))

    def hold(self, task):
        """Take over a task already started."""
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task):
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            owner = self.owner() if callable(self.owner) else self.owner
            exc = task.exception()
            if isinstance(exc, (CommandError, MessageError)):
                # a refusal of the rest of a command already answered (a
                # limit reached meanwhile): what it says is all there is
                logger.error("%s: %s", owner, exc)
                return
            logger.error("%s: background task failed", owner, exc_info=exc)

    def cancel(self):
        for task in self:
            task.cancel()

    def __iter__(self):
        return iter(list(self._tasks))

    def __len__(self):
        return len(self._tasks)
