"""What clonewatch writes out: per-client risk scores and gateway decisions."""

from __future__ import annotations

from enum import Enum

import msgspec


class Action(str, Enum):
    """What a gateway should do with the client's next requests, mildest first."""

    ALLOW = "allow"
    THROTTLE = "throttle"
    CHALLENGE = "challenge"
    DENY = "deny"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.ALLOW: 0, Action.THROTTLE: 1, Action.CHALLENGE: 2, Action.DENY: 3}


class RiskScore(msgspec.Struct):
    """A snapshot of one client's features and risk after its latest event."""

    ts: str
    client_id: str
    events_seen: int
    window_events: int
    risk: float
    action: str
    reasons: list[str]
    features: dict[str, float]
    model_version: str
    campaign_id: str | None = None


class CampaignScore(msgspec.Struct):
    """A candidate campaign after a member event: its keys, what ties them, its risk and evidence."""

    ts: str
    campaign_id: str
    members: list[str]
    ties: list[str]
    summary: str
    events_seen: int
    risk: float
    evidence: float
    model_version: str


class Decision(msgspec.Struct):
    """A change of a client's action, pushed back to the gateways.

    ``events_seen`` is how many of the client's events had been processed when the
    decision was made.
    """

    client_id: str
    ts: str
    risk: float
    action: Action
    events_seen: int
    reasons: list[str]

    def __post_init__(self) -> None:
        if not 0.0 <= self.risk <= 1.0:
            raise ValueError(f"risk must lie in 0..1, got {self.risk}")
        if self.events_seen < 0:
            raise ValueError("events_seen must not be negative")
