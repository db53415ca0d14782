"""A worker's graceful stop has a deadline: past it, the worker says where it is stuck and exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from clonewatch.streaming.bounded_stop import EXIT_STOP_TIMED_OUT
from tests.streaming_support import REPO_ROOT

# A Faust app whose shutdown never ends (a stand-in for a batch that cannot finish), unless
# told to finish: then the process goes on for a while after its worker has stopped.
HANGING_APP = textwrap.dedent(
    """
    import asyncio, sys, time
    import faust
    from clonewatch.streaming.bounded_stop import BoundedStopWorker

    app = faust.App(
        sys.argv[2], broker="kafka://" + sys.argv[1], store="memory://", web_enabled=False, datadir=sys.argv[5]
    )

    @app.task
    async def ready():
        print("ready", flush=True)

    @app.on_before_shutdown.connect
    async def finish_the_batch_in_hand(sender, **kwargs):
        await asyncio.sleep(0 if sys.argv[4] == "finish" else 3600)

    try:
        BoundedStopWorker(app, stop_timeout=float(sys.argv[3]), loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()
    except SystemExit:
        time.sleep(float(sys.argv[3]) + 2.0)
        print("went on after its worker", flush=True)
    """
)


def start(bootstrap: str, datadir: Path, stop_timeout: float, shutdown: str = "hang") -> subprocess.Popen[str]:
    app_id = f"stop-test-{uuid.uuid4().hex[:8]}"
    app = subprocess.Popen(
        [sys.executable, "-c", HANGING_APP, bootstrap, app_id, str(stop_timeout), shutdown, str(datadir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert app.stdout is not None
    if not app.stdout.readline().endswith("ready\n"):  # the line may follow a spinner's escapes
        app.kill()
        raise AssertionError(f"the app did not start: {app.communicate()[1][-3000:]}")
    return app


@pytest.mark.kafka
def test_a_worker_that_cannot_stop_says_where_it_is_stuck_and_exits(kafka_bootstrap: str, tmp_path: Path) -> None:
    app = start(kafka_bootstrap, tmp_path, stop_timeout=2.0)
    signalled = time.monotonic()
    app.send_signal(signal.SIGTERM)
    try:
        code = app.wait(timeout=60)
    finally:
        app.kill()
    waited = time.monotonic() - signalled
    stderr = app.stderr.read() if app.stderr else ""
    assert code == EXIT_STOP_TIMED_OUT, stderr[-3000:]
    assert 2.0 <= waited < 30, waited
    assert "did not stop within 2 s of SIGTERM" in stderr
    assert "finish_the_batch_in_hand" in stderr  # the stuck task's stack is in the log


@pytest.mark.kafka
def test_a_worker_that_stops_in_time_stops_the_clock_too(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The deadline ends a worker that is stuck, not the process that ran a worker which stopped."""
    app = start(kafka_bootstrap, tmp_path, stop_timeout=2.0, shutdown="finish")
    app.send_signal(signal.SIGTERM)
    try:
        out, err = app.communicate(timeout=60)
    finally:
        app.kill()
    assert app.returncode == 0, err[-3000:]
    assert "went on after its worker" in out
    assert "did not stop within" not in err


def test_the_stacks_follow_each_task_into_what_it_awaits() -> None:
    """Through a task awaiting a task, an awaitable that hides its coroutine (as a Faust agent's
    actor does) and an async generator, down to the line that waits."""
    import asyncio
    import io

    from clonewatch.streaming.bounded_stop import dump_stacks

    class Actor:
        def __init__(self, it):
            self.it = it

        def __await__(self):
            return self.it.__await__()

    async def batches():
        while True:
            await asyncio.sleep(60)
            yield []

    async def take_batches():
        async for _ in batches():
            pass

    async def execute_actor(actor):
        await actor

    async def supervise(task):
        await task

    async def main() -> str:
        actor = asyncio.get_running_loop().create_task(execute_actor(Actor(take_batches())), name="actor")
        supervisor = asyncio.get_running_loop().create_task(supervise(actor), name="supervisor")
        await asyncio.sleep(0.05)
        out = io.StringIO()
        dump_stacks(asyncio.get_running_loop(), out)
        supervisor.cancel()
        actor.cancel()
        return out.getvalue()

    stacks = asyncio.run(main())
    supervised = stacks[stacks.index("--- task supervisor") :]
    order = [supervised.index(f"in {name}") for name in ("supervise", "execute_actor", "take_batches", "batches", "sleep")]
    assert order == sorted(order), supervised


def test_a_batch_in_hand_too_long_makes_the_watch_say_where_everything_is_once() -> None:
    """On its own thread, so that it speaks while the event loop is blocked; once per batch."""
    from clonewatch.streaming.stall_watch import StallWatch

    said: list[float] = []
    watch = StallWatch(limit_s=0.2, dump=lambda: said.append(time.monotonic())).start()
    try:
        watch.started("process_batch")
        time.sleep(1.0)  # blocks this thread, as a stuck batch blocks the loop
        assert len(said) == 1
        watch.finished("process_batch")
        time.sleep(0.4)
        assert len(said) == 1  # nothing in hand: nothing to say
        watch.started("process_batch")
        time.sleep(0.5)
        assert len(said) == 2
    finally:
        watch.stop()
