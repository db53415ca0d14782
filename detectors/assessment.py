"""One client's (or one campaign's) assessment after one event, and how it reads to an analyst."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.campaigns import Campaign
from detectors.client_state import ClientState
from detectors.evidence import SequentialTest
from detectors.features import FEATURE_LABELS
from detectors.policy import PolicyConfig
from detectors.risk_model import Reason, RiskModel

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
        once the client has been screened, 1 - 1/evidence (for p-values independent beyond
        the test's weight, a benign client ever reaches evidence E with probability at most
        1/E; clients' persistent habits make that nominal, see the README)."""
        self._screen(state, policy)
        if test is None:
            self.risk = self.snapshot
            return self
        log_m = test.update(state.evidence, self.p_value, self.events_seen)
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
        member_evidence: Sequence[float],
        policy: PolicyConfig,
    ) -> Assessment:
        """A campaign's assessment after one member event: its merged snapshot, and evidence
        from two tests, averaged (a mean of e-values is an e-value):

        - the product of its members' accumulated evidence (each member's, as this event
          left it: ``member_evidence``, its components): keys that are each mildly unusual
          multiply into certainty;
        - the campaign's own e-process over its merged stream (``campaign_test``, whose
          p-values place the merged state among groups of unrelated benign clients merged
          the same way in training): fifteen keys that each stay under every threshold add
          up to one stream unlike any benign group. Customers behind one NAT are such a
          group, and are judged against their like.
        """
        if len(member_evidence):
            campaign.evidence[member] = list(member_evidence)
        self._screen(campaign.state, policy)
        if own_test is None:
            self.risk = self.snapshot
            return self
        product = min(campaign.log_evidence(), 700.0)
        merged = product
        if campaign_test is not None:
            log_m = campaign_test.update(campaign.state.evidence, self.p_value, self.events_seen)
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
            f"evidence accumulated over {self.events_seen} events {self.evidence:,.3g} to 1 against the benign clients"
            " of its kind, after its snapshot put it among the top tenth of them"
        )

def describe(reason: Reason) -> str:
    """A reason an analyst can read: 'near-duplicate rate 0.83, higher than 99.9% of baseline clients of its age'."""
    label = FEATURE_LABELS.get(reason.feature, reason.feature)
    percent = 100.0 * (1.0 - reason.share_beyond)
    shown = f"{percent:.2f}".rstrip("0").rstrip(".") if percent < 99.99 else ">99.99"
    side = "higher" if reason.direction == "high" else "lower"
    return f"{label} {reason.value:.3g}, {side} than {shown}% of baseline clients of its age"


def readable_reasons(risk: RiskModel, row: np.ndarray) -> list[str]:
    """The features of ``row`` furthest out, as an analyst reads them (:func:`describe`)."""
    return readable_reasons_of_rows(risk, np.atleast_2d(row))[0]


def readable_reasons_of_rows(risk: RiskModel, rows: np.ndarray) -> list[list[str]]:
    """:func:`readable_reasons` of each row, the reference's tails looked up once for all."""
    return [[describe(r) for r in reasons] for reasons in risk.explain_rows(rows)]
