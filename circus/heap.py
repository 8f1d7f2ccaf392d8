"""circusd's bulk work kept away from the cyclic garbage collector.

circusd's heap holds about a hundred objects per managed process: at 10,000
processes a full collection walks some 340,000 objects, 200 to 300 ms with
the loop blocked. Python runs one whenever the objects that survived two
young collections since the last one reach a quarter of the heap. Two kinds
of bulk work would get there for nothing:

- a mass start, whose new objects all stay alive: `frozen` moves them, batch
  after batch, into the collector's permanent generation, which it never
  walks; the last one to end gives them back, and cycles made meanwhile are
  collected then, as before;
- a reply describing every process (stats), whose objects all die once it
  is sent: `paused` keeps the collector from running while they are made
  and until the loop's next turn, by which time the controller has encoded
  the reply and let it go; freed by their reference counts, they are never
  walked, nor promoted towards the old generation (a collection at the end
  of the build would walk 20,000 of them, and promote them all). However
  pauses overlap, the collector is back within MAX_PAUSE while the loop
  runs (a pause whose loop was closed under it, which asyncio.run never
  does, ends at the next pause's end).

Both count their users: arbiters may run on loops of their own threads.
"""
import asyncio
import gc
import threading
import time

# the longest the collector stays off for paused(): a stats of 10,000
# processes takes 0.3 to 0.4 s
MAX_PAUSE = 2.0

_lock = threading.Lock()
_frozen_depth = 0
_paused_depth = 0
_paused_since = 0.0
_enable_after_pause = False


class frozen:
    """While processes are spawned by the thousand; freeze() after each batch."""

    def __enter__(self):
        global _frozen_depth
        with _lock:
            _frozen_depth += 1
        return self

    def __exit__(self, *exc_info):
        global _frozen_depth
        with _lock:
            _frozen_depth -= 1
            if not _frozen_depth:
                gc.unfreeze()

    @staticmethod
    def freeze():
        """What exists now joins the permanent generation, if a start is
        under way: cheap, a splice of the collector's lists."""
        if _frozen_depth:
            gc.freeze()


class paused:
    """While a reply about every process is built, and the loop's turn that
    sends it; MAX_PAUSE at most, however the pauses overlap."""

    def __enter__(self):
        global _paused_depth, _enable_after_pause, _paused_since
        with _lock:
            if not _paused_depth and gc.isenabled():
                _enable_after_pause = True
                _paused_since = time.monotonic()
                gc.disable()
                try:  # a pause that holds too long (a stuck command) ends too;
                    # + 10 ms: a timer may run a clock's resolution early
                    asyncio.get_running_loop().call_later(MAX_PAUSE + 0.01, _resume)
                except RuntimeError:
                    pass
            _paused_depth += 1
        return self

    def __exit__(self, *exc_info):
        global _paused_depth
        with _lock:
            _paused_depth -= 1
        try:
            asyncio.get_running_loop().call_soon(_resume)
        except RuntimeError:  # no loop: nothing more of this turn to cover
            _resume()


def _resume():
    """The collector back on once no pause holds, or once the pauses held
    for MAX_PAUSE: stats calls back to back from several clients must not
    keep it off for good."""
    global _enable_after_pause
    with _lock:
        if _enable_after_pause and (
                not _paused_depth or time.monotonic() - _paused_since >= MAX_PAUSE):
            _enable_after_pause = False
            gc.enable()
