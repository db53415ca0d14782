"""`clonewatch run` holds the states of the clients active lately, not of every client of the log."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from clonewatch.report import render_summary
from clonewatch.runner import EmbeddedRunner, RunConfig
from schemas import to_epoch
from tests.streaming_support import numeric_traffic


def test_clients_quiet_for_longer_than_the_time_to_live_leave_memory(numeric_model: Path, tmp_path: Path, chdb_dsn: str) -> None:
    events, _ = numeric_traffic(seed=4, scale=0.05, cap=40)  # 9 clients over 17 hours
    log = tmp_path / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    last: dict[str, float] = defaultdict(float)
    for e in events:
        last[e["client_id"]] = max(last[e["client_id"]], to_epoch(e["ts"]))
    newest, ttl = max(last.values()), 3 * 3600.0
    config = RunConfig(input=str(log), model_path=numeric_model, store_dsn=chdb_dsn, batch_size=16, progress=False, client_ttl=ttl,
                       decisions_path=tmp_path / "d.jsonl", dead_letters_path=tmp_path / "dl.jsonl")  # fmt: skip
    runner = EmbeddedRunner(config)
    summary = runner.run()
    assert summary.accepted == len(events) and summary.clients == len(last)  # every event scored, every client in the summary
    quiet = {c for c, ts in last.items() if ts < newest - ttl * 1.25}  # quiet beyond the time to live and one sweep's spacing
    assert quiet and not quiet & set(runner.states)
    assert summary.expired >= len(quiet)
    assert f"forgotten         {summary.expired} client states, each after 3 h without a request" in render_summary(summary, config)


def test_the_summary_keeps_every_clients_latest_action_and_the_riskiest_clients_whole() -> None:
    """A log of many clients: each one's latest action, risk and events seen are counted and
    ranked exactly, while whole scores (reasons, features: kilobytes each) are kept only for
    the riskiest, a bounded number."""
    import random

    from clonewatch.runner import DETAILED_CLIENTS, RunSummary
    from schemas import RiskScore

    rng = random.Random(0)
    summary, truth = RunSummary(), {}
    for step in range(12):
        batch = []
        for client in rng.sample(range(6000), 3000):
            action = rng.choices(["allow", "throttle", "challenge", "deny"], [0.97, 0.01, 0.01, 0.01])[0]
            events = step * 10 + rng.randint(1, 10)
            batch.append(RiskScore(ts="", client_id=f"key_{client:05d}", events_seen=events, window_events=events, risk=rng.random(),
                                   action=action, reasons=[f"reason of {client} at {step}"], features={"rate_per_min": 1.0}, model_version="m"))  # fmt: skip
        summary.record(batch)
        truth.update((s.client_id, s) for s in batch)
        assert len(summary.details) <= 2 * DETAILED_CLIENTS
    severity = {"allow": 0, "throttle": 1, "challenge": 2, "deny": 3}
    for n, min_events in ((5, 1), (40, 60)):
        expected = sorted((s for s in truth.values() if s.events_seen >= min_events), key=lambda s: (-severity[s.action], -s.risk, s.client_id))[:n]
        assert summary.riskiest(n, min_events) == expected  # the same scores, reasons and all
    assert summary.clients == len(truth)
    assert summary.action_counts() == {a: sum(s.action == a for s in truth.values()) for a in severity if any(s.action == a for s in truth.values())}
