"""Campaigns across keys: grouping, scoring as one client, storage and memory bounds.

The traffic is generated here on a numeric-features API: 24 topics (clusters) in an
8-dimensional input space; benign customers each query one or two topics at human pace.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from clonewatch.streaming.processing import decode_fact, decode_verdict, encode, encode_fact, expected_partition
from detectors.assessment import Assessment
from detectors.campaign_stage import CampaignStage, gather_evidence
from detectors.campaigns import Campaign, CampaignTracker, campaign_row, overlap_test
from detectors.client_state import ClientState
from detectors.detector import CloneDetector, project
from detectors.evidence import SequentialTest
from detectors.model import CloneModel
from detectors.policy import Policy, PolicyConfig
from detectors.training import fit_clone_model
from schemas import AccessEvent, to_rfc3339

DIM = 8
TOPICS = np.random.default_rng(1234).normal(size=(24, DIM)) * 4
START = 1795392000.0  # 2026-11-23T00:00:00Z


class World:
    """Seeded generator of keys; every key is (metadata, times, topics of its queries)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.serial = 0

    def _key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:04d}"

    def _events(self, cid, times, topics, ip, agent, created) -> list[AccessEvent]:
        rows = TOPICS[topics] + self.rng.normal(size=(len(topics), DIM))
        return [
            AccessEvent(ts=float(t), client_id=cid, ip=ip, user_agent=agent, key_created=to_rfc3339(created),
                        features=[round(float(x), 4) for x in row], status=200)
            for t, row in zip(times, rows)
        ]  # fmt: skip

    def _human_times(self, n: int, start: float) -> np.ndarray:
        return start + np.cumsum(self.rng.exponential(90.0, n) * self.rng.choice([1, 1, 1, 12], n))

    def customer(
        self, ip: str | None = None, agent: str | None = None, topics: list[int] | None = None, n: int = 0
    ) -> list[AccessEvent]:
        """A benign key focused on one or two topics, at human pace."""
        topics = topics or list(self.rng.choice(len(TOPICS), self.rng.integers(1, 3), replace=False))
        n = n or int(self.rng.integers(15, 50))
        ip = ip or f"{self.rng.integers(11, 223)}.{self.rng.integers(256)}.{self.rng.integers(256)}.{self.rng.integers(2, 254)}"
        agent = agent or f"app/{self.rng.integers(40)}"
        created = START - self.rng.uniform(5, 400) * 86400
        return self._events(self._key("user"), self._human_times(n, START + self.rng.uniform(0, 40000)),
                            self.rng.choice(topics, n), ip, agent, created)  # fmt: skip

    def company(self, keys: int) -> list[list[AccessEvent]]:
        """One company's keys behind a NAT /24 with one in-house client: same two topics, heavy use."""
        topics = [int(t) for t in self.rng.choice(len(TOPICS), 2, replace=False)]
        return [
            self.customer(f"198.51.100.{self.rng.integers(2, 254)}", "CorpAssistant/2.1", topics, int(self.rng.integers(40, 80)))
            for _ in range(keys)
        ]

    def carrier_crowd(self, keys: int) -> list[list[AccessEvent]]:
        """Unrelated customers behind one carrier-grade NAT /24: their union is broad, as strangers' is."""
        return [self.customer(f"192.0.2.{self.rng.integers(2, 254)}") for _ in range(keys)]

    def campaign(self, keys: int, per_key: int) -> list[list[AccessEvent]]:
        """One operator's sweep of every topic split over ``keys`` fresh keys (each on its own few), human-paced."""
        burst = START - 2 * 86400
        out = []
        for i in range(keys):
            times = self._human_times(per_key, START + self.rng.uniform(20000, 50000))  # after the tracker has seen customers
            ip = f"203.0.113.{self.rng.integers(2, 254)}"
            mine = np.arange(i, len(TOPICS), keys)
            out.append(self._events(self._key("bot"), times, self.rng.choice(mine, per_key), ip,
                                    "python-requests/2.32.3", burst + self.rng.uniform(0, 1800)))  # fmt: skip
        return out


