"""Tests of the red-team traffic simulator: determinism, record validity, ground truth."""

from __future__ import annotations

import argparse
import json
import re
import statistics
from bisect import bisect_left
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from clonewatch.lab.simulate import SCENARIOS, SimulatedTraffic, simulate, write

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FIELDS = {
    "ts": str, "client_id": str, "ip": str, "method": str, "path": str, "status": int,
    "latency_ms": float, "model": str, "prompt": str, "features": list, "params": dict,
    "tokens_in": int, "tokens_out": int, "user_agent": str, "request_id": str, "asn": int,
    "key_created": str, "turns": int,
}
PARAMS = {"temperature": (float,), "max_tokens": (int,), "logprobs": (bool, int),
          "top_logprobs": (int,), "n": (int,), "logit_bias": (dict,)}


@pytest.fixture(scope="module")
def full() -> SimulatedTraffic:
    return simulate("full", seed=3, scale=0.25)


@pytest.fixture(scope="module")
def campaigns() -> SimulatedTraffic:
    return simulate("campaign", seed=1, scale=0.4)


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _by_client(traffic: SimulatedTraffic) -> dict[str, list[tuple[dict, dict]]]:
    grouped: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for event, note in zip(traffic.events, traffic.annotations, strict=True):
        grouped[event["client_id"]].append((event, note))
    return grouped


def _kinds(traffic: SimulatedTraffic) -> dict[str, str]:
    return {entry["client_id"]: entry["kind"] for entry in traffic.labels}


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path):
    first = write(simulate("demo", seed=5, scale=0.3), tmp_path / "a")
    again = write(simulate("demo", seed=5, scale=0.3), tmp_path / "b")
    other = write(simulate("demo", seed=6, scale=0.3), tmp_path / "c")
    assert first.events.read_bytes() == again.events.read_bytes()
    assert first.labels.read_bytes() == again.labels.read_bytes()
    assert first.events.read_bytes() != other.events.read_bytes()


def test_every_record_is_canonical(full):
    last = ""
    for event in full.events:
        assert set(event) <= set(FIELDS), set(event) - set(FIELDS)
        for name, value in event.items():
            assert isinstance(value, FIELDS[name]) and not isinstance(value, bool), (name, value)
        assert RFC3339.match(event["ts"]) and event["ts"] >= last
        last = event["ts"]
        assert event["client_id"].strip() and event["method"] == "POST"
        assert event["path"].startswith("/v1/") and 100 <= event["status"] < 600
        assert event["latency_ms"] >= 0
        assert ("prompt" in event) != ("features" in event)
        if "features" in event:
            assert event["features"] and all(isinstance(x, float) for x in event["features"])
        for name, value in event.get("params", {}).items():
            assert isinstance(value, PARAMS[name]), (name, value)
        assert event.get("tokens_in", 0) >= 0 and event.get("tokens_out", 0) >= 0
        if "key_created" in event:
            assert RFC3339.match(event["key_created"]) and event["key_created"] < event["ts"]
    assert len({event["request_id"] for event in full.events}) == len(full.events)


def test_records_parse_with_the_canonical_schema(full):
    access_event = pytest.importorskip("schemas.access_event")
    msgspec = pytest.importorskip("msgspec")
    for event in full.events[:3000]:
        msgspec.convert(event, access_event.AccessEvent)


def test_dimensions_are_consistent_per_api(full):
    dims = {len(event["features"]) for event in full.events if "features" in event}
    assert len(dims) == 1


@pytest.mark.parametrize("scenario", ["full", "demo"])
def test_chat_requests_say_how_deep_into_a_conversation_they_are(full, scenario):
    """Every chat request says how many earlier answers it carries, and only chat requests
    do; a follow-up's input tokens include the conversation it resends (the full scenario's
    gateway at this seed logs no tokens, the demo's does)."""
    events = full.events if scenario == "full" else simulate("demo", seed=1, scale=0.2).events
    chats = [e for e in events if e["path"] == "/v1/chat/completions"]
    assert all("turns" in e for e in chats)
    assert not any("turns" in e for e in events if e["path"] != "/v1/chat/completions")
    follow_ups = [e for e in chats if e["turns"] > 0]
    assert 0 < len(follow_ups) < len(chats)
    logged = [e for e in follow_ups if "tokens_in" in e]
    assert (len(logged) > 0) == (scenario == "demo")
    assert all(e["tokens_in"] > len(e["prompt"]) / 3.8 + 20 for e in logged)


