"""Typed records at clonewatch's edges, with JSON Schema files for producers outside Python.

Regenerate the JSON Schema files with ``python -m schemas``.
"""

from schemas.access_event import AccessEvent, Params
from schemas.campaign import CampaignFact, CampaignVerdict
from schemas.dead_letter import DeadLetter
from schemas.risk import Action, CampaignScore, Decision, RiskScore
from schemas.timefmt import to_epoch, to_rfc3339

__all__ = [
    "AccessEvent",
    "Action",
    "CampaignFact",
    "CampaignVerdict",
    "CampaignScore",
    "DeadLetter",
    "Decision",
    "Params",
    "RiskScore",
    "to_epoch",
    "to_rfc3339",
]
