"""A fresh key that sends again a query refused on another key takes on that key's action."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from detectors.campaign_stage import CampaignStage
from detectors.detector import CloneDetector
from detectors.policy import Policy
from detectors.retries import RetryTracker, query_fingerprint
from detectors.training import fit_clone_model
from schemas import AccessEvent, CampaignFact

START = 1795392000.0


def ask(client: str, ts: float, prompt: str) -> AccessEvent:
    return AccessEvent(ts=ts, client_id=client, prompt=prompt, status=200)


def fact(event: AccessEvent, seen: int, action: str = "allow", risk: float = 0.1) -> CampaignFact:
    return CampaignFact(event, events_seen=seen, action=action, risk=risk)


@pytest.fixture
def refused_key() -> list[CampaignFact]:
    """Customers, then a key that is throttled after 30 queries and keeps sending."""
    facts = [fact(ask(f"user{i}", START + i, "hello"), 1) for i in range(20)]
    facts += [fact(ask("old", START + 100 + i, f"sweep item {i}"), i + 1) for i in range(30)]
    facts += [fact(ask("old", START + 200 + i, f"sweep item {30 + i}"), 31 + i, "throttle", 0.9996) for i in range(3)]
    return facts


def verdicts_of(stage: CampaignStage, facts: list[CampaignFact]) -> list[tuple[str, str, float]]:
    return [(v.client_id, v.action.value, v.risk) for _, v in stage.process(facts).verdicts]


def test_a_new_key_resending_a_refused_query_takes_on_the_refused_keys_action(refused_key):
    stage = CampaignStage(None, Policy())
    assert verdicts_of(stage, refused_key) == []
    later = START + 202 + 600  # ten minutes after its last refusal, from a fresh key
    result = stage.process([fact(ask("fresh", later, "sweep item 32"), 1)])
    [(_, verdict)] = result.verdicts
    assert (verdict.client_id, verdict.action.value, verdict.risk) == ("fresh", "throttle", 0.9996)
    assert "refused on key old" in verdict.reasons[0]
    # its successor, refused in turn, hands the action on along one chain
    stage.process([fact(ask("fresh", later + 5, "sweep item 33"), 2, "throttle", 0.9996)])
    [(_, next_one)] = stage.process([fact(ask("fresher", later + 600, "sweep item 33"), 1)]).verdicts
    assert next_one.client_id == "fresher" and next_one.campaign_id == verdict.campaign_id


@pytest.mark.parametrize(
    "case",
    [
        "a query sent while the key was still allowed", "an earlier refused query", "a common query", "an old customer",
        "a day later", "its fourth query", "the refused key allowed again",
    ],
)
def test_nothing_else_ties_a_key_to_a_refused_one(refused_key, case):
    stage = CampaignStage(None, Policy())
    stage.process(refused_key)
    later = START + 800
    facts = {
        "a query sent while the key was still allowed": [fact(ask("fresh", later, "sweep item 5"), 1)],
        "an earlier refused query": [fact(ask("fresh", later, "sweep item 31"), 1)],
        "a common query": [fact(ask("user0", START + 210, "sweep item 32"), 50), fact(ask("fresh", later, "sweep item 32"), 1)],
        "an old customer": [fact(ask("user1", later, "sweep item 32"), 40)],
        "a day later": [fact(ask("fresh", START + 202 + 86400, "sweep item 32"), 1)],
        "the refused key allowed again": [fact(ask("old", START + 300, "thanks"), 34), fact(ask("fresh", later, "sweep item 32"), 1)],
        "its fourth query": [fact(ask("fresh", later + i, f"new {i}"), i + 1) for i in range(3)] + [fact(ask("fresh", later + 9, "sweep item 32"), 4)],
    }[case]
    assert verdicts_of(stage, facts) == []


def test_a_key_the_baseline_knows_is_never_taken_for_a_fresh_one(refused_key):
    """A returning customer whose third question is, word for word, the sweep's last refused
    query (seen on the benchmark's returning customers: a chat user challenged) is not tied."""
    question = [fact(ask("regular", START + 800 + i, q), i + 1) for i, q in enumerate(["hi", "and?", "sweep item 32"])]
    assert verdicts_of(CampaignStage(None, Policy(), known_clients={"regular"}), refused_key + question) == []
    assert verdicts_of(CampaignStage(None, Policy()), refused_key + question) == [("regular", "throttle", 0.9996)]


def test_the_stage_remembers_refused_queries_across_a_restart(refused_key):
    stage = CampaignStage(None, Policy())
    stage.process(refused_key)
    restored = CampaignStage.from_bytes(stage.to_bytes(), None, Policy())
    assert verdicts_of(restored, [fact(ask("fresh", START + 900, "sweep item 32"), 1)]) == [("fresh", "throttle", 0.9996)]


def test_numeric_queries_have_fingerprints_and_bodiless_requests_have_none():
    features = AccessEvent(ts=START, client_id="a", features=[0.5, 1.0])
    assert query_fingerprint(features) == query_fingerprint(msgspec.structs.replace(features, client_id="b"))
    assert query_fingerprint(features) != query_fingerprint(msgspec.structs.replace(features, features=[0.5, 1.5]))
    assert query_fingerprint(AccessEvent(ts=START, client_id="a")) is None
    with pytest.raises(ValueError):
        RetryTracker(horizon_s=0)


def test_through_the_detector_the_fresh_key_is_throttled_at_its_first_query():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(40, 4))

    def numeric(client: str, ts: float, x: np.ndarray) -> AccessEvent:
        return AccessEvent(ts=ts, client_id=client, features=[round(float(v), 4) for v in x], status=200)

    base = [numeric(f"c{c}", START + 60 * i + c, centers[c] + rng.normal(scale=0.3, size=4)) for i in range(20) for c in range(40)]
    model = fit_clone_model(base, [np.asarray(e.features, np.float32) for e in base], n_estimators=50)
    detector, states = CloneDetector.from_model(model), {}
    sweep = [numeric("old", START + 2000 + i, rng.uniform(-9, 9, size=4)) for i in range(40)]
    detector.process(sweep[:30], [np.asarray(e.features, np.float32) for e in sweep[:30]], states)
    states["old"].action, states["old"].campaign_risk = "throttle", 0.9996  # as its evidence would have left it
    detector.process(sweep[30:], [np.asarray(e.features, np.float32) for e in sweep[30:]], states)
    retry = msgspec.structs.replace(sweep[-1], client_id="fresh", ts=START + 2600.0)
    result = detector.process([retry], [np.asarray(retry.features, np.float32)], states)
    assert [(d.client_id, d.action.value) for d in result.decisions] == [("fresh", "throttle")]
    assert states["fresh"].action == "throttle"
    # a customer of the baseline sending the same query among its first of the day is no fresh key
    assert model.known_clients == {f"c{c}" for c in range(40)}
    customer = msgspec.structs.replace(retry, client_id="c7", ts=START + 2601.0)
    assert detector.process([customer], [np.asarray(customer.features, np.float32)], states).decisions == []
    warm_up = fit_clone_model(base, [np.asarray(e.features, np.float32) for e in base], n_estimators=50, contaminated=True)
    assert warm_up.known_clients == frozenset()  # a warm-up is no known-good baseline: its keys may be the attackers'


def test_what_is_saved_grows_with_refused_keys_not_with_traffic():
    tracker = RetryTracker()
    for i in range(5000):
        tracker.learn_one(f"user{i % 100}", START + i, f"question {i}".encode(), events_seen=50, refused=False)
    for i in range(300):
        tracker.learn_one("sweeper", START + 5000 + i, f"pool item {i}".encode(), events_seen=100 + i, refused=True)
    saved = tracker.to_bytes()
    assert len(tracker) == 5300 and len(saved) < 500
    restored = RetryTracker.from_bytes(saved)
    assert restored.learn_one("fresh", START + 6000, b"pool item 299", events_seen=1, refused=False) == "sweeper"
    assert restored.learn_one("fresh2", START + 6001, b"pool item 298", events_seen=1, refused=False) is None
