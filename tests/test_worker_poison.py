"""A batch that keeps failing: poison events are dead-lettered and skipped, outages waited out."""

from __future__ import annotations

import asyncio

import pytest

from clonewatch.streaming import app as worker_app


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(worker_app, "RETRY_DELAYS_S", (0.0, 0.0))
    monkeypatch.setattr(worker_app, "OUTAGE_RETRY_S", 0.0)


def run(process, events, healthy=True):
    quarantined = []

    async def quarantine(failed):
        quarantined.extend(event for event, _ in failed)

    async def is_healthy():
        return healthy() if callable(healthy) else healthy

    asyncio.run(worker_app.with_retries(process, events, quarantine, is_healthy))
    return quarantined


def test_a_poison_event_is_quarantined_and_the_rest_of_its_batch_is_processed():
    done = []

    async def process(batch):
        if "poison" in batch:
            raise ValueError("year 0999 does not fit DateTime64")
        done.extend(batch)

    assert run(process, ["a", "poison", "b"]) == ["poison"]
    assert done == ["a", "b"]


def test_a_lone_poison_event_is_quarantined_while_the_store_answers():
    async def process(batch):
        raise ValueError("cannot insert")

    assert run(process, ["poison"], healthy=True) == ["poison"]


def test_an_outage_is_waited_out_without_losing_or_quarantining_anything():
    calls = {"n": 0}
    done = []

    async def process(batch):
        calls["n"] += 1
        if calls["n"] < 12:  # the store is away for the first eleven attempts
            raise ConnectionError("ClickHouse is down")
        done.extend(batch)

    assert run(process, ["a", "b"], healthy=lambda: calls["n"] >= 12) == []
    assert sorted(done) == ["a", "b"]
