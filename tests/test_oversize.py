"""Requests too large to keep whole (an image classifier's inputs, long-context prompts) are
scored on a bounded part of them, through run's reader, the shipper and the store alike."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from clonewatch.report import render_summary
from clonewatch.runner import RunConfig, RunSummary
from detectors.client_state import ClientState
from detectors.features import FEATURE_NAMES, extract_features
from ingest.decode import EventDecoder
from ingest.oversize import MAX_PROMPT_CHARS, SKETCH_DIM, sketch
from ingest.reader import EventReader
from ingest.shipper import Line, Shipper
from schemas import AccessEvent, DeadLetter
from sinks.clickhouse import ClickHouseStore

IMAGE = (224, 224, 3)  # an ImageNet classifier's input: 150,528 numbers a request


def kserve_line(image: np.ndarray, request_id: str) -> bytes:
    """A KServe payload-logger record of one predict request, the caller added by the gateway."""
    return json.dumps({
        "time": "2026-11-23T10:00:03.250Z", "id": request_id, "client_id": "acct-7781",
        "path": "/v1/models/resnet:predict", "data": {"instances": [np.round(image, 3).tolist()]},
    }).encode()  # fmt: skip


def shipped(lines: list[bytes]) -> list[tuple[str, dict]]:
    shipper = Shipper(None, "auto", "access", "dead")
    source = SimpleNamespace(name="gateway.log", request_id=lambda line: f"r{line.number}")
    messages = [m for n, data in enumerate(lines, 1) for m in shipper.messages(source, Line(0, n, data))]
    return [(topic, json.loads(value)) for topic, _, value in messages], shipper.stats


def test_an_image_classifier_request_is_scored_on_its_sketch():
    image = np.random.default_rng(0).uniform(size=IMAGE)
    reader = EventReader("kserve.log")
    [event] = reader.read([kserve_line(image, "img-1")])
    assert reader.format == "kserve"  # a payload-logger line, told apart by the request under "data"
    assert isinstance(event, AccessEvent) and event.features_dim == image.size and len(event.features) == SKETCH_DIM
    assert event.space == "numeric:150528" and event.features == sketch(np.round(image, 3).ravel())
    assert reader.bounded == {"feature rows over 1,024 values held as their 1,024-value sketch": 1}

    [(topic, record)], stats = shipped([kserve_line(image, "img-1")])  # 1.1 MB of JSON: over Kafka's message limit whole
    assert topic == "access" and record["features_dim"] == image.size and len(record["features"]) == SKETCH_DIM
    assert stats.bounded == 1 and stats.dead_letters == 0
    again = EventDecoder("worker").decode(json.dumps(record).encode(), 1)  # the worker decodes what the shipper sent
    assert again.features == event.features and again.space == event.space


def test_sketches_keep_probes_near_their_origin_and_other_inputs_far():
    """Boundary probing sends tiny edits of one input: each edit's nearest sketch is still its
    origin's, and distances between different inputs keep their size."""
    rng = np.random.default_rng(1)
    origins = rng.uniform(size=(40, 20_000))
    probes = origins + rng.normal(scale=0.02, size=origins.shape)
    sketched_origins = np.array([sketch(x) for x in origins])
    sketched_probes = np.array([sketch(x) for x in probes])
    distances = np.linalg.norm(sketched_probes[:, None, :] - sketched_origins[None, :, :], axis=2)
    assert (distances.argmin(axis=1) == np.arange(len(origins))).all()
    raw = np.linalg.norm(origins[1:] - origins[:-1], axis=1)
    kept = np.linalg.norm(sketched_origins[1:] - sketched_origins[:-1], axis=1) / raw
    assert 0.85 < kept.min() and kept.max() < 1.15