def merged(keys: list[list[AccessEvent]]) -> list[AccessEvent]:
    return sorted((e for key in keys for e in key), key=lambda e: (e.ts, e.client_id))


def vectors_of(events: list[AccessEvent]) -> list[np.ndarray]:
    return [np.asarray(e.features, dtype=np.float32) for e in events]


@pytest.fixture(scope="module")
def model() -> CloneModel:
    world = World(seed=1)
    events = merged([world.customer() for _ in range(120)])
    return fit_clone_model(events, vectors_of(events), n_estimators=100)


@pytest.fixture(scope="module")
def traffic() -> dict[str, list[list[AccessEvent]]]:
    world = World(seed=2)
    return {
        "benign": [world.customer() for _ in range(60)],
        "company": world.company(12),
        "crowd": world.carrier_crowd(20),
        "campaign": world.campaign(keys=24, per_key=12),
    }


def run(model: CloneModel, events: list[AccessEvent], tracker: CampaignTracker | None, batch: int = 200):
    """Stream ``events`` in batches; each client's first non-allow decision and latest score."""
    detector = CloneDetector(model, Policy(), campaigns=tracker)
    states: dict[str, ClientState] = {}
    first_flag: dict[str, int] = {}  # client -> index in the stream of its first non-allow decision
    scores = {}
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        result = detector.process(chunk, vectors_of(chunk), states)
        for decision in result.decisions:
            if decision.action.value != "allow" and decision.client_id not in first_flag:
                index = next(i for i, e in enumerate(chunk) if to_rfc3339(e.ts) == decision.ts)  # the event that decided it
                first_flag[decision.client_id] = start + index
        scores.update({s.client_id: s for s in result.scores})
    return first_flag, scores


def ids(keys: list[list[AccessEvent]]) -> set[str]:
    return {key[0].client_id for key in keys}


@pytest.fixture(scope="module")
def streamed(model, traffic):
    """The whole traffic through the detector with a campaign tracker and without one."""
    events = merged([key for group in traffic.values() for key in group])
    tracker = CampaignTracker(window=model.window)
    return events, tracker, run(model, events, tracker), run(model, events, None)


def test_slow_and_low_campaign_is_one_flagged_campaign_while_shared_nats_are_left_alone(traffic, streamed):
    events, tracker, (first_flag, scores), (alone, _) = streamed
    bots, company, crowd = ids(traffic["campaign"]), ids(traffic["company"]), ids(traffic["crowd"])
    campaign_ids = {tracker.campaign_of(b) for b in bots}
    assert len(campaign_ids) == 1 and None not in campaign_ids
    (camp,) = campaign_ids
    assert tracker.campaigns[camp].members == bots  # nobody else is pulled in
    assert bots <= first_flag.keys()
    # Both NATs are candidates (unusually large /24s here), yet neither is flagged as a campaign.
    assert tracker.campaign_of(min(company)) is not None and tracker.campaign_of(min(crowd)) is not None
    assert not (company | crowd) & first_flag.keys()
    # The tracker adds no false positive: benign keys flagged are those the per-client detector flags anyway.
    benign = ids(traffic["benign"])
    assert benign & first_flag.keys() == benign & alone.keys()
    # Flagged early: two thirds of the campaign's queries come after its first flag.
    bot_rows = [i for i, e in enumerate(events) if e.client_id in bots]
    served = sum(i < min(first_flag[b] for b in bots) for i in bot_rows)
    assert served < len(bot_rows) / 3
    # Explained: members carry the campaign id and a readable campaign reason.
    member = scores[next(e.client_id for e in reversed(events) if e.client_id in bots)]
    assert member.campaign_id == camp
    tied = "network, user agent, key creation time, complementary coverage"
    assert re.match(rf"campaign {camp}: \d+ keys tied by {tied}; union coverage [\d.]+x benign", member.reasons[0])


