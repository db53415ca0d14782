"""The whole detection step for a batch of events: state, features, risk, policy.

Pure: it knows nothing of Kafka or ClickHouse. The embedded runner and the Faust
workers both call :meth:`CloneDetector.process` with the client states they hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.assessment import Assessment, readable_reasons, readable_reasons_of_rows
from detectors.campaign_stage import CampaignStage
from detectors.campaigns import CampaignTracker
from detectors.client_state import ClientState
from detectors.features import FEATURE_NAMES, extract_features
from detectors.model import CloneModel
from detectors.policy import Policy, PolicyConfig
from detectors.probes import is_probe
from detectors.reference import SpaceReference
from schemas import AccessEvent, Action, CampaignFact, CampaignScore, CampaignVerdict, Decision, RiskScore, to_rfc3339


@dataclass
class BatchResult:
    scores: list[RiskScore] = field(default_factory=list)  # the latest score of each client in the batch
    decisions: list[Decision] = field(default_factory=list)  # one per change of a client's action
    risks: np.ndarray = field(default_factory=lambda: np.empty(0))  # one per event, in batch order
    campaigns: list[CampaignScore] = field(default_factory=list)  # the latest state of each campaign a batch event touched
    facts: list[CampaignFact] = field(default_factory=list)  # one per event, for a campaign stage elsewhere


def campaign_fact(
    event: AccessEvent,
    seen: int,
    projected: tuple[str | None, np.ndarray | None, int, float],
    mine: Assessment,
    state: ClientState,
) -> CampaignFact:
    """What the campaign stage needs of one scored event (``projected``: :func:`project`'s
    tuple; ``mine`` and ``state``: the client's assessment after it and its state, whose
    action is still the one the event was answered with)."""
    space, vector, region, novelty = projected
    packed = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
    return CampaignFact(
        event=event, events_seen=seen, space=space, region=int(region), vector=packed, novelty=float(novelty),
        evidence=list(mine.components), action=state.action, risk=max(mine.risk, state.campaign_risk),
    )  # fmt: skip


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


class CloneDetector:
    """Scores clients event by event with a trained :class:`CloneModel` and a :class:`Policy`.

    Campaigns across keys come from a :class:`CampaignStage`, which reads one
    :class:`CampaignFact` per scored event and answers members with verdicts. With
    ``campaigns`` (a tracker), the stage runs here, on every batch (``clonewatch run``, the
    benchmark): a verdict reaches its members at the event that led to it. With ``facts``,
    each batch's facts are returned for a stage elsewhere (the workers' campaign agent), and
    its verdicts come back through :meth:`apply_verdicts`. Either way a member's risk is the
    larger of its own and its campaign's at the stage's last word, and a campaign's action
    reaches every member at once (allowlisted clients excepted).
    """

    def __init__(
        self, model: CloneModel, policy: Policy | None = None, campaigns: CampaignTracker | None = None, facts: bool = False
    ) -> None:
        self.model = model
        self.policy = policy or Policy()
        self.stage = CampaignStage(model, self.policy, campaigns) if campaigns is not None else None
        self.facts = facts

    @classmethod
    def from_model(
        cls, model: CloneModel, policy: Policy | PolicyConfig | None = None, campaigns: str = "here"
    ) -> CloneDetector:
        """The detector every path uses: the model, the policy and the campaign stage, ``here``
        in this process (``run``, the benchmark, one worker's tests) or ``elsewhere`` (the
        workers: facts out, verdicts in). Build it here, so the paths cannot drift apart."""
        if isinstance(policy, PolicyConfig):
            policy = Policy(policy)
        if campaigns == "here":
            return cls(model, policy, campaigns=CampaignTracker(window=model.window))
        if campaigns == "elsewhere":
            return cls(model, policy, facts=True)
        raise ValueError(f"campaigns must be 'here' or 'elsewhere', not {campaigns!r}")

    @property
    def campaigns(self) -> CampaignTracker | None:
        """The tracker of the stage held here, if any."""
        return None if self.stage is None else self.stage.tracker

    def use_model(self, model: CloneModel) -> None:
        """Score with another model from the next batch on; client states and campaigns carry over
        (a state keeps the window it was made with)."""
        self.model = model
        if self.stage is not None:
            self.stage.model = model

    def process(
        self,
        events: Sequence[AccessEvent],
        vectors: Sequence[np.ndarray | None],
        states: MutableMapping[str, ClientState],
    ) -> BatchResult:
        if not events:
            return BatchResult()
        if any(map(is_probe, events)):  # health checks and scrapes: no client's behaviour (detectors.probes)
            return self._without_probes(events, vectors, states)
        projected = project(self.model.references, events, vectors)
        rows, seen = learn_and_extract(self.model.references, events, vectors, states, self.model.window, projected)
        own = self._assess(rows, seen, [e.client_id for e in events])
        for event, mine in zip(events, own):
            mine.accumulate(self.model.sequential, states[event.client_id], self.policy.config)
        result = BatchResult(risks=np.empty(len(events)))
        facts = []
        if self.stage is not None or self.facts:
            facts = [campaign_fact(e, int(n), p, mine, states[e.client_id]) for e, n, p, mine in zip(events, seen, projected, own)]
        verdicts: dict[int, list[CampaignVerdict]] = defaultdict(list)
        if self.stage is not None:
            staged = self.stage.process(facts)
            for i, verdict in staged.verdicts:
                verdicts[i].append(verdict)
            result.campaigns = staged.campaigns
        if self.facts:
            result.facts = facts
        latest: dict[str, tuple[int, Assessment, bool]] = {}
        for i, event in enumerate(events):
            result.decisions += self.apply_verdicts(verdicts.get(i, ()), states)
            state, mine = states[event.client_id], own[i]
            by_campaign = state.campaign_risk > mine.risk
            risk = state.campaign_risk if by_campaign else mine.risk
            result.risks[i] = risk
            before = state.action
            action = self.policy.decide(event.client_id, state, risk, int(seen[i]))
            if action.value != before:
                reasons = ["risk back below thresholds"] if action is Action.ALLOW else self._reasons(self.reasons(rows[i]), state, mine, by_campaign)
                result.decisions.append(self._decision(event.client_id, to_rfc3339(event.ts), risk, action, int(seen[i]), reasons))
            latest[event.client_id] = (i, mine, by_campaign)
        explained = readable_reasons_of_rows(self.model.risk, rows[[i for i, _, _ in latest.values()]])
        for (cid, (i, mine, by_campaign)), features in zip(latest.items(), explained):
            reasons = self._reasons(features, states[cid], mine, by_campaign)
            withheld = self.policy.withheld(cid, states[cid], float(result.risks[i]), int(seen[i]))
            if withheld:
                reasons = [withheld, *reasons]
            result.scores.append(self._score(events[i], rows[i], float(result.risks[i]), states[cid], int(seen[i]), reasons))
        return result

    def _without_probes(
        self, events: Sequence[AccessEvent], vectors: Sequence[np.ndarray | None], states: MutableMapping[str, ClientState]
    ) -> BatchResult:
        """The batch scored without its probes, whose risk is 0 and which no state learns."""
        kept = [i for i, event in enumerate(events) if not is_probe(event)]
        result = self.process([events[i] for i in kept], [vectors[i] for i in kept], states)
        risks = np.zeros(len(events))
        risks[kept] = result.risks
        result.risks = risks
        return result

    def apply_verdicts(self, verdicts: Sequence[CampaignVerdict], states: Mapping[str, ClientState]) -> list[Decision]:
        """Let each verdict reach its member (those whose state is held here): the member learns
        its campaign and the campaign's risk, and takes the campaign's action if it is the
        more severe. Returns the decisions that changed a member's action."""
        decisions = []
        for verdict in verdicts:
            state = states.get(verdict.client_id)
            if state is None:
                continue
            state.campaign_id, state.campaign_risk = verdict.campaign_id, verdict.risk
            state.campaign_note = verdict.reasons[0] if verdict.reasons else ""
            if verdict.client_id in self.policy.config.allowlist or Action(state.action).severity >= verdict.action.severity:
                continue
            state.action, state.pending_action, state.pending_count = verdict.action.value, None, 0
            decisions.append(self._decision(verdict.client_id, verdict.ts, verdict.risk, verdict.action, state.events_seen, verdict.reasons))
        return decisions

    def reasons(self, row: np.ndarray) -> list[str]:
        return readable_reasons(self.model.risk, row)

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

    def _reasons(self, features: list[str], state: ClientState, mine: Assessment, by_campaign: bool) -> list[str]:
        """What drives the risk (its campaign's, or its own accumulated evidence, then
        ``features``, the features furthest out), after its campaign's name and ties."""
        reasons = [mine.evidence_reason()] if mine.sustained and not by_campaign else []
        reasons += features
        if state.campaign_id is None:
            return reasons
        if by_campaign:
            reasons.insert(0, f"the campaign's risk {state.campaign_risk:.6g} when it was last assessed")
        return [state.campaign_note or f"campaign {state.campaign_id}", *reasons]

    def _decision(self, client_id: str, ts: str, risk: float, action: Action, seen: int, reasons: list[str]) -> Decision:
        return Decision(
            client_id=client_id,
            ts=ts,
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
            campaign_id=state.campaign_id,
        )