def test_labels_cover_every_client_exactly_once(full):
    ids = [entry["client_id"] for entry in full.labels]
    assert len(ids) == len(set(ids)) and set(ids) == {e["client_id"] for e in full.events}
    for entry in full.labels:
        assert set(entry) == {"client_id", "label", "kind", "campaign"}
        assert entry["label"] in ("benign", "attack")
        assert (entry["campaign"] is not None) == (entry["kind"] == "campaign")
    assert {entry["kind"] for entry in full.labels if entry["label"] == "attack"} == {
        "extraction", "boundary", "random", "synthetic", "boundary_search", "mixed", "natural", "distill", "adaptive", "logits", "campaign"
    }


def test_attackers_use_the_same_field_conventions_as_benign_clients(full):
    labels = {entry["client_id"]: entry["label"] for entry in full.labels}
    fields: dict[str, set[str]] = defaultdict(set)
    agents: dict[str, set[str]] = defaultdict(set)
    for event in full.events:
        fields[labels[event["client_id"]]] |= set(event)
        agents[labels[event["client_id"]]].add(event.get("user_agent"))
    assert fields["attack"] <= fields["benign"]
    # most attack user agents are also used by some benign client
    assert len(agents["attack"] & agents["benign"]) >= 0.7 * len(agents["attack"])


def test_campaign_keys_stay_small_and_under_100_requests_per_minute(campaigns):
    members: dict[str, list[str]] = defaultdict(list)
    for entry in campaigns.labels:
        if entry["campaign"]:
            members[entry["campaign"]].append(entry["client_id"])
    assert len(members) == 3
    grouped = _by_client(campaigns)
    for keys in members.values():
        assert 10 <= len(keys) <= 50
        for key in keys:
            times = [_epoch(event["ts"]) for event, _ in grouped[key]]
            assert len(times) < 300
            busiest = max(i - bisect_left(times, t - 60) + 1 for i, t in enumerate(times))
            assert busiest < 100


def test_campaign_keys_split_the_sweep_between_them(campaigns):
    assert SCENARIOS["campaign"].campaigns[0][0] == "hosting"
    grouped = _by_client(campaigns)
    keys = [e["client_id"] for e in campaigns.labels if e["campaign"] == "campaign-1"]
    per_key = [{note["topic"] for _, note in grouped[key]} for key in keys]
    assert max(len(topics) for topics in per_key) <= 4  # each key looks focused
    assert len(set().union(*per_key)) >= 30  # together they sweep nearly everything


def test_scale_changes_sizes():
    small, large = simulate("benign", scale=0.15), simulate("benign", scale=0.4)
    assert len(large.labels) > 2 * len(small.labels)
    assert len(large.events) > 2 * len(small.events)
    assert all(entry["label"] == "benign" for entry in large.labels)


def test_benign_users_are_focused_and_sweepers_are_broad():
    traffic = simulate("text-extraction", seed=4, scale=0.4)
    kinds = _kinds(traffic)
    topics = {cid: {note["topic"] for _, note in rows}
              for cid, rows in _by_client(traffic).items()}
    chat = [len(topics[cid]) for cid, kind in kinds.items() if kind == "chat_user"]
    sweeps = [len(topics[cid]) for cid, kind in kinds.items() if kind == "extraction"]
    assert max(chat) <= 3 and statistics.median(chat) <= 2
    assert len(sweeps) == 3 and min(sweeps) >= 25


def test_mixed_attackers_hide_among_cover_traffic():
    traffic = simulate("mixed", seed=0, scale=0.3)
    kinds = _kinds(traffic)
    for cid, rows in _by_client(traffic).items():
        if kinds[cid] == "mixed":
            roles = Counter(note["role"] for _, note in rows)
            assert 0.2 <= roles["cover"] / len(rows) <= 0.6


def test_every_scenario_builds_and_has_the_expected_cast():
    for name, spec in SCENARIOS.items():
        traffic = simulate(name, scale=0.1)
        attackers = [entry for entry in traffic.labels if entry["label"] == "attack"]
        assert traffic.events, name
        assert bool(attackers) == bool(spec.attacks or spec.campaigns), name


