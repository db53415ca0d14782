"""Schemathesis drives the running API from its OpenAPI document: every answer must be one the
document names (status, content type, body schema), never a server error, for generated paths,
client ids, queries and headers, with and without the bearer token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from clonewatch.api.openapi import OPENAPI
from ingest.formats import client_id_for_key
from tests.streaming_support import REPO_ROOT, Background, wait_until
from tests.test_api import KEYS, TOKEN, score

schema = schemathesis.openapi.from_dict(OPENAPI)
NEGATIVE_DATA_REJECTION = schemathesis.checks.negative_data_rejection


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("api-schema")
    rows = [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.99999) for action, key in KEYS.items()]
    code = (
        "import sys, msgspec; from sinks.clickhouse import ClickHouseStore; from schemas import RiskScore;"
        f"ClickHouseStore('chdb://{tmp / 'store'}').insert_risk_scores(msgspec.json.decode(sys.stdin.buffer.read(), type=list[RiskScore]))"
    )
    subprocess.run([sys.executable, "-c", code], input=msgspec.json.encode(rows), cwd=REPO_ROOT, check=True, timeout=120)
    server = Background(["api", "--store", f"chdb://{tmp / 'store'}", "--port", "0"], {**os.environ, "CLONEWATCH_API_TOKEN": TOKEN}, tmp / "api.log")
    wait_until(lambda: "listening on" in server.log() or not server.alive(), 60, "the API to listen")
    yield re.search(r"listening on (http://\S+)", server.log()).group(1)
    assert server.stop() == 0, server.log()[-2000:]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_one_the_openapi_document_names(case, api_url: str) -> None:
    # Every request carries the token, so a case generated without it is not negative; and unknown
    # query parameters are ignored (gateways append their own): the negative-data check is left out.
    case.call_and_validate(
        base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=[NEGATIVE_DATA_REJECTION]
    )
