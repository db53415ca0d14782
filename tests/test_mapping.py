"""--mapping FILE: JSON logs of a layout no built-in parser knows, read by naming each field's path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.formats import client_id_for_key
from ingest.mapping import FieldMapping, MappingError
from ingest.reader import EventReader
from schemas import AccessEvent, DeadLetter, to_epoch

# A Vector/Fluent Bit style record: everything nested, a header key with a dot in it.
MAPPING_TOML = """
# where each field lies in our edge proxy's JSON log
ts = "timestamp"
api_key = ["request.headers.x-api-key", "request.headers.authorization"]
ip = "client.address"
forwarded_for = "request.headers.x-forwarded-for"
status = "response.status"
latency_ms = "response.duration_ms"
path = "request.path"
user_agent = "request.headers.user-agent"
body = "request.body"
client_id = [["labels", "tenant.id"]]
"""


def line(**overrides) -> str:
    record = {
        "timestamp": "2026-11-23T10:00:00.125Z",
        "client": {"address": "203.0.113.7:51234"},
        "request": {
            "path": "/v1/chat/completions",
            "headers": {"X-API-Key": "sk-live-4f9a8b7c2d", "User-Agent": "openai-python/1.40"},
            "body": json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0}),
        },
        "response": {"status": 200, "duration_ms": 41.5},
        "labels": {},
    }
    record.update(overrides)
    return json.dumps(record)


@pytest.fixture()
def mapping(tmp_path: Path) -> FieldMapping:
    path = tmp_path / "proxy.toml"
    path.write_text(MAPPING_TOML)
    return FieldMapping.load(path)


def test_mapped_log_gives_events_with_hashed_keys_ms_times_and_prompts(mapping) -> None:
    predict = line(request={"headers": {"authorization": "Bearer sk-live-99aa88bb77"}, "body": {"instances": [[1.0, 2.0], [3.0, 4.0]]}})
    tenant = line(labels={"tenant.id": "acme-corp"})
    results = list(EventReader("proxy.log", mapping).read([line(), predict, tenant, "{not json", line(timestamp=None)]))
    first, *instances, by_tenant, broken, untimed = results
    assert isinstance(first, AccessEvent)
    assert first.client_id == client_id_for_key("sk-live-4f9a8b7c2d") and "sk-live" not in first.client_id
    assert first.ts == to_epoch("2026-11-23T10:00:00.125Z") and first.ip == "203.0.113.7"
    assert first.prompt == "hello there" and first.status == 200 and first.latency_ms == 41.5
    assert [e.features for e in instances] == [[1.0, 2.0], [3.0, 4.0]]  # one event per instance, key from the bearer token
    assert {e.client_id for e in instances} == {client_id_for_key("sk-live-99aa88bb77")}
    assert by_tenant.client_id == "acme-corp"  # a literal key path holding a dot
    assert isinstance(broken, DeadLetter) and "not JSON" in broken.reason
    assert isinstance(untimed, DeadLetter) and "timestamp" in untimed.reason


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ts": "t"}, "needs 'ts' and one of"),
        ({"ts": "t", "api_key": "k", "tenant": "x"}, "unknown field(s) 'tenant'"),
        ({"ts": "t", "api_key": 7}, "a path is a dotted string"),
        (["ts"], "a table of field = path"),
    ],
)
def test_bad_mappings_say_what_is_wrong(raw, message) -> None:
    with pytest.raises(MappingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FieldMapping.from_dict(raw, "m.toml")


def test_run_cli_reads_a_mapped_log_and_refuses_both_options(tmp_path: Path) -> None:
    mapping = tmp_path / "proxy.toml"
    mapping.write_text(MAPPING_TOML)
    log = tmp_path / "proxy.log"
    log.write_text("\n".join(line(timestamp=f"2026-11-23T10:00:{i:02d}Z") for i in range(3)) + "\n")
    base = [sys.executable, "-m", "clonewatch", "run", "--input", str(log), "--store", f"chdb://{tmp_path / 'store'}",
            "--decisions", str(tmp_path / "d.jsonl"), "--dead-letters", str(tmp_path / "dl.jsonl"), "--quiet"]  # fmt: skip
    both = subprocess.run([*base, "--mapping", str(mapping), "--format", "nginx"], capture_output=True, text=True, timeout=300)
    assert both.returncode != 0 and "--format or --mapping, not both" in both.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("ts = \n")
    broken = subprocess.run([*base, "--mapping", str(bad)], capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0 and "not valid TOML" in broken.stderr
