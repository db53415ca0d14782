"""Schemathesis drives the running API from its OpenAPI document: every answer must be one the
document names (status, content type, body schema), never a server error, for generated paths,
client ids, queries, headers and methods."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clonewatch.api.openapi import OPENAPI
from ingest.formats import client_id_for_key
from tests.test_api import KEYS, TOKEN, fill_store, score, serve_api

schema = schemathesis.openapi.from_dict(OPENAPI)
NEGATIVE_DATA_REJECTION = schemathesis.checks.negative_data_rejection
# One test item per operation (not schemathesis's single item with an operation per subtest),
# so that every operation runs and is counted under pytest-xdist too.
OPERATIONS = {operation.label: operation for operation in (result.ok() for result in schema.get_all_operations())}


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("api-schema")
    fill_store(tmp / "store", [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.99999) for action, key in KEYS.items()])
    server, url = serve_api(tmp / "store", tmp / "api.log")
    yield url
    assert server.stop() == 0, server.log()[-2000:]


def cases(label: str) -> st.SearchStrategy:
    """Valid and invalid requests to one operation (schemathesis's positive and negative modes)."""
    operation = OPERATIONS[label]
    return st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in schemathesis.GenerationMode))


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_answer_is_one_the_openapi_document_names(label: str, data: st.DataObject, api_url: str) -> None:
    case = data.draw(cases(label))
    # Every request carries the token, so a case generated without it is not negative; and unknown
    # query parameters are ignored (gateways append their own): the negative-data check is left out.
    case.call_and_validate(
        base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=[NEGATIVE_DATA_REJECTION]
    )
