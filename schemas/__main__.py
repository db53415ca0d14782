"""Write the JSON Schema file of every record type: ``python -m schemas``."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from schemas import AccessEvent, CampaignScore, DeadLetter, Decision, RiskScore

SCHEMA_DIR = Path(__file__).parent / "json"
RECORDS = {
    "access_event": AccessEvent,
    "risk_score": RiskScore,
    "decision": Decision,
    "dead_letter": DeadLetter,
    "campaign_score": CampaignScore,
}


def render(record: type) -> str:
    schema = msgspec.json.schema(record)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, record in RECORDS.items():
        (SCHEMA_DIR / f"{name}.schema.json").write_text(render(record))
        print(f"wrote {SCHEMA_DIR / name}.schema.json")


if __name__ == "__main__":
    main()
