"""The worker's batch logic without Kafka: replay guards, record storage, configuration."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import msgspec
import pytest

from clonewatch.commands.decisions import describe
from clonewatch.streaming.config import StreamingConfig
from clonewatch.streaming.processing import BatchProcessor, ClientRecord, Incoming, expected_partition
from clonewatch.streaming.topics import TopicError, ensure_topics
from detectors import ClientState
from schemas import AccessEvent, Action, Decision

PARTITIONS = 4


def message(client: str, offset: int, request_id: str | None = None, key: bytes | None = b"", raw: bytes | None = None) -> Incoming:
    record = {"ts": 1795428000 + offset, "client_id": client, "features": [1.0, 2.0]}
    if request_id:
        record["request_id"] = request_id
    partition = expected_partition(client.encode(), PARTITIONS)
    return Incoming("access", partition, offset, client.encode() if key == b"" else key, raw or json.dumps(record).encode())


@pytest.fixture
def processor() -> BatchProcessor:
    detector = SimpleNamespace(model=SimpleNamespace(window=10))  # admit only needs the window size
    return BatchProcessor(detector, vectorizer=None, recent_ids=3)


def test_admit_keeps_fresh_events_and_drops_repeats(processor: BatchProcessor) -> None:
    records: dict[str, ClientRecord] = {}
    batch = [message("a", 0, "r1"), message("a", 1, "r1"), message("b", 2), message("a", 3, "r2"), message("c", 4, raw=b"{")]
    admitted = processor.admit(processor.decode(batch), records, PARTITIONS)
    assert [(e.client_id, e.request_id) for e in admitted.events] == [("a", "r1"), ("b", None), ("a", "r2")]
    assert admitted.duplicates == 1  # the shipper sent r1 twice
    assert [(d.source, d.line) for d in admitted.dead_letters] == [(f"access[{batch[4].partition}]", 4)]
    assert admitted.misrouted == 0

    again = processor.admit(processor.decode(batch), records, PARTITIONS)  # a replay after a crash
    assert again.events == [] and again.duplicates == 4


def test_records_survive_storage_with_bounded_ids(processor: BatchProcessor) -> None:
    records: dict[str, ClientRecord] = {}
    processor.admit(processor.decode([message("a", i, f"r{i}") for i in range(5)]), records, PARTITIONS)
    records["a"].state.events_seen = 5
    restored = processor.load_record(records["a"].to_bytes())
    assert restored.state.events_seen == 5 and list(restored.recent_ids) == [ClientRecord.id_hash(f"r{i}") for i in (2, 3, 4)]
    late = AccessEvent(ts=1795428000, client_id="a", request_id="r0")
    assert not restored.is_replay(late, partition=9, offset=0)  # r0 fell out of the remembered ids
    assert restored.is_replay(late, partition=message("a", 0).partition, offset=4)  # but its offset is behind


def test_a_record_written_with_plain_ids_reads_as_hashed_ids(processor: BatchProcessor) -> None:
    old = msgspec.msgpack.encode({"state": ClientState(window=10).to_bytes(), "ids": ["r1", "r2"], "positions": {0: 7}})
    record = processor.load_record(old)
    assert record.is_replay(AccessEvent(ts=1795428000, client_id="a", request_id="r2"), partition=1, offset=0)
    assert not record.is_replay(AccessEvent(ts=1795428000, client_id="a", request_id="r3"), partition=1, offset=0)
    assert record.is_replay(AccessEvent(ts=1795428000, client_id="a", request_id="r3"), partition=0, offset=7)


def test_misrouted_messages_are_counted(processor: BatchProcessor) -> None:
    admitted = processor.admit(processor.decode([message("a", 0, key=None), message("b", 1, key=b"other")]), {}, PARTITIONS)
    assert admitted.misrouted == 2 and len(admitted.events) == 2


def test_events_too_long_to_keep_whole_are_counted_whoever_bounded_them(processor: BatchProcessor) -> None:
    """A long prompt the decoder cuts and a row the shipper sketched before Kafka both count."""
    long_prompt = json.dumps({"ts": 1795428000, "client_id": "a", "prompt": "x" * 40_000}).encode()
    sketched = json.dumps({"ts": 1795428001, "client_id": "b", "features": [0.5] * 1024, "features_dim": 6912}).encode()
    batch = [message("a", 0, raw=long_prompt), message("b", 1, raw=sketched), message("c", 2)]
    admitted = processor.admit(processor.decode(batch), {}, PARTITIONS)
    assert len(admitted.events) == 3 and admitted.bounded == 2


def test_expected_partition_is_kafkas_default_partitioner() -> None:
    from kafka.partitioner.default import DefaultPartitioner

    cluster = SimpleNamespace(
        topics=lambda: {"t"}, partitions_for_topic=lambda t: set(range(6)), available_partitions_for_topic=lambda t: set(range(6))
    )
    for key in (b"key_4c891e944b4f", b"consumer_4a1e6f1c", b"x"):
        assert expected_partition(key, 6) == DefaultPartitioner().partition("t", key, key, None, None, cluster)


def test_config_from_environment_and_overrides() -> None:
    environ = {"CLONEWATCH_BOOTSTRAP": "k1:9092,k2:9092", "CLONEWATCH_PARTITIONS": "8", "CLONEWATCH_BATCH_WITHIN": "0.5", "CLONEWATCH_MODEL": "/m.cwm"}
    config = StreamingConfig.from_env(environ, partitions=2, batch_size=None)
    assert (config.partitions, config.batch_within, config.batch_size, str(config.model_path)) == (2, 0.5, 256, "/m.cwm")
    assert config.broker_url == "kafka://k1:9092;kafka://k2:9092"
    with pytest.raises(ValueError, match="CLONEWATCH_PARTITIONS"):
        StreamingConfig.from_env({"CLONEWATCH_PARTITIONS": "many"})
    with pytest.raises(ValueError, match="partitions"):
        StreamingConfig.from_env({}, partitions=0)


def test_a_broker_that_is_not_there_is_named_with_how_to_start_one() -> None:
    with socket.socket() as probe:  # a free port: nothing listens there once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = StreamingConfig.from_env({"CLONEWATCH_BOOTSTRAP": f"127.0.0.1:{port}"})
    with pytest.raises(TopicError, match="nothing accepts connections there.*clonewatch kafka start"):
        ensure_topics(config, timeout_s=1.0)


def test_decision_line_for_humans() -> None:
    decision = Decision("key_1", "2026-11-23T10:00:00.000Z", 0.5, Action.ALLOW, 40, ["risk back below thresholds"])
    assert describe(decision) == "2026-11-23T10:00:00.000Z  ALLOW      key_1  risk 0.50000 after 40 events: risk back below thresholds"



def test_a_worker_behind_the_traffic_embeds_only_what_keeps_up(embedder) -> None:
    """Behind by more than max_lag, a batch embeds what the worker embeds in the time the batch
    took to arrive; every event still reaches the detector."""
    from detectors import BatchResult
    from detectors.vectorize import Vectorizer

    class Recording:
        model = SimpleNamespace(window=200)

        def process(self, events, vectors, states):
            self.vectors = vectors
            return BatchResult()

    detector = Recording()
    processor = BatchProcessor(detector, Vectorizer(embedder), max_lag_s=30.0)
    events = [AccessEvent(ts=1795428000 + i, client_id=f"k{i % 6}", prompt=f"overload test prompt number {i}") for i in range(60)]
    records = {e.client_id: processor.new_record() for e in events}
    processor.score(events, records, lag_s=2.0, span_s=1.0)
    assert all(v is not None for v in detector.vectors) and processor.prompt_rate > 0
    processor.prompt_rate = 50.0
    processor.score(events, records, lag_s=120.0, span_s=0.5)
    assert len(detector.vectors) == 60 and sum(v is not None for v in detector.vectors) == 20  # 0.8 * 50/s * 0.5 s
    assert {e.client_id for e, v in zip(events, detector.vectors) if v is not None} == {f"k{i}" for i in range(6)}
