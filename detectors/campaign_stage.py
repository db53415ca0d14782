"""The campaign stage: campaigns across every key, each assessed as one client, and the
verdicts that reach their members.

Per-client scoring splits over workers by key; campaigns cannot, since an operator's keys
land on any partition. The stage reads one :class:`CampaignFact` per scored event, from
however many scorers: it groups keys with a :class:`CampaignTracker`, scores each
campaign's merged stream as one client (its snapshot, and its evidence: the members'
e-processes multiplied, and the merged stream's own), decides the campaign's action with
the policy, and answers with a :class:`CampaignVerdict` to a member when it is first seen in
a campaign and to every member when the campaign's action changes. ``clonewatch run`` calls
it inside :class:`detectors.CloneDetector`, batch by batch; the workers run it as an agent of
its own on a one-partition topic (clonewatch/streaming/app.py). The same facts in the same
order give the same verdicts either way.

>>> from schemas import AccessEvent
>>> stage = CampaignStage(None, Policy(), CampaignTracker(min_members=3))
>>> crowd = [AccessEvent(ts=1795428000 + i, client_id=f"user{i}", ip=f"10.{i}.0.9", user_agent=f"app/{i % 7}") for i in range(60)]
>>> ring = [AccessEvent(ts=1795428100 + i, client_id=f"bot{i}", ip=f"203.0.113.{i + 2}", user_agent="scraper/0.1") for i in range(5)]
>>> result = stage.process([CampaignFact(event) for event in crowd + ring])
>>> [(v.client_id, v.campaign_id, v.action.value) for _, v in result.verdicts]  # each member when first seen in it
[('bot3', 'camp-f2b198b9', 'allow'), ('bot4', 'camp-f2b198b9', 'allow')]
>>> CampaignStage.from_bytes(stage.to_bytes(), None, Policy()).tracker.campaign_of("bot4")
'camp-f2b198b9'
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from detectors.assessment import Assessment, readable_reasons
from detectors.campaigns import Campaign, CampaignTracker, CampaignView
from detectors.model import CloneModel
from detectors.policy import Policy
from detectors.retries import RetryTracker, query_fingerprint
from schemas import Action, CampaignFact, CampaignScore, CampaignVerdict, to_epoch, to_rfc3339


@dataclass
class StageResult:
    verdicts: list[tuple[int, CampaignVerdict]] = field(default_factory=list)  # (index of the fact that led to it, verdict)
    campaigns: list[CampaignScore] = field(default_factory=list)  # the latest state of each campaign a fact touched
    learned: int = 0  # facts learned, those seen before not counted


def gather_evidence(campaign: Campaign, evidence: Mapping[str, Sequence[float]]) -> None:
    """Members that joined with evidence already gathered bring it along (``evidence``: each
    client's latest e-process components)."""
    for member in campaign.members - campaign.evidence.keys():
        components = evidence.get(member)
        if components:
            campaign.evidence[member] = list(components)


class CampaignStage:
    """Groups, assesses and decides campaigns from facts; remembers what it told each member.

    ``model`` scores the merged streams (None: the tracker alone, no assessment), ``policy``
    decides a campaign's action as it decides a client's. :meth:`to_bytes` holds everything,
    for a changelog-backed table.
    """

    def __init__(
        self,
        model: CloneModel | None,
        policy: Policy,
        tracker: CampaignTracker | None = None,
        retries: RetryTracker | None = None,
        known_clients: Collection[str] | None = None,
    ) -> None:
        self.model = model
        self._known_clients = known_clients
        self.policy = policy
        self.tracker = tracker if tracker is not None else CampaignTracker(window=model.window if model else 200)
        self.retries = retries if retries is not None else RetryTracker()
        self._refused: OrderedDict[str, tuple[str, float]] = OrderedDict()  # client -> (action, risk) of its latest fact, if not allow
        self._lineage: OrderedDict[str, str] = OrderedDict()  # successor key -> the id of its chain of keys
        self._evidence: OrderedDict[str, list[float]] = OrderedDict()  # client -> its latest e-process components
        self._told: OrderedDict[str, str] = OrderedDict()  # member -> the campaign it was last told of
        # client -> (events_seen of its latest fact, its latest event time learned, the latest of its earlier lives)
        self._seen: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        self.facts_learned = 0  # over the stage's life, each fact once

    def process(self, facts: Sequence[CampaignFact]) -> StageResult:
        """Learn the facts in order; a fact whose client count the stage has already seen (a
        worker's replayed batch) is dropped. Verdicts name the index of their fact."""
        kept = [i for i, fact in enumerate(facts) if self._first_time(fact)]
        views = [self._learn(facts[i]) for i in kept]
        groups = self._assess(views)
        result = StageResult(learned=len(kept))
        self.facts_learned += len(kept)
        touched: dict[str, tuple[int, CampaignView, Assessment]] = {}
        for i, view, group in zip(kept, views, groups):
            fact, client = facts[i], facts[i].event.client_id
            if (verdict := self._successor(fact)) is not None:
                result.verdicts.append((i, verdict))
            if view is not None and view.campaign_id in self.tracker.campaigns:
                campaign = self.tracker.campaigns[view.campaign_id]
                gather_evidence(campaign, self._evidence)
                if self.model is not None:
                    group.join(self.model.sequential, self.model.campaign_sequential, campaign, client, fact.evidence, self.policy.config)
                touched[view.campaign_id] = (i, view, group)
                result.verdicts += [(i, verdict) for verdict in self._decide(fact, view, group, campaign)]
            if fact.evidence:
                _remember(self._evidence, client, list(fact.evidence), self.tracker.max_clients)
        result.campaigns = [
            self._score(facts[i], view, group) for cid, (i, view, group) in touched.items() if cid in self.tracker.campaigns
        ]  # a campaign merged into another later on lives on under the other's id
        return result

    def reasons(self, view: CampaignView, group: Assessment) -> list[str]:
        """The campaign's name and ties, then what drives its risk."""
        reasons = [f"campaign {view.campaign_id}: {view.summary}"]
        if group.sustained:
            reasons.append(group.evidence_reason())
        if self.model is not None:
            reasons += readable_reasons(self.model.risk, view.row)
        return reasons

    @property
    def known_clients(self) -> Collection[str]:
        """Keys the model's baseline saw at work (``known_clients`` if given): none of them is a
        fresh key, whatever it sends. A returning customer's third question can be, word for
        word, the query a sweep was refused on last."""
        if self._known_clients is not None:
            return self._known_clients
        return self.model.known_clients if self.model is not None else frozenset()

    def _successor(self, fact: CampaignFact) -> CampaignVerdict | None:
        """A verdict for a new key (not one of :attr:`known_clients`, nor a client back after a
        quiet spell that expired its state) that sends again a query
        refused on another key still refused (:class:`RetryTracker`): it takes on that key's
        action and risk."""
        client = fact.event.client_id
        before = self.retries.learn_one(
            client, to_epoch(fact.event.ts), query_fingerprint(fact.event), fact.events_seen, refused=fact.action != Action.ALLOW.value
        )  # fmt: skip
        if fact.action == Action.ALLOW.value:
            self._refused.pop(client, None)
        else:
            _remember(self._refused, client, (fact.action, fact.risk), self.tracker.max_clients)
        returning = client in self._seen and self._seen[client][2] > float("-inf")  # counting again after a quiet spell: not a new key
        if before is None or before not in self._refused or client in self.known_clients or returning:
            return None
        action, risk = self._refused[before]
        chain = self._lineage.get(before) or "keys-" + hashlib.sha256(before.encode()).hexdigest()[:8]
        _remember(self._lineage, client, chain, self.tracker.max_clients)
        return CampaignVerdict(
            client_id=client, campaign_id=chain, ts=to_rfc3339(fact.event.ts), risk=round(risk, 6), action=Action(action),
            events_seen=fact.events_seen,
            reasons=[f"a new key that sent again a query refused on key {before} (moved to a fresh key after a refusal): takes on its {action} and risk"],
        )  # fmt: skip

    def _first_time(self, fact: CampaignFact) -> bool:
        """Whether the fact is new: a higher client count than the client's latest; or, for a
        client whose count started again (its state expired after a quiet spell and it came
        back: a new life), an event later than any learned from it. A replayed fact has
        neither, and one from an earlier life is no later than that life's last event."""
        client, ts, count = fact.event.client_id, to_epoch(fact.event.ts), fact.events_seen
        seen, latest, earlier = self._seen.get(client, (0, float("-inf"), float("-inf")))
        if count and ts <= earlier:
            return False
        if not count or count > seen:
            latest = ts if latest == float("inf") else max(ts, latest)  # inf: restored from a stage that kept the count alone
        elif ts > latest:
            earlier, latest = latest, ts
        else:
            return False
        _remember(self._seen, client, (count, latest, earlier), self.tracker.max_clients)
        return True

    def _learn(self, fact: CampaignFact) -> CampaignView | None:
        vector = None if fact.vector is None else np.frombuffer(fact.vector, dtype=np.float32)
        region = fact.region if fact.space is not None else None
        cid = self.tracker.learn_one(fact.event, region, space=fact.space, vector=vector, novelty=fact.novelty)
        if cid is None:
            return None
        if self.model is None:
            return CampaignView(cid, np.empty(0), self.tracker.campaigns[cid].state.events_seen, "")
        return self.tracker.view(cid, self.model.references)

    def _assess(self, views: list[CampaignView | None]) -> list[Assessment | None]:
        """Each campaign view's snapshot risk and the p-value of its merged stream among benign groups, batched."""
        out: list[Assessment | None] = [None] * len(views)
        members = [i for i, view in enumerate(views) if view is not None]
        if not members:
            return out
        if self.model is None:
            for i in members:
                out[i] = Assessment(0.0, 1.0, views[i].events_seen)
            return out
        snapshots = self.model.risk.risk(np.stack([views[i].row for i in members]))
        p_values = np.ones(len(members))
        if self.model.campaign_sequential is not None:
            scores, profiles = self.model.risk.scores_and_profiles(np.stack([views[i].plain_row for i in members]))
            p_values = self.model.campaign_sequential.p_values(scores, profiles)
        for i, snapshot, p in zip(members, snapshots, p_values):
            out[i] = Assessment(float(snapshot), float(p), views[i].events_seen)
        return out

    def _decide(self, fact: CampaignFact, view: CampaignView, group: Assessment, campaign: Campaign) -> list[CampaignVerdict]:
        """The campaign's action after this member event, and who must hear of it: every member
        when it changed, else the event's client if it has not heard of this campaign yet."""
        client = fact.event.client_id
        before = campaign.state.action
        action = self.policy.decide(view.campaign_id, campaign.state, group.risk, view.events_seen)
        if action.value != before:
            tell = sorted(campaign.members)
        elif self._told.get(client) != view.campaign_id:
            tell = [client]
        else:
            return []
        reasons = self.reasons(view, group)
        verdicts = []
        for member in tell:
            _remember(self._told, member, view.campaign_id, self.tracker.max_clients)
            verdicts.append(CampaignVerdict(
                client_id=member, campaign_id=view.campaign_id, ts=to_rfc3339(fact.event.ts), risk=round(group.risk, 6),
                action=action, events_seen=view.events_seen, reasons=reasons,
            ))  # fmt: skip
        return verdicts

    def _score(self, fact: CampaignFact, view: CampaignView, group: Assessment) -> CampaignScore:
        campaign = self.tracker.campaigns[view.campaign_id]
        return CampaignScore(
            ts=to_rfc3339(fact.event.ts),
            campaign_id=view.campaign_id,
            members=sorted(campaign.members),
            ties=sorted(campaign.ties),
            summary=view.summary,
            events_seen=view.events_seen,
            risk=round(group.risk, 6),
            evidence=min(group.evidence, 1e300),
            model_version=self.model.version if self.model is not None else "",
        )

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode({
            "tracker": self.tracker.to_bytes(), "evidence": list(self._evidence.items()), "told": list(self._told.items()),
            "seen": list(self._seen.items()), "retries": self.retries.to_bytes(), "refused": list(self._refused.items()),
            "lineage": list(self._lineage.items()), "facts_learned": self.facts_learned,
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes, model: CloneModel | None, policy: Policy) -> CampaignStage:
        raw = msgspec.msgpack.decode(data)
        retries = RetryTracker.from_bytes(raw["retries"]) if "retries" in raw else None  # older stages kept none
        stage = cls(model, policy, CampaignTracker.from_bytes(raw["tracker"]), retries)
        stage._refused.update((client, (action, risk)) for client, (action, risk) in raw.get("refused", []))
        stage._lineage.update(raw.get("lineage", []))
        stage._evidence.update((client, list(v)) for client, v in raw["evidence"])
        stage._told.update((client, cid) for client, cid in raw["told"])
        stage._seen.update((client, (seen, float("inf"), float("-inf")) if isinstance(seen, int) else tuple(seen)) for client, seen in raw["seen"])  # older stages kept the count alone
        stage.facts_learned = raw.get("facts_learned", 0)  # older stages did not count
        return stage


def _remember(memory: OrderedDict, key: str, value: object, cap: int) -> None:
    """Set ``memory[key]`` as the most recent entry, dropping the oldest beyond ``cap``."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > cap:
        memory.popitem(last=False)
