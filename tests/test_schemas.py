import json
from pathlib import Path

import msgspec
import pytest

from ingest.decode import DecodeLimits, EventDecoder
from schemas import AccessEvent, Action, DeadLetter, Decision, to_epoch, to_rfc3339
from schemas.__main__ import RECORDS, SCHEMA_DIR, render


def decode(line: str, limits: DecodeLimits = DecodeLimits()):
    return EventDecoder("test", limits).decode(line.encode(), 7)


def test_rfc3339_and_epoch_timestamps_agree():
    a = decode('{"ts": "2026-11-23T10:00:00.250Z", "client_id": "k"}')
    b = decode('{"ts": 1795428000.25, "client_id": "k"}')
    c = decode('{"ts": "2026-11-23T11:00:00.250+01:00", "client_id": "k"}')
    assert a.ts == b.ts == c.ts == to_epoch("2026-11-23T10:00:00.250Z")
    assert to_rfc3339(a.ts) == "2026-11-23T10:00:00.250Z"


def test_full_record_decodes_with_params_and_space():
    line = json.dumps({
        "ts": 1795428000, "client_id": "key-1", "ip": "10.0.0.1", "method": "POST", "path": "/v1/chat/completions",
        "status": 200, "latency_ms": 12.5, "model": "gpt-x", "prompt": "hello", "tokens_in": 3, "tokens_out": 9,
        "params": {"temperature": 0, "max_tokens": 16, "logprobs": True, "top_logprobs": 5, "n": 2},
        "user_agent": "curl/8", "request_id": "r1", "unknown_extra": {"ignored": True},
    })  # fmt: skip
    event = decode(line)
    assert isinstance(event, AccessEvent)
    assert event.params.temperature == 0.0 and event.params.wants_logprobs() and event.params.n == 2
    assert event.space == "text"
    assert decode('{"ts": 1795428000, "client_id": "k", "features": [1, 2.5, 3]}').space == "numeric:3"


@pytest.mark.parametrize(
    ("line", "reason_part"),
    [
        ("this is not json", "malformed"),
        ('{"ts": 1795428000}', "client_id"),
        ('{"client_id": "k"}', "ts"),
        ('{"ts": 1795428000, "client_id": 42}', "$.client_id"),
        ('{"ts": "last tuesday", "client_id": "k"}', "RFC 3339"),
        ('{"ts": 1795428000, "client_id": "k", "status": "ok"}', "$.status"),
        ('{"ts": 1795428000, "client_id": "k", "params": {"temperature": "hot"}}', "$.params.temperature"),
        ('{"ts": 1795428000, "client_id": "k", "features": [1.0, NaN]}', "NaN"),
        ('{"ts": 1795428000, "client_id": "k", "features": [1.0, 1e999]}', "$.features[1]"),
        ('{"ts": 1795428000, "client_id": "   "}', "empty"),
        ('[1, 2, 3]', "object"),
    ],
)
def test_bad_lines_become_dead_letters_with_the_reason(line, reason_part):
    letter = decode(line)
    assert isinstance(letter, DeadLetter)
    assert reason_part.lower() in letter.reason.lower()
    assert letter.line == 7 and letter.raw == line


def test_limits_bound_prompts_and_rows_and_reject_only_overlong_client_ids():
    limits = DecodeLimits(max_prompt_chars=100, max_features=2000, max_client_id_chars=10)
    event = decode(json.dumps({"ts": 1795428000, "client_id": "k", "prompt": "x" * 101}), limits)
    assert event.prompt == "x" * 100  # scored on its first 100 characters (ingest.oversize)
    event = decode(json.dumps({"ts": 1795428000, "client_id": "k", "features": list(range(2001))}), limits)
    assert event.features_dim == 2001 and len(event.features) == 1024 and event.space == "numeric:2001"
    assert len(decode(json.dumps({"ts": 1795428000, "client_id": "k", "features": list(range(2000))}), limits).features) == 2000
    letter = decode(json.dumps({"ts": 1795428000, "client_id": "k" * 11}), limits)
    assert isinstance(letter, DeadLetter) and "over the limit of 10" in letter.reason


def test_decision_wire_format_is_exact():
    d = Decision(client_id="k", ts="2026-11-23T10:00:00.000Z", risk=0.5, action=Action.DENY, events_seen=12, reasons=["x"])
    assert json.loads(msgspec.json.encode(d)) == {
        "client_id": "k", "ts": "2026-11-23T10:00:00.000Z", "risk": 0.5, "action": "deny", "events_seen": 12, "reasons": ["x"],
    }  # fmt: skip
    with pytest.raises(ValueError):
        Decision(client_id="k", ts="2026-11-23T10:00:00.000Z", risk=1.5, action=Action.DENY, events_seen=1, reasons=[])


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_json_schema_files_are_up_to_date(name):
    path = Path(SCHEMA_DIR) / f"{name}.schema.json"
    assert path.read_text() == render(RECORDS[name]), "run `python -m schemas` to regenerate"
