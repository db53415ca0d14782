"""The analysts' cookbook (docs/queries/*.sql), each query run on a store that `clonewatch run`
filled from a generated scenario, its answer checked against what the run wrote elsewhere
(the decisions file and the input log), not against the store itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clonewatch.lab.simulate import simulate
from schemas import to_epoch
from tests.streaming_support import REPO_ROOT, cli

QUERIES = REPO_ROOT / "docs" / "queries"
SEVERITY = {"allow": 0, "throttle": 1, "challenge": 2, "deny": 3}


def _scenario() -> tuple[list[dict], dict[str, dict]]:
    """Numeric traffic (no embedder needed): a campaign over hosting keys, single-key attackers, customers."""
    events, labels = [], {}
    for scenario, seed, scale in (("campaign", 2, 0.3), ("numeric", 3, 0.15)):
        traffic = simulate(scenario, seed=seed, scale=scale)
        events += [e for e in traffic.events if e.get("features")]
        labels.update((row["client_id"], row) for row in traffic.labels)
    events.sort(key=lambda e: to_epoch(e["ts"]))
    return events, labels


def _run(log: Path, store: str, decisions: Path, model: Path, env: dict[str, str]) -> None:
    result = cli("run", "--input", str(log), "--model", str(model), "--store", store, "-q", "--decisions", str(decisions),
                 "--dead-letters", str(decisions.with_name("dead.jsonl")), "--throttle-at", "0.95", env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()


@pytest.fixture(scope="module")
def filled(numeric_model: Path, tmp_path_factory) -> dict:
    """A store filled by `run` (a low throttle threshold, so that some actions are reversed),
    on a log cut 20 minutes after its last action, so that the last hour holds actions."""
    root = tmp_path_factory.mktemp("cookbook")
    env = {**os.environ}
    events, labels = _scenario()
    full = root / "full.jsonl"
    full.write_text("".join(json.dumps(e) + "\n" for e in events))
    _run(full, f"chdb://{root / 'first'}", root / "first.jsonl", numeric_model, env)
    first = [json.loads(line) for line in (root / "first.jsonl").read_text().splitlines()]
    cut = max(to_epoch(d["ts"]) for d in first if d["action"] != "allow") + 1200  # the last action in the log's last hour
    kept = [e for e in events if to_epoch(e["ts"]) <= cut]
    log = root / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in kept) + '{"broken": \n')
    store = f"chdb://{root / 'store'}"
    _run(log, store, root / "decisions.jsonl", numeric_model, env)
    decisions = [json.loads(line) for line in (root / "decisions.jsonl").read_text().splitlines()]
    return {"store": store, "events": kept, "labels": labels, "decisions": decisions, "env": env}


def _answers(store: str, env: dict[str, str]) -> dict[str, list[dict]]:
    """Every cookbook query's rows, from one process (chdb holds one store per process)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from clonewatch.commands.sql import read_query\n"
        "from sinks.clickhouse import ClickHouseStore\n"
        "store = ClickHouseStore(sys.argv[1])\n"
        "out = {}\n"
        "for path in sorted(Path(sys.argv[2]).glob('*.sql')):\n"
        "    columns, rows = store.query(read_query(path), {'client': sys.argv[3]})\n"
        "    out[path.stem] = [dict(zip(columns, row)) for row in rows]\n"
        "print(json.dumps(out, default=str))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, store, str(QUERIES), "{client}"], cwd=REPO_ROOT, env=env,
                            capture_output=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def answers(filled) -> dict[str, list[dict]]:
    return _answers(filled["store"], filled["env"])


def _final_actions(decisions: list[dict]) -> dict[str, str]:
    final: dict[str, str] = {}
    for d in decisions:
        final[d["client_id"]] = d["action"]
    return final


def test_every_query_says_what_it_is_for_on_its_first_line() -> None:
    paths = sorted(QUERIES.glob("*.sql"))
    assert len(paths) >= 7
    for path in paths:
        first = path.read_text().splitlines()[0]
        assert first.startswith("-- ") and len(first) > 30, path.name