def test_two_scorers_and_a_campaign_stage_elsewhere_act_as_the_detector_in_one_process(model, traffic, streamed):
    """The workers' split: two scorers (keys by partition) send facts over the wire to one
    stage, whose verdicts come back a batch later. The stage finds the same campaign and the
    same clients are acted on as by ``clonewatch run``'s detector, every campaign member among them."""
    events, _, (first_flag, _), _ = streamed
    policy = Policy()
    scorers = [CloneDetector.from_model(model, policy, campaigns="elsewhere") for _ in range(2)]
    states: list[dict[str, ClientState]] = [{}, {}]
    stage = CampaignStage(model, policy)
    final: dict[str, str] = {}
    verdicts: list = []
    for start in range(0, len(events), 200):
        chunk, facts = events[start : start + 200], []
        for k, scorer in enumerate(scorers):
            decisions = scorer.apply_verdicts([v for v in verdicts if expected_partition(v.client_id.encode(), 2) == k], states[k])
            part = [e for e in chunk if expected_partition(e.client_id.encode(), 2) == k]
            result = scorer.process(part, vectors_of(part), states[k])
            final.update((d.client_id, d.action.value) for d in decisions + result.decisions)
            facts += [decode_fact(encode_fact(f)) for f in result.facts]
        staged = stage.process(facts + facts[:50])  # a scorer's replayed facts count once
        verdicts = [decode_verdict(encode(v)) for _, v in staged.verdicts]
    bots = ids(traffic["campaign"])
    assert {c for c, action in final.items() if action != "allow"} == first_flag.keys() >= bots
    assert stage.tracker.campaigns[stage.tracker.campaign_of(min(bots))].members == bots
    assert all(states[expected_partition(b.encode(), 2)][b].campaign_id == stage.tracker.campaign_of(b) for b in bots)


def test_each_key_alone_stays_under_the_per_client_detector(traffic, streamed):
    """The baseline the campaign tracker improves on: per client, these keys look like customers."""
    _, _, _, (alone, scores) = streamed
    assert len(ids(traffic["campaign"]) & alone.keys()) <= 0.25 * len(traffic["campaign"])
    assert all(s.campaign_id is None and not any(r.startswith("campaign") for r in s.reasons) for s in scores.values())


def test_tracker_leaves_clients_outside_campaigns_exactly_as_without_it(streamed):
    _, tracker, (first_flag, scores), (alone, alone_scores) = streamed
    outside = {c for c in scores if tracker.campaign_of(c) is None}
    assert len(outside) > 50
    assert {c: first_flag[c] for c in outside & first_flag.keys()} == {c: alone[c] for c in outside & alone.keys()}
    assert {c: (scores[c].risk, scores[c].reasons) for c in outside} == {
        c: (alone_scores[c].risk, alone_scores[c].reasons) for c in outside
    }


def test_a_crowd_merged_into_one_state_is_not_read_as_one_fast_broad_client(model, traffic):
    """Superposed streams look fast, dense and broad; scored as the tracker scores a
    one-dimension group, the crowd behind a carrier NAT stays far below throttling."""
    crowd = merged(traffic["crowd"])
    state = ClientState(window=model.window)
    rows = []
    for event, (space, vector, region, distance) in zip(crowd, project(model.references, crowd, vectors_of(crowd))):
        state.learn_one(event, space, vector, region, distance)
        rows.append(campaign_row(state, model.references, coverage=None, breadth=False))
    assert model.risk.risk(np.stack(rows)).max() < 0.9


def test_a_shared_slash24_is_weighed_against_how_common_big_nats_are():
    def tracker_with(nat_sizes: list[int]) -> CampaignTracker:
        tracker = CampaignTracker()
        for n, size in enumerate(nat_sizes):
            for k in range(size):
                tracker.learn_one(AccessEvent(ts=START + n, client_id=f"c{n}-{k}", ip=f"10.{n // 256}.{n % 256}.{k + 2}"))
        return tracker

    office = [8]
    assert tracker_with([1] * 300 + office).campaign_of("c300-0") is not None  # unusual among single-key networks
    assert tracker_with([8] * 40 + [1] * 260 + office).campaign_of("c300-0") is None  # ordinary where NATs are common


