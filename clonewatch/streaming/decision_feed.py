"""The decisions topic as a stream of raw records: for ``clonewatch decisions`` and the API's follower."""

from __future__ import annotations

import time
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition

from clonewatch.streaming.config import StreamingConfig
from clonewatch.streaming.listener import check_listener


def read_decisions(config: StreamingConfig, follow: bool, from_beginning: bool, timeout_s: float) -> Iterator[bytes]:
    """Raw decision records: all the topic holds (and, following, every new one)."""
    check_listener(config.bootstrap, config.kafka_auth)
    consumer = KafkaConsumer(
        bootstrap_servers=config.bootstrap.split(","),
        client_id="clonewatch-decisions",
        enable_auto_commit=False,
        isolation_level="read_committed",
        bootstrap_timeout_ms=int(timeout_s * 1000),
        **config.kafka_auth.client_kwargs(),
    )
    try:
        partitions = _partitions(consumer, config.decisions_topic, timeout_s)
        consumer.assign(partitions)
        if follow and not from_beginning:
            consumer.seek_to_end(*partitions)
            ends = {}
        else:
            consumer.seek_to_beginning(*partitions)
            ends = {tp: end for tp, end in consumer.end_offsets(partitions).items() if end > 0}
        while follow or ends:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    yield record.value
                if tp in ends and consumer.position(tp) >= ends[tp]:
                    del ends[tp]
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise ValueError(f"topic {topic} does not exist (yet); start a worker or `clonewatch ship` first")
        time.sleep(0.5)
