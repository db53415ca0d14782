"""A watch on the worker's batches: one that runs far longer than any batch should says where it is.

A batch of a few hundred events is scored, stored and acknowledged in seconds; one still in
hand minutes later waits on something (the store or the broker away, which the worker logs
as it retries, or a deadlock). The watch runs on a thread of its own, so that it speaks even
when the event loop is blocked, and logs the stack of every thread and task once per stuck
batch, as ``kill -USR1`` would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

STALL_LIMIT_S = 300.0  # a batch in hand this long is stuck, or waits out an outage it has logged


class StallWatch:
    """Calls ``dump`` once for each piece of work in hand longer than ``limit_s``.

    >>> now = [0.0]
    >>> said = []
    >>> watch = StallWatch(limit_s=300.0, dump=lambda: said.append(now[0]), clock=lambda: now[0])
    >>> watch.started("score"); now[0] = 301.0; watch.check(); watch.check(); said
    [301.0]
    >>> watch.finished("score"); watch.started("score"); now[0] = 400.0; watch.check(); said
    [301.0]
    """

    def __init__(self, limit_s: float, dump: Callable[[], None], clock: Callable[[], float] = time.monotonic) -> None:
        if limit_s <= 0:
            raise ValueError("the stall limit must be above 0 s")
        self.limit_s = limit_s
        self.dump = dump
        self.clock = clock
        self._since: dict[str, float] = {}  # what is in hand -> since when
        self._told: set[str] = set()  # in hand too long, and said so already
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def started(self, what: str) -> None:
        with self._lock:
            self._since[what] = self.clock()
            self._told.discard(what)

    def finished(self, what: str) -> None:
        with self._lock:
            self._since.pop(what, None)
            self._told.discard(what)

    def in_hand(self) -> bool:
        """Whether some piece of work has started and not finished."""
        with self._lock:
            return bool(self._since)

    def check(self) -> None:
        """Say where everything is if some piece of work went past the limit since it was last said."""
        now = self.clock()
        with self._lock:
            late = {what: now - since for what, since in self._since.items() if now - since > self.limit_s and what not in self._told}
            self._told |= set(late)
        if late:
            held = ", ".join(f"{what} for {seconds:.0f} s" for what, seconds in sorted(late.items()))
            log.warning("a batch has been in hand longer than %.0f s (%s); the stack of every thread and task follows", self.limit_s, held)
            self.dump()

    def start(self) -> StallWatch:
        """Check a few times per limit on a daemon thread, until :meth:`stop`."""
        thread = threading.Thread(target=self._run, name="clonewatch-stall-watch", daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.limit_s / 4):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watch must never take the worker down
                log.exception("the stall watch failed")