def test_a_customer_sharing_only_a_cloud_network_and_an_sdk_with_a_campaign_stays_out_of_it():
    """A pair of facets that clients also share by chance (a cloud ASN, a popular SDK) admits a
    client only when a second tie covers it too. The campaign's keys reveal the pair in either
    order (some send a user agent from their second request on): that is one tie, not two, and
    the customer, whom nothing else ties, stays out."""
    tracker, clock = CampaignTracker(), iter(range(10_000))

    def learn(client_id: str, **fields) -> None:
        tracker.learn_one(AccessEvent(ts=START + next(clock), client_id=client_id, **fields))

    for i in range(180):  # strangers: a few on the cloud network, a few with the SDK
        agent = "sdk/1.0" if 7 <= i < 14 else f"app/{i}"
        learn(f"stranger{i}", ip=f"10.{i}.0.9", asn=64500 if i < 7 else 64600 + i, user_agent=agent)
    learn("customer", ip="203.0.113.9", asn=64500, user_agent="sdk/1.0")
    created = to_rfc3339(START - 86400)  # the campaign's keys were created in one burst
    for i in range(12):
        first = {"asn": 64500} if i % 2 else {"user_agent": "sdk/1.0"}
        learn(f"key{i}", ip=f"198.51.{i}.9", key_created=created, **first)
        learn(f"key{i}", ip=f"198.51.{i}.9", key_created=created, asn=64500, user_agent="sdk/1.0")
    assert all(tracker.campaign_of(f"key{i}") is not None for i in range(12))
    assert tracker.campaign_of("customer") is None


def test_customers_of_one_isp_with_one_browser_version_are_not_a_campaign_by_that_alone():
    """An ISP and a browser version go together in one country's traffic far more than
    independence says: rare as the pair is among everyone, it admits only clients that a
    second tie covers too."""
    tracker, clock = CampaignTracker(), iter(range(10_000))
    for i in range(300):  # strangers: other ISPs, other browsers
        tracker.learn_one(AccessEvent(ts=START + next(clock), client_id=f"stranger{i}", ip=f"10.{i // 250}.{i % 250}.9", asn=64600 + i % 50, user_agent=f"browser/{i % 40}"))
    for i in range(5):  # four customers and a prober on the same ISP and browser version, each on its own line
        tracker.learn_one(AccessEvent(ts=START + next(clock), client_id=f"home{i}", ip=f"198.51.{i}.9", asn=64500, user_agent="Firefox/132.0"))
    assert all(tracker.campaign_of(f"home{i}") is None for i in range(5))


def test_complementary_coverage_means_less_overlap_than_strangers():
    rng = np.random.default_rng(5)
    population = np.full(48, 20)
    split = np.zeros((12, 48), dtype=bool)
    for i in range(12):
        split[i, 4 * i : 4 * i + 4] = True  # a sweep dealt out in disjoint slices
    focused = np.zeros((12, 48), dtype=bool)
    focused[:, rng.choice(48, 6, replace=False)] = True  # coworkers on the same few regions
    focused[np.arange(12), rng.integers(0, 48, 12)] = True
    assert overlap_test(split, population, 200).complementary(1e-4)
    assert not overlap_test(focused, population, 200).complementary(1e-4)


def test_tracker_round_trips_through_bytes_and_carries_on_identically(model, traffic):
    events = merged(traffic["campaign"] + traffic["benign"][:30])
    projected = project(model.references, events, vectors_of(events))
    half = len(events) // 2

    def learn(tracker: CampaignTracker, rows: range) -> None:
        for i in rows:
            space, vector, region, novelty = projected[i]
            tracker.learn_one(events[i], region, space=space, vector=vector, novelty=novelty)

    whole = CampaignTracker(window=model.window)
    learn(whole, range(half))
    restored = CampaignTracker.from_bytes(whole.to_bytes())
    for tracker in (whole, restored):
        learn(tracker, range(half, len(events)))
    assert whole.campaigns.keys() == restored.campaigns.keys() and whole.campaigns
    for cid in whole.campaigns:
        a, b = whole.view(cid, model.references), restored.view(cid, model.references)
        assert a.summary == b.summary and a.events_seen == b.events_seen > 0
        assert np.array_equal(a.row, b.row, equal_nan=True)
    assert restored.to_bytes() == whole.to_bytes()