def test_riskiest_now_lists_the_acted_on_clients_first_most_severe_first(filled, answers) -> None:
    rows = answers["riskiest_now"]
    acted = {c: a for c, a in _final_actions(filled["decisions"]).items() if a != "allow"}
    assert 5 <= len(acted) < 20
    assert {r["client_id"]: r["action"] for r in rows[: len(acted)]} == acted
    severities = [SEVERITY[r["action"]] for r in rows]
    assert severities == sorted(severities, reverse=True)


def test_new_actions_of_the_last_hour(filled, answers) -> None:
    latest = max(to_epoch(e["ts"]) for e in filled["events"])
    expected = {(d["client_id"], d["action"]) for d in filled["decisions"] if d["action"] != "allow" and to_epoch(d["ts"]) > latest - 3600}
    assert expected, "the log was cut so that the last hour holds actions"
    assert {(r["client_id"], r["action"]) for r in answers["new_actions_last_hour"]} == expected


def test_reversed_decisions_are_the_actions_later_lifted(filled, answers) -> None:
    expected = set()
    by_client = defaultdict(list)
    for d in filled["decisions"]:
        by_client[d["client_id"]].append(d)
    for client, ds in by_client.items():
        for i, d in enumerate(ds):
            if d["action"] != "allow" and any(later["action"] == "allow" and to_epoch(later["ts"]) > to_epoch(d["ts"]) for later in ds[i + 1 :]):
                expected.add((client, d["action"]))
    assert expected, "a throttle threshold of 0.95 lifts some actions again"
    assert {(r["client_id"], r["action"]) for r in answers["reversed_decisions"]} == expected
    assert all(r["held_s"] >= 0 for r in answers["reversed_decisions"])


def test_attack_cost_counts_what_was_served_before_the_first_action(filled, answers) -> None:
    first = {}
    for d in filled["decisions"]:
        if d["action"] != "allow":
            first.setdefault(d["client_id"], to_epoch(d["ts"]))
    served = defaultdict(lambda: [0, 0])
    for e in filled["events"]:
        if e["client_id"] in first:
            served[e["client_id"]][1] += 1
            served[e["client_id"]][0] += to_epoch(e["ts"]) < first[e["client_id"]] - 5e-4  # the store keeps milliseconds
    got = {r["client_id"]: [r["requests_before"], r["requests_total"]] for r in answers["attack_cost"]}
    assert got == dict(served)


def test_campaign_members_are_one_simulated_campaign_with_their_own_actions(filled, answers) -> None:
    rows = answers["campaign_members"]
    assert rows, "the hosting-key campaign is found"
    final = _final_actions(filled["decisions"])
    for campaign in {r["campaign_id"] for r in rows}:
        members = [r for r in rows if r["campaign_id"] == campaign]
        assert len(members) >= 3
        labels = [filled["labels"][r["member"]] for r in members]
        assert {(label["kind"], label["campaign"]) for label in labels} == {("campaign", labels[0]["campaign"])}  # one simulated campaign
        for r in members:
            assert r["member_action"] == final.get(r["member"], "allow")


