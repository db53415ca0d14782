"""What travels between the workers and the campaign stage (``clonewatch worker`` topics).

Workers score the clients of their own partitions; the campaign stage sees every key. A
worker sends one :class:`CampaignFact` per scored event, the stage answers each member of
a campaign with a :class:`CampaignVerdict` when it should know something new.
"""

from __future__ import annotations

import msgspec

from schemas.access_event import AccessEvent
from schemas.risk import Action


class CampaignFact(msgspec.Struct):
    """One scored event as the campaign stage needs it: the event, where its query lies in
    the model's space, and its client's evidence after it."""

    event: AccessEvent
    events_seen: int = 0  # the client's count at this event: a fact sent again (a replayed batch) is known by it
    space: str | None = None
    region: int = 0  # codebook region of the query in ``space``
    vector: bytes | None = None  # the projected query vector, float32
    novelty: float = 0.0
    evidence: list[float] = []  # the logs of the client's e-process components after the event
    action: str = "allow"  # the client's action when the event arrived (what the gateway answered it with)
    risk: float = 0.0  # the client's risk after the event, its campaign's included


class CampaignVerdict(msgspec.Struct):
    """The campaign stage's word to one member: its campaign, the campaign's risk and action.

    Sent when the member is first seen in the campaign and whenever the campaign's action
    changes. ``events_seen`` counts the campaign's member events when it was decided.
    """

    client_id: str
    campaign_id: str
    ts: str
    risk: float
    action: Action
    events_seen: int
    reasons: list[str]
