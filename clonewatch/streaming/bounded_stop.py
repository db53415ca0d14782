"""A graceful stop with a deadline: a worker that cannot stop says where it is stuck and exits
(and one asked with SIGUSR1 says where it is, and goes on).

Nothing accepted is lost by giving up: a batch's offsets are committed only after it is
done, so whatever the worker held uncommitted is scored again by whoever next holds its
partition (the client table drops what was already applied).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import IO, Any

import faust

EXIT_STOP_TIMED_OUT = 3

log = logging.getLogger(__name__)


def stop_within(timeout_s: float, dump: Callable[[], None], exit_code: int = EXIT_STOP_TIMED_OUT) -> threading.Timer:
    """Start a timer that, unless cancelled within ``timeout_s``, calls ``dump`` and ends the
    process with ``exit_code``. A thread, so that it fires even when the event loop is blocked.

    >>> timer = stop_within(60.0, dump=lambda: None)
    >>> timer.cancel()
    """

    def give_up() -> None:
        try:
            dump()
        finally:
            os._exit(exit_code)

    timer = threading.Timer(timeout_s, give_up)
    timer.daemon = True
    timer.start()
    return timer


class BoundedStopWorker(faust.Worker):
    """A Faust worker that, ``stop_timeout`` seconds after SIGTERM or SIGINT without having
    stopped, logs the stack of every thread and task and exits with :data:`EXIT_STOP_TIMED_OUT`;
    on SIGUSR1 it logs them and goes on."""

    def __init__(self, *args: Any, stop_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_timeout = stop_timeout
        self._stop_timer: threading.Timer | None = None

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:  # the first signal starts the clock
            self._stop_timer = stop_within(self.stop_timeout, lambda: self._say_where(signal))
        super()._schedule_shutdown(signal)

    def stop_and_shutdown(self) -> None:
        """Stop, and once stopped in time, stop the clock too (a process that goes on after its
        worker, as a test's does, is not ended by it)."""
        super().stop_and_shutdown()
        if self._stop_timer is not None:
            self._stop_timer.cancel()

    def _on_sigusr1(self) -> None:
        """``kill -USR1 PID``: log where every thread and task is, and carry on (a worker that
        seems stuck says what it waits for; mode's own answer stops at each task's first frame)."""
        log.info("SIGUSR1: the stack of every thread and task follows")
        dump_stacks(self.loop, sys.stderr)
        sys.stderr.flush()

    def _say_where(self, signal: signal.Signals) -> None:
        log.error("did not stop within %g s of %s; the stack of every thread and task follows", self.stop_timeout, signal.name)
        dump_stacks(self.loop, sys.stderr)
        sys.stderr.flush()


def dump_stacks(loop: asyncio.AbstractEventLoop, file: IO[str]) -> None:
    """Print the stack of every thread, and the await chain of every task of ``loop``.

    Called from another thread than the loop's, as a last word: the task set may change
    while it is read, so a failed read is retried a few times.
    """
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        print(f"--- thread {names.get(ident, ident)}", file=file)
        traceback.print_stack(frame, file=file)
    for _ in range(3):
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:  # the set changed size while it was read
            continue
    else:
        return
    for task in tasks:
        print(f"--- task {task.get_name()}", file=file)
        traceback.print_list(traceback.StackSummary.extract((frame, frame.f_lineno) for frame in awaited_frames(task.get_coro())), file=file)


def awaited_frames(coro: Any) -> Iterator[FrameType]:
    """The frames of a coroutine and of what it awaits, outermost first: through coroutines,
    generators and async generators, and through the wrappers and tasks in between (an
    awaited object without a frame of its own is followed to the coroutine or task it holds)."""
    seen: set[int] = set()
    while coro is not None and id(coro) not in seen:
        seen.add(id(coro))
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            yield frame
        if isinstance(coro, asyncio.Task):
            coro = coro.get_coro()
            continue
        awaited = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
        coro = awaited if awaited is None or _has_frame(awaited) else _held(awaited)


def _has_frame(obj: Any) -> bool:
    return any(hasattr(obj, name) for name in ("cr_frame", "gi_frame", "ag_frame"))


def _held(wrapper: Any) -> Any:
    """The coroutine, generator or task inside an awaitable's iterator (``coro.__await__()``,
    an async generator's ``asend``, a future's iterator), or None."""
    for inner in gc.get_referents(wrapper):
        if _has_frame(inner) or isinstance(inner, asyncio.Task):
            return inner
    return None
