"""The whole detection step for a batch of events: state, features, risk, policy.

Pure: it knows nothing of Kafka or ClickHouse. The embedded runner and the Faust
workers both call :meth:`CloneDetector.process` with the client states they hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.campaigns import Campaign, CampaignTracker, CampaignView
from detectors.client_state import ClientState
from detectors.evidence import SequentialTest
from detectors.features import FEATURE_LABELS, FEATURE_NAMES, extract_features
from detectors.model import CloneModel
from detectors.policy import Policy, PolicyConfig
from detectors.reference import SpaceReference
from detectors.risk_model import Reason
from schemas import AccessEvent, Action, CampaignScore, Decision, RiskScore, to_rfc3339


@dataclass
class BatchResult:
    scores: list[RiskScore] = field(default_factory=list)  # the latest score of each client in the batch
    decisions: list[Decision] = field(default_factory=list)  # one per change of a client's action
    risks: np.ndarray = field(default_factory=lambda: np.empty(0))  # one per event, in batch order
    campaigns: list[CampaignScore] = field(default_factory=list)  # the latest state of each campaign a batch event touched


# Accumulated evidence acts on a client once its snapshot has put it among the top tenth of
# benign clients (beyond the sustained peak of 90% of them), the finest share a baseline of
# a hundred clients resolves by counting. Benign customers of a kind that is rare in the
# baseline can sit persistently a little beyond their nearest benign clients, and evidence
# against them grows without bound; most of them are unremarkable among all clients.
# Screening by rank, confirming by evidence: a benign client must pass both.
SCREEN_LEVEL = 0.9


@dataclass
class Assessment:
    """One client (or campaign) after one event: its snapshot risk, the p-value of its score
    among the events of its nearest benign clients, and, once accumulated, its evidence and risk."""

    snapshot: float
    p_value: float
    events_seen: int
    evidence: float = 1.0
    risk: float = 0.0
    components: tuple[float, ...] = ()  # the logs of the e-process's components, one per bet

    def accumulate(self, test: SequentialTest | None, state: ClientState, policy: PolicyConfig) -> Assessment:
        """Add this event's evidence to the state's; risk is the larger of the snapshot and,
        once the client has been screened, 1 - 1/evidence (a benign client ever reaches
        evidence E with probability at most 1/E)."""
        self._screen(state, policy)
        if test is None:
            self.risk = self.snapshot
            return self
        log_m = test.update(state.evidence, self.p_value)
        state.evidence = log_m.tolist()
        self.components = tuple(state.evidence)
        self.evidence = test.evidence(log_m)
        self._combine(state.screened, policy)
        return self

    def _combine(self, screened: bool, policy: PolicyConfig) -> None:
        """Evidence alone can throttle and challenge; a deny also needs the snapshot, which
        says the client is far beyond every benign one now, not only unlike its own kind."""
        sequential = min(1.0 - 1.0 / max(self.evidence, 1.0), policy.challenge) if screened else 0.0
        self.risk = max(self.snapshot, sequential)

    def _screen(self, state: ClientState, policy: PolicyConfig) -> None:
        """Screened once the snapshot held SCREEN_LEVEL for the policy's confirmation count of
        events from its minimum events on: the statistic the snapshot is calibrated on."""
        if state.screened:
            return
        above = self.snapshot >= SCREEN_LEVEL and self.events_seen >= policy.min_events
        state.screen_streak = state.screen_streak + 1 if above else 0
        state.screened = state.screen_streak >= policy.confirm_events

    def join(
        self,
        own_test: SequentialTest | None,
        campaign_test: SequentialTest | None,
        campaign: Campaign,
        member: str,
        own: Assessment,
        policy: PolicyConfig,
    ) -> Assessment:
        """A campaign's assessment after one member event: its merged snapshot, and evidence
        from two tests, averaged (a mean of e-values is an e-value):

        - the product of its members' accumulated evidence (each member's, as ``own`` just
          left it): keys that are each mildly unusual multiply into certainty;
        - the campaign's own e-process over its merged stream (``campaign_test``, whose
          p-values place the merged state among groups of unrelated benign clients merged
          the same way in training): fifteen keys that each stay under every threshold add
          up to one stream unlike any benign group. Customers behind one NAT are such a
          group, and are judged against their like.
        """
        if own.components:
            campaign.evidence[member] = list(own.components)
        self._screen(campaign.state, policy)
        if own_test is None:
            self.risk = self.snapshot
            return self
        product = min(campaign.log_evidence(), 700.0)
        merged = product
        if campaign_test is not None:
            log_m = campaign_test.update(campaign.state.evidence, self.p_value)
            campaign.state.evidence = log_m.tolist()
            merged = np.log(campaign_test.evidence(log_m))
        self.evidence = float(np.exp(np.logaddexp(merged, product) - np.log(2.0)))
        self._combine(campaign.state.screened, policy)
        return self

    @property
    def sustained(self) -> bool:
        return self.risk > self.snapshot

    def evidence_reason(self) -> str:
        return (
            f"evidence accumulated over {self.events_seen} events {self.evidence:,.3g} to 1"
            f" (a benign client ever gets this far with probability at most {1.0 / self.evidence:.2g})"
        )


def _gather_evidence(campaign: Campaign, states: Mapping[str, ClientState]) -> None:
    """Members that joined with evidence already gathered bring it along (those whose state is held here)."""
    for member in campaign.members - campaign.evidence.keys():
        state = states.get(member)
        if state is not None and state.evidence:
            campaign.evidence[member] = list(state.evidence)


def project(
    references: dict[str, SpaceReference], events: Sequence[AccessEvent], vectors: Sequence[np.ndarray | None]
) -> list[tuple[str | None, np.ndarray | None, int, float]]:
    """Each event's space, projected vector, codebook region and novelty, batched per space."""
    out: list[tuple[str | None, np.ndarray | None, int, float]] = [(None, None, 0, 0.0)] * len(events)
    by_space: dict[str, list[int]] = defaultdict(list)
    for i, (event, vector) in enumerate(zip(events, vectors)):
        space = event.space
        if vector is not None and space in references:
            by_space[space].append(i)
    for space, rows in by_space.items():
        ref = references[space]
        projected = ref.transform(np.stack([vectors[i] for i in rows]))
        regions, _ = ref.regions(projected)
        novelty = ref.novelty(projected)
        for k, i in enumerate(rows):
            out[i] = (space, projected[k], int(regions[k]), float(novelty[k]))
    return out


