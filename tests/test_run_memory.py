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