def test_start_moves_the_window():
    traffic = simulate("demo", scale=0.1, start="2027-03-01T12:00:00Z")
    assert traffic.events[0]["ts"] >= "2027-03-01T12:00:00.000Z"
    assert traffic.events[-1]["ts"] < "2027-03-02T12:00:00.000Z"


def test_a_later_day_brings_the_same_customers_back_with_new_requests():
    monday, tuesday = simulate("benign", seed=7, scale=0.15), simulate("benign", seed=7, scale=0.15, day=1)
    assert monday.labels == tuesday.labels  # the same keys, each the same kind of customer
    assert tuesday.events[0]["ts"] >= "2026-11-24T00:00:00.000Z" > monday.events[-1]["ts"]

    def habits(traffic):
        seen = defaultdict(lambda: (set(), set(), set()))
        for event in traffic.events:
            nets, agents, models = seen[event["client_id"]]
            nets.add(event.get("asn")), agents.add(event.get("user_agent")), models.add(event.get("model"))
        return dict(seen)

    before, after = habits(monday), habits(tuesday)
    same = sum(before[c] == after[c] for c in before)
    assert same >= 0.9 * len(before)  # from the same networks, with the same SDKs, to the same models
    prompts = [{e.get("prompt") or str(e.get("features")) for e in day.events} for day in (monday, tuesday)]
    assert len(prompts[0] & prompts[1]) < 0.3 * len(prompts[1])  # but asking new things
    assert simulate("benign", seed=7, scale=0.15, day=0).events == monday.events  # day 0 is the day as it always was


def test_cli_writes_files_and_summarises(tmp_path, capsys):
    from clonewatch.commands import simulate as command

    parser = argparse.ArgumentParser(prog="clonewatch")
    command.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--scenario", "demo", "--out", str(tmp_path),
                              "--seed", "2", "--scale", "0.2"])
    assert args.func(args) == 0
    summary = capsys.readouterr().out
    assert "events" in summary and "extraction=1" in summary
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert lines and all("label" not in json.loads(line) for line in lines[:200])
    assert {entry["client_id"] for entry in labels} == {
        json.loads(line)["client_id"] for line in lines
    }
    listing = parser.parse_args(["simulate", "--list"])
    assert listing.func(listing) == 0 and "campaign" in capsys.readouterr().out


def test_natural_input_attackers_send_ordinary_queries_evenly_over_the_domain(full):
    """Knockoff-style attackers: each query is an in-domain input like a customer's, but the
    chat attacker's questions spread over many more topics than any one customer's."""
    natural = {e["client_id"] for e in full.labels if e["kind"] == "natural"}
    topics: dict[str, set] = defaultdict(set)
    for event, note in zip(full.events, full.annotations):
        if note["topic"] is not None:
            topics[event["client_id"]].add(note["topic"])
    chat_users = [len(topics[e["client_id"]]) for e in full.labels if e["kind"] == "chat_user" and topics[e["client_id"]]]
    broadest = max(len(topics[c]) for c in natural if topics[c])
    assert broadest > 3 * max(chat_users)


def test_logit_recovery_resends_each_prompt_with_a_new_bias_and_customers_keep_theirs(full):
    """The logit-recovery attackers (Carlini et al. 2024) send each prompt many times, a
    different logit_bias each time, one token out at temperature 0; customers who bias their
    answers (classifiers, multiple-choice evaluations) keep one map for every request."""
    kinds = {entry["client_id"]: (entry["label"], entry["kind"]) for entry in full.labels}
    maps: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for event in full.events:
        if "logit_bias" in event.get("params", {}):
            maps[event["client_id"]][event["prompt"]].add(json.dumps(event["params"]["logit_bias"], sort_keys=True))
            if kinds[event["client_id"]][1] == "logits":
                assert event["params"]["temperature"] == 0.0 and event["params"]["max_tokens"] == 1
    attackers = [c for c, (_, kind) in kinds.items() if kind == "logits"]
    customers = [c for c in maps if kinds[c][0] == "benign"]
    assert len(attackers) == 2 and customers, "both sides of the signal are in the traffic"
    for client in attackers:
        per_prompt = [len(biases) for biases in maps[client].values()]
        assert min(per_prompt) >= 1 and sorted(per_prompt)[len(per_prompt) // 2] >= 20
    assert all(len({b for biases in maps[c].values() for b in biases}) == 1 for c in customers)