def learn_and_extract(
    references: dict[str, SpaceReference],
    events: Sequence[AccessEvent],
    vectors: Sequence[np.ndarray | None],
    states: MutableMapping[str, ClientState],
    window: int,
    projected: list[tuple[str | None, np.ndarray | None, int, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Let each event update its client's state.

    ``projected`` is :func:`project`'s result for these events, if the caller has it.
    Returns the feature row after each event and the client's events_seen at that event.
    """
    rows = np.empty((len(events), len(FEATURE_NAMES)))
    seen = np.empty(len(events), dtype=np.int64)
    if projected is None:
        projected = project(references, events, vectors)
    for i, (event, (space, vector, region, novelty)) in enumerate(zip(events, projected)):
        state = states.get(event.client_id)
        if state is None:
            state = states[event.client_id] = ClientState(window=window)
        state.learn_one(event, space, vector, region, novelty)
        rows[i] = extract_features(state, references)
        seen[i] = state.events_seen
    return rows, seen


def describe(reason: Reason) -> str:
    """A reason an analyst can read: 'near-duplicate rate 0.83, higher than 99.9% of baseline clients of its age'."""
    label = FEATURE_LABELS.get(reason.feature, reason.feature)
    percent = 100.0 * (1.0 - reason.share_beyond)
    shown = f"{percent:.2f}".rstrip("0").rstrip(".") if percent < 99.99 else ">99.99"
    side = "higher" if reason.direction == "high" else "lower"
    return f"{label} {reason.value:.3g}, {side} than {shown}% of baseline clients of its age"


class CloneDetector:
    """Scores clients event by event with a trained :class:`CloneModel` and a :class:`Policy`.

    With a :class:`CampaignTracker`, each event also feeds the tracker; a client in a
    candidate campaign is scored with the larger of its own risk and its campaign's (the
    campaign's merged state scored as one client), and the campaign is named in its reasons.
    When the campaign's risk is the larger, the policy's minimum-evidence rules count the
    campaign's events, since that is the evidence behind the risk, and an action it leads
    to reaches every member of the campaign at once (allowlisted clients excepted).
    """

    def __init__(self, model: CloneModel, policy: Policy | None = None, campaigns: CampaignTracker | None = None) -> None:
        self.model = model
        self.policy = policy or Policy()
        self.campaigns = campaigns

    @classmethod
    def from_model(cls, model: CloneModel, policy: Policy | PolicyConfig | None = None) -> CloneDetector:
        """The detector every path uses (``run``, the worker, the benchmark): the model, the
        policy and a campaign tracker with the model's window. Build it here, so the paths
        cannot drift apart."""
        if isinstance(policy, PolicyConfig):
            policy = Policy(policy)
        return cls(model, policy, campaigns=CampaignTracker(window=model.window))

    def use_model(self, model: CloneModel) -> None:
        """Score with another model from the next batch on; client states and campaigns carry over
        (a state keeps the window it was made with)."""
        self.model = model

    def process(
        self,
        events: Sequence[AccessEvent],
        vectors: Sequence[np.ndarray | None],
        states: MutableMapping[str, ClientState],
    ) -> BatchResult:
        if not events:
            return BatchResult()
        projected = project(self.model.references, events, vectors)
        rows, seen = learn_and_extract(self.model.references, events, vectors, states, self.model.window, projected)
        own = self._assess(rows, seen, [e.client_id for e in events])
        views, campaign = self._campaign_assessments(events, projected)
        result = BatchResult(risks=np.empty(len(events)))
        latest: dict[str, tuple[int, Assessment, Assessment | None]] = {}
        touched: dict[str, tuple[int, Assessment]] = {}
        for i, event in enumerate(events):
            state = states[event.client_id]
            mine = own[i].accumulate(self.model.sequential, state, self.policy.config)
            group = None
            if views[i] is not None and views[i].campaign_id in self.campaigns.campaigns:
                joined = self.campaigns.campaigns[views[i].campaign_id]
                _gather_evidence(joined, states)
                group = campaign[i].join(
                    self.model.sequential,
                    self.model.campaign_sequential,
                    joined,
                    event.client_id,
                    mine,
                    self.policy.config,
                )
            by_campaign = group is not None and group.risk > mine.risk
            risk = group.risk if by_campaign else mine.risk
            result.risks[i] = risk
            before = state.action
            evidence = max(int(seen[i]), views[i].events_seen) if by_campaign else int(seen[i])
            action = self.policy.decide(event.client_id, state, risk, evidence)
            if action.value != before:
                reasons = ["risk back below thresholds"] if action is Action.ALLOW else self._reasons(rows[i], views[i], mine, group)
                result.decisions.append(self._decision(event.client_id, event.ts, risk, action, int(seen[i]), reasons))
                if by_campaign and action is not Action.ALLOW:
                    result.decisions += self._spread(views[i].campaign_id, event, risk, action, reasons, states)
            latest[event.client_id] = (i, mine, group)
            if group is not None:
                touched[views[i].campaign_id] = (i, group)
        for cid, (i, mine, group) in latest.items():
            reasons = self._reasons(rows[i], views[i], mine, group)
            withheld = self.policy.withheld(cid, states[cid], float(result.risks[i]), int(seen[i]))
            if withheld:
                reasons = [withheld, *reasons]
            result.scores.append(self._score(events[i], rows[i], float(result.risks[i]), states[cid], int(seen[i]), reasons, views[i]))
        result.campaigns = [  # a campaign merged into another later in the batch lives on under the other's id
            self._campaign_score(events[i], views[i], group) for cid, (i, group) in touched.items() if cid in self.campaigns.campaigns
        ]
        return result

    def reasons(self, row: np.ndarray) -> list[str]:
        return [describe(r) for r in self.model.risk.explain(row)]

    def _assess(self, rows: np.ndarray, seen: np.ndarray, clients: list[str]) -> list[Assessment]:
        """Each row's snapshot risk and the p-value of its score among the events of its nearest benign clients."""
        own = np.asarray(clients) if self.model.exclude_own_history else None
        scores, profiles = self.model.risk.scores_and_profiles(rows, own)
        if own is not None and self.model.fold_risks:
            scores = self._held_out_scores(rows, clients, scores)
        snapshot = self.model.risk.calibrated(scores, own)
        sequential = self.model.sequential
        p_values = sequential.p_values(scores, profiles, own) if sequential is not None else np.ones(len(rows))
        return [Assessment(float(r), float(p), int(n)) for r, p, n in zip(snapshot, p_values, seen)]

    def _held_out_scores(self, rows: np.ndarray, clients: list[str], scores: np.ndarray) -> np.ndarray:
        """Scores of a warm-up's own clients from the fold models that never saw them."""
        folds = np.array([self.model.client_folds.get(c, -1) for c in clients])
        scores = scores.copy()
        for fold in np.unique(folds[folds >= 0]):
            mine = folds == fold
            scores[mine] = -self.model.fold_risks[int(fold)].score_samples(rows[mine])
        return scores

    def _campaign_assessments(
        self, events: Sequence[AccessEvent], projected: list[tuple[str | None, np.ndarray | None, int, float]]
    ) -> tuple[list[CampaignView | None], list[Assessment | None]]:
        """Feed the tracker; each event's campaign and the campaign's snapshot (None outside one)."""
        views: list[CampaignView | None] = [None] * len(events)
        assessed: list[Assessment | None] = [None] * len(events)
        if self.campaigns is None:
            return views, assessed
        for i, (event, (space, vector, region, novelty)) in enumerate(zip(events, projected)):
            cid = self.campaigns.learn_one(
                event, region if space is not None else None, space=space, vector=vector, novelty=novelty
            )
            views[i] = self.campaigns.view(cid, self.model.references) if cid is not None else None
        members = [i for i, view in enumerate(views) if view is not None]
        if members:
            snapshots = self.model.risk.risk(np.stack([views[i].row for i in members]))
            p_values = np.ones(len(members))
            if self.model.campaign_sequential is not None:
                scores, profiles = self.model.risk.scores_and_profiles(np.stack([views[i].plain_row for i in members]))
                p_values = self.model.campaign_sequential.p_values(scores, profiles)
            for i, snapshot, p in zip(members, snapshots, p_values):
                assessed[i] = Assessment(float(snapshot), float(p), views[i].events_seen)
        return views, assessed

    def _reasons(self, row: np.ndarray, view: CampaignView | None, mine: Assessment, group: Assessment | None) -> list[str]:
        """What drives the risk (accumulated evidence, then the features furthest out), its
        own or its campaign's, after the campaign's name."""
        by_campaign = group is not None and group.risk > mine.risk
        driver = group if by_campaign else mine
        reasons = [driver.evidence_reason()] if driver.sustained else []
        reasons += self.reasons(view.row if by_campaign else row)
        if view is None:
            return reasons
        return [f"campaign {view.campaign_id}: {view.summary}", *reasons]

    def _spread(
        self,
        campaign_id: str,
        event: AccessEvent,
        risk: float,
        action: Action,
        reasons: list[str],
        states: MutableMapping[str, ClientState],
    ) -> list[Decision]:
        """Give the campaign's other members (those whose state is held here) the same action."""
        decisions = []
        for member in sorted(self.campaigns.campaigns[campaign_id].members - {event.client_id}):
            state = states.get(member)
            if state is None or member in self.policy.config.allowlist or Action(state.action).severity >= action.severity:
                continue
            state.action, state.pending_action, state.pending_count = action.value, None, 0
            decisions.append(self._decision(member, event.ts, risk, action, state.events_seen, reasons))
        return decisions

    def _campaign_score(self, event: AccessEvent, view: CampaignView, group: Assessment) -> CampaignScore:
        campaign = self.campaigns.campaigns[view.campaign_id]
        return CampaignScore(
            ts=to_rfc3339(event.ts),
            campaign_id=view.campaign_id,
            members=sorted(campaign.members),
            ties=sorted(campaign.ties),
            summary=view.summary,
            events_seen=view.events_seen,
            risk=round(group.risk, 6),
            evidence=min(group.evidence, 1e300),
            model_version=self.model.version,
        )

    def _decision(self, client_id: str, ts: float, risk: float, action: Action, seen: int, reasons: list[str]) -> Decision:
        return Decision(
            client_id=client_id,
            ts=to_rfc3339(ts),
            risk=round(risk, 6),
            action=action,
            events_seen=seen,
            reasons=reasons,
        )

    def _score(
        self,
        event: AccessEvent,
        row: np.ndarray,
        risk: float,
        state: ClientState,
        seen: int,
        reasons: list[str],
        view: CampaignView | None,
    ) -> RiskScore:
        space = state.main_space()
        return RiskScore(
            ts=to_rfc3339(event.ts),
            client_id=event.client_id,
            events_seen=seen,
            window_events=state.activity.count if space is None else state.geometry[space].count,
            risk=round(risk, 6),
            action=state.action,
            reasons=reasons,
            features={name: float(v) for name, v in zip(FEATURE_NAMES, row) if not np.isnan(v)},
            model_version=self.model.version,
            campaign_id=view.campaign_id if view is not None else None,
        )