def test_a_long_prompt_is_scored_on_its_first_characters():
    document = "clause 7.3 of the agreement " * 3000  # 84,000 characters of long-context request
    line = json.dumps({"ts": 1795428000, "client_id": "k", "prompt": document}).encode()
    reader = EventReader("rag.log")
    [event] = reader.read([line])
    assert isinstance(event, AccessEvent) and event.prompt == document[:MAX_PROMPT_CHARS]
    assert event.prompt_chars == event.prompt_length == len(document)  # its length is the client's
    [(_, record)], stats = shipped([line])
    assert record["prompt"] == document[:MAX_PROMPT_CHARS] and stats.bounded == 1
    assert EventDecoder("x").decode(json.dumps(record), 1).prompt_length == len(document)  # the worker's view too

    summary = RunSummary(accepted=1, bounded=dict(reader.bounded))
    assert "1× prompts over 32,000 characters scored on their first 32,000" in render_summary(summary, RunConfig(input="rag.log"))


def test_cut_prompts_keep_their_lengths_in_the_features_and_the_store(chdb_dsn):
    """A long-context customer's prompts all exceed the cut: had they all been measured at the
    cut's length, their prompt length would never vary, as a script's does."""
    decoder = EventDecoder("x")
    events = [
        decoder.decode(json.dumps({"ts": 1795428000 + i, "client_id": "rag", "prompt": f"document {i} " + "x" * (40_000 + 9_000 * i)}), i)
        for i in range(12)
    ]  # fmt: skip
    state = ClientState(window=50)
    for event in events:
        state.learn_one(event, None)
    assert extract_features(state, {})[FEATURE_NAMES.index("prompt_len_cv")] > 0.2

    store = ClickHouseStore(chdb_dsn, database="long_prompts")
    store.ensure_tables()
    store.insert_access_events(events[:2], keep_prompts=True)
    assert [r[0] for r in store.query("SELECT prompt_chars FROM long_prompts.access_events ORDER BY ts")[1]] == [e.prompt_chars for e in events[:2]]
    back, _ = store.history()
    assert [e.prompt_length for e in back] == [e.prompt_length for e in events[:2]] and back[0].prompt == events[0].prompt
    assert isinstance(decoder.decode(json.dumps({"ts": 1795428000, "client_id": "k", "prompt": "abc", "prompt_chars": 2}), 1), DeadLetter)


def test_a_row_of_huge_numbers_has_a_finite_sketch():
    event = EventDecoder("x").decode(json.dumps({"ts": 1795428000, "client_id": "k", "features": [1e308] * 5000}).encode(), 1)
    assert isinstance(event, AccessEvent) and np.isfinite(event.features).all()


def test_a_sketch_that_is_not_one_is_a_dead_letter():
    """A record claiming a sketch must hold one, or it would put rows of another length into the
    row's vector space (a poison event for its projection) or a length the store cannot keep."""
    decoder = EventDecoder("x")
    for features, dim in (([1.0, 2.0, 3.0], 150_528), ([1.0] * SKETCH_DIM, 2), ([1.0] * SKETCH_DIM, 5_000_000_000), (None, 150_528)):
        line = json.dumps({"ts": 1795428000, "client_id": "k", "features": features, "features_dim": dim}).encode()
        letter = decoder.decode(line, 4)
        assert isinstance(letter, DeadLetter) and "features_dim" in letter.reason, (features and len(features), dim)
    assert decoder.decode(json.dumps({"ts": 1795428000, "client_id": "k", "features": [1.0] * SKETCH_DIM, "features_dim": 150_528}), 5).space == "numeric:150528"


def test_a_row_longer_than_65535_values_keeps_its_length_in_the_store(chdb_dsn):
    store = ClickHouseStore(chdb_dsn, database="oversize")
    store.ensure_tables()
    event = EventDecoder("x").decode(json.dumps({"ts": 1795428000, "client_id": "k", "features": [0.25] * 150_528}).encode(), 1)
    store.insert_access_events([event])
    assert store.query("SELECT features_count, length(features) FROM oversize.access_events")[1] == [(150_528, SKETCH_DIM)]
    [back], _ = store.history()
    assert back.features_dim == 150_528 and back.space == "numeric:150528"
