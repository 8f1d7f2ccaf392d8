"""How an Arbiter is run: in the caller's thread (start), in a thread of
its own (start_background, get_arbiter(..., background=True)), or awaited
on a loop (run); and stopped from any thread (stop).

An arbiter runs once at a time: a second start, start_background or run
while one is under way raises an ArbiterError and changes nothing (before,
a start() of an arbiter running in the background re-ran it on a second
loop: "attached to a different loop").
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from circus.errors import ArbiterError
from circus.states import ArbiterState


class Running:
    """Arbiter's side of its runs. Expects the Arbiter's loop, status,
    _run_by, _run_lock, _start_pending, _thread, _loop_thread, _stopping,
    _done, _begin_stop and run()."""

    loop: asyncio.AbstractEventLoop | None
    status: ArbiterState
    _run_by: str | None
    _run_lock: threading.Lock
    _start_pending: bool
    _thread: threading.Thread | None
    _loop_thread: threading.Thread | None
    _stopping: asyncio.Event | None
    _done: asyncio.Event | None
    _begin_stop: Callable[[], None]
    run: Callable[..., Coroutine[Any, Any, None]]

    def start(self) -> None:
        """Run until stopped: bind sockets, start watchers, serve commands.

        An arbiter runs once at a time: start() of one that runs raises an
        ArbiterError and changes nothing. One exception, the documented
        library pattern: get_arbiter(..., background=True) has started the
        arbiter in its thread already, and the start() that follows returns
        at once, as the original Circus's start() of a background arbiter
        returned once its thread was started; stop() then stops it."""
        if self._start_pending:
            self._start_pending = False
            if self._run_by is not None:
                return None
        self._check_not_running()
        if self.loop is not None and not self.loop.is_running():
            return self.loop.run_until_complete(self.run())
        return asyncio.run(self.run())

    def _check_not_running(self) -> None:
        if self._run_by is not None:
            raise ArbiterError("the arbiter is already running (started by %s): stop() it "
                               "before starting it again" % self._run_by)

    def _claim_run(self, how: str) -> None:
        """The one check that no other run is under way; before anything runs."""
        with self._run_lock:
            self._check_not_running()
            self._run_by = how

    def start_background(self, how: str = "start_background()") -> None:
        """Run the arbiter in its own thread (library use, not circusd)."""
        self._check_not_running()
        ready = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            async def main() -> None:
                task = asyncio.ensure_future(self.run(how))
                while self.status is ArbiterState.STOPPED and not task.done():
                    await asyncio.sleep(0.01)
                ready.set()
                await task
            try:
                asyncio.run(main())
            except BaseException as exc:  # reported to the caller
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=target, name="circus-arbiter", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]

    def stop(self) -> None:
        """Ask the arbiter to stop; safe from any thread and when not running."""
        if self._stopping is None or self._done is None or self._done.is_set():
            return
        if self.loop is not None and self._loop_thread is not None \
                and threading.current_thread() is not self._loop_thread:
            # an asyncio.Event set from another thread would not wake the loop
            try:
                self.loop.call_soon_threadsafe(self._begin_stop)
            except RuntimeError:  # the loop is closed: it has stopped already
                return
            if self._thread is not None:
                self._thread.join()
            return
        self._begin_stop()