def test_memory_is_bounded_by_client_cap_and_idle_expiry():
    tracker = CampaignTracker(max_clients=50, idle_s=3600)
    for i in range(1000):
        event = AccessEvent(ts=START + i, client_id=f"k{i}", ip=f"203.0.{i % 3}.{i % 250 + 2}", user_agent="bot/1")
        tracker.learn_one(event, i % 9)
    assert len(tracker) == 50
    assert sum(len(c.members) for c in tracker.campaigns.values()) <= 50
    size = len(tracker.to_bytes())
    tracker.learn_one(AccessEvent(ts=START + 1000 + 2 * 3600, client_id="late", ip="192.0.2.1"))
    assert len(tracker) == 1 and not tracker.campaigns  # the idle ones are gone, their campaigns too
    assert len(tracker.to_bytes()) < size / 10


def test_merged_stream_evidence_adds_to_the_members_and_is_judged_against_benign_groups(model) -> None:
    """Keys that each look unremarkable: their product of evidence stays at 1, while the
    campaign's merged stream, far beyond every benign group, gathers evidence of its own."""
    own_test, policy = SequentialTest(weight=0.5), PolicyConfig()
    unremarkable_member = Assessment(0.5, 0.5, 20)  # its own evidence stays at 1
    without, with_test = Campaign("camp-1", ClientState()), Campaign("camp-2", ClientState())
    for n in range(40):
        alone = Assessment(0.95, 1e-4, 20 + n).join(own_test, None, without, "key-1", unremarkable_member.components, policy)
        merged = Assessment(0.95, 1e-4, 20 + n).join(own_test, SequentialTest(weight=0.5), with_test, "key-1", unremarkable_member.components, policy)
    assert alone.evidence == pytest.approx(1.0)
    assert merged.evidence > 1e6
    assert merged.risk == policy.challenge  # screened by its snapshot; evidence alone never denies
    # Training fitted that test on groups of unrelated benign customers merged as campaigns are.
    groups = model.metadata["campaign_sequential"]
    assert model.campaign_sequential is not None and groups["benign_groups"] >= 2 and min(groups["group_sizes"]) >= 3


def test_members_evidence_multiplies_bet_by_bet_and_joins_with_them() -> None:
    """Eight keys, each only mildly unusual (evidence under 10 apiece), are certain together;
    a key brings the evidence it gathered before the campaign was found."""
    test = SequentialTest(weight=0.02)  # as strongly correlated as a client's windowed scores
    key_state = test.initial()
    for _ in range(40):
        key_state = test.update(key_state, 0.01)
    assert 1.0 < test.evidence(key_state) < 10.0

    campaign = Campaign("camp-1", ClientState(), members={f"key-{i}" for i in range(8)})
    states = {f"key-{i}": ClientState() for i in range(8)}
    for state in states.values():
        state.evidence = key_state.tolist()
    gather_evidence(campaign, {key: state.evidence for key, state in states.items()})
    assert set(campaign.evidence) == campaign.members
    per_member_mixture = 8 * np.log(test.evidence(key_state))
    assert campaign.log_evidence() > per_member_mixture + 0.5  # the mixture's cost is paid once, not per key
    assert np.exp(campaign.log_evidence()) > 2000.0  # the default throttle's bar (0.9995)

    tracker = CampaignTracker()
    tracker.campaigns["camp-1"] = campaign
    restored = CampaignTracker.from_bytes(tracker.to_bytes())
    assert restored.campaigns["camp-1"].log_evidence() == pytest.approx(campaign.log_evidence())