def test_coverage_growth_follows_one_client_to_its_last_event(filled) -> None:
    client = next(d["client_id"] for d in filled["decisions"] if d["action"] != "allow")
    out = cli("sql", "-f", str(QUERIES / "coverage_growth.sql"), "--param", f"client={client}", "--store", filled["store"], env=filled["env"], timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    lines = out.stdout.decode().splitlines()
    header, rows = lines[0].split(), [line.split() for line in lines[2:-1]]
    seen = [int(r[header.index("events_seen")]) for r in rows]
    assert seen == sorted(set(seen)) and seen[-1] == sum(e["client_id"] == client for e in filled["events"])
    assert all(r[header.index("benign_p90")] != "None" for r in rows)


def test_benign_drift_covers_the_clients_never_acted_on(filled, answers) -> None:
    acted = {d["client_id"] for d in filled["decisions"] if d["action"] != "allow"}
    days = defaultdict(set)
    for e in filled["events"]:
        if e["client_id"] not in acted:
            days[datetime.fromtimestamp(to_epoch(e["ts"]), tz=timezone.utc).date().isoformat()].add(e["client_id"])
    got = {r["day"]: r["clients"] for r in answers["benign_drift"]}
    assert got == {day: len(clients) for day, clients in days.items()}
    assert all(len(r["risk"]) == 3 for r in answers["benign_drift"])


def test_dead_letter_reasons(filled, answers) -> None:
    rows = answers["dead_letter_reasons"]
    assert [(r["lines"], r["first_line"]) for r in rows] == [(1, len(filled["events"]) + 1)]


def test_the_html_report_draws_a_client_a_campaign_and_the_top_offline(filled, answers, tmp_path: Path) -> None:
    client = answers["riskiest_now"][0]["client_id"]
    campaign = answers["campaign_members"][0]["campaign_id"]
    out = tmp_path / "report.html"
    result = cli("report", "--client", client, "--campaign", campaign, "--top", "5", "--store", filled["store"], "--out", str(out), env=filled["env"], timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    page = out.read_text()
    assert page.count("Plotly.newPlot(") == 4  # the top clients (2 charts), the campaign, the client
    assert _external_scripts(page) == []  # plotly.js is in the file: it opens offline
    assert f"client {client}" in page and f"campaign {campaign}" in page
    assert "0.9995" in page or "0.999" in page  # the thresholds are drawn on the nines axis
    missing = cli("report", "--client", "key_nobody", "--store", filled["store"], "--out", str(tmp_path / "x.html"), env=filled["env"], timeout=300)
    assert missing.returncode == 2 and b"no risk scores for client 'key_nobody'" in missing.stderr
    assert not (tmp_path / "x.html").exists()


def _external_scripts(page: str) -> list[str]:
    class Scripts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.sources: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            if tag == "script" and dict(attrs).get("src"):
                self.sources.append(dict(attrs)["src"])

    parser = Scripts()
    parser.feed(page)
    return parser.sources


def test_retraining_from_the_store_uses_only_clients_never_acted_on(filled, tmp_path: Path) -> None:
    model_path = tmp_path / "retrained.cwm"
    result = cli("train", "--from-store", filled["store"], "--since", "12h", "--model", str(model_path), "-q", env=filled["env"], timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    from detectors.model import CloneModel

    meta = CloneModel.load(model_path).metadata
    latest = max(to_epoch(e["ts"]) for e in filled["events"])
    acted = {d["client_id"] for d in filled["decisions"] if d["action"] != "allow"}
    kept = [e for e in filled["events"] if to_epoch(e["ts"]) >= latest - 12 * 3600 - 1e-3 and e["client_id"] not in acted]
    assert meta["training_source"]["events"] == meta["training_events"] == len(kept)
    assert meta["training_clients"] == len({e["client_id"] for e in kept})
    assert meta["training_source"]["left_out_flagged"]["clients"] == len({e["client_id"] for e in filled["events"] if e["client_id"] in acted and to_epoch(e["ts"]) >= latest - 12 * 3600 - 1e-3})
    assert any(space.startswith("numeric:") for space in meta["spaces"])  # numeric inputs are stored with each request
    assert to_epoch(meta["training_range"][1]) == pytest.approx(latest, abs=1e-3)
    assert set(meta["score_distribution"]) == {"p50", "p90", "p99", "p100"}


def test_drift_compares_never_flagged_clients_with_the_calibration(filled, numeric_model: Path) -> None:
    out = cli("drift", "--model", str(numeric_model), "--store", filled["store"], env=filled["env"], timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    acted = {d["client_id"] for d in filled["decisions"] if d["action"] != "allow"}
    counts = defaultdict(int)
    for e in filled["events"]:
        counts[e["client_id"]] += 1
    never = sum(1 for c, n in counts.items() if c not in acted and n >= 10)
    assert text.startswith(f"{never:,} clients never acted on")
    assert "Kolmogorov-Smirnov" in text and ("no sign of drift" in text or "drift: benign clients" in text)
