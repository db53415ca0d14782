"""A rerun after a crash writes no second copy of any row."""

from __future__ import annotations

import json
from pathlib import Path

from tests.streaming_support import cli, numeric_traffic


def test_running_the_same_input_twice_stores_each_row_once(numeric_model: Path, tmp_path: Path) -> None:
    events, _ = numeric_traffic(seed=3, scale=0.05, cap=60)
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join(json.dumps(e) for e in events) + '\n{"broken": \n')
    store = f"chdb://{tmp_path / 'store'}"
    env = {**__import__("os").environ}
    run = ["run", "--input", str(log), "--model", str(numeric_model), "--store", store, "-q",
           "--decisions", str(tmp_path / "d.jsonl"), "--dead-letters", str(tmp_path / "dl.jsonl")]  # fmt: skip
    for _ in range(2):  # the second run stands for a rerun after a crash mid-file
        result = cli(*run, env=env, timeout=600)
        assert result.returncode == 0, result.stderr.decode()
    counts = cli("sql", "--store", store, env=env, timeout=300, *[
        "SELECT (SELECT count() FROM clonewatch.risk_scores FINAL), (SELECT uniqExact(client_id, events_seen) FROM clonewatch.risk_scores),"
        " (SELECT count() FROM clonewatch.decisions FINAL), (SELECT count() FROM clonewatch.dead_letters FINAL)"
    ])
    assert counts.returncode == 0, counts.stderr.decode()
    rows, distinct, decisions, dead_letters = map(int, counts.stdout.decode().splitlines()[2].split())  # header, rule, the row
    assert rows == distinct > 0
    assert dead_letters == 1
    assert decisions == len((tmp_path / "d.jsonl").read_text().splitlines()) / 2  # the file is appended to twice
