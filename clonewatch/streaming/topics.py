"""clonewatch's topics with kafka-python: created when missing, and read at given offsets where Faust does not."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from clonewatch.streaming.config import CLIENT_TABLE, STAGE_TABLE, StreamingConfig
from clonewatch.streaming.listener import ListenerMismatch, accepts_connections, check_listener

log = logging.getLogger(__name__)

_ALREADY_EXISTS = TopicAlreadyExistsError.errno


class TopicError(RuntimeError):
    """A topic could not be created or described; the message says why."""


def topic_specs(config: StreamingConfig) -> dict[str, dict]:
    """What each topic should look like, in ``KafkaAdminClient.create_topics`` form.

    All keyed by client id with the same partition count, so a client's events, state and
    decisions share a partition number. Decisions are compacted: the topic keeps at least
    the latest decision of every client, so a gateway that starts reading it from the
    beginning learns every client's current action.
    """
    base = {"num_partitions": config.partitions, "replication_factor": config.replication_factor}
    return {
        config.access_topic: dict(base),
        config.decisions_topic: {**base, "configs": {"cleanup.policy": "compact"}},
        config.dead_letter_topic: dict(base),
    }


def worker_topic_specs(config: StreamingConfig, access_partitions: int) -> dict[str, dict]:
    """The workers' own topics. For the campaign stage: facts on one partition, so that one
    stage sees every key in order; verdicts keyed by member with the access topic's actual
    partition count, so that a member's verdicts reach the worker holding its state. And the
    tables' compacted changelogs, made here as Faust would make them: a worker that made them
    itself on its first start joined its group before the broker's metadata showed them, and
    the group's first assignment left the newest one out ("Ignoring missing topic")."""
    replication = config.replication_factor
    compacted = {"cleanup.policy": "compact"}
    return {
        config.campaign_facts_topic: {"num_partitions": 1, "replication_factor": replication},
        config.campaign_verdicts_topic: {"num_partitions": access_partitions, "replication_factor": replication},
        config.changelog_topic(CLIENT_TABLE): {"num_partitions": access_partitions, "replication_factor": replication, "configs": compacted},
        config.changelog_topic(STAGE_TABLE): {"num_partitions": 1, "replication_factor": replication, "configs": compacted},
    }


def admin_client(config: StreamingConfig, timeout_s: float = 30.0, purpose: str = "admin") -> KafkaAdminClient:
    """An admin client for ``config``'s broker, authenticated as its settings say; raises
    TopicError saying what to do when the listener wants other security settings or nothing
    listens there. ``purpose`` ends its client id (``<app-id>-<purpose>``)."""
    addresses = config.bootstrap.split(",")
    try:
        check_listener(config.bootstrap, config.kafka_auth)
    except ListenerMismatch as exc:
        raise TopicError(f"cannot talk to Kafka: {exc}") from exc
    if not any(accepts_connections(address) for address in addresses):
        log.warning("nothing accepts connections at %s yet: waiting up to %g s for a broker (for development: `clonewatch kafka start`)", config.bootstrap, timeout_s)
    try:
        return KafkaAdminClient(
            bootstrap_servers=addresses,
            client_id=f"{config.app_id}-{purpose}",
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **config.kafka_auth.client_kwargs(),
            request_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        if not any(accepts_connections(address) for address in addresses):
            raise TopicError(
                f"cannot reach Kafka at {config.bootstrap}: nothing accepts connections there. Is the broker running, and is "
                "--bootstrap (or $CLONEWATCH_BOOTSTRAP) its address? For development, `clonewatch kafka start` runs one on 127.0.0.1:9092"
            ) from exc
        raise TopicError(f"cannot reach Kafka at {config.bootstrap}: {exc}{config.kafka_auth.hint()}") from exc


def ensure_topics(
    config: StreamingConfig, timeout_s: float = 30.0, worker_topics: bool = False, only: Collection[str] | None = None
) -> dict[str, int]:
    """Create the missing topics (with ``worker_topics``, the workers' own topics too);
    return the partition count of every topic. ``only`` names the topics a client uses, when
    not all three: a shipper may not be allowed to see the decisions (clonewatch/streaming/acls.py).

    Existing topics are left as they are (their partition count included).
    """
    admin = admin_client(config, timeout_s)
    try:
        specs = topic_specs(config)
        counts = _create_missing(admin, {name: spec for name, spec in specs.items() if only is None or name in only}, timeout_s)
        if worker_topics:
            counts |= _create_missing(admin, worker_topic_specs(config, counts[config.access_topic]), timeout_s)
            verdicts = counts[config.campaign_verdicts_topic]
            if verdicts != counts[config.access_topic]:
                raise TopicError(
                    f"topic {config.campaign_verdicts_topic} has {verdicts} partitions and {config.access_topic} "
                    f"{counts[config.access_topic]}: delete {config.campaign_verdicts_topic} (the workers recreate it)"
                )  # fmt: skip
    except KafkaError as exc:
        raise TopicError(f"cannot create the topics at {config.bootstrap}: {exc}") from exc
    finally:
        admin.close()
    return counts


def _create_missing(admin: KafkaAdminClient, specs: dict[str, dict], timeout_s: float) -> dict[str, int]:
    existing = set(admin.list_topics())
    missing = {name: spec for name, spec in specs.items() if name not in existing}
    if missing:
        response = admin.create_topics(missing, timeout_ms=int(timeout_s * 1000), raise_errors=False, wait_for_metadata=True)
        for topic in response["topics"]:
            if topic["error_code"] not in (0, _ALREADY_EXISTS):  # another process may have won the race
                raise TopicError(f"cannot create topic {topic['name']}: {topic.get('error_message') or topic['error_code']}")
        log.info("created topics %s", ", ".join(sorted(missing)))
    return {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics(list(specs))}


def committed_offsets(config: StreamingConfig, partitions: Collection[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The worker group's committed offset of each (topic, partition); 0 where it has none."""
    tps = [TopicPartition(topic, partition) for topic, partition in partitions]
    admin = admin_client(config, purpose="offsets")
    try:
        committed = admin.list_group_offsets({config.app_id: tps}).get(config.app_id, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): max(committed[tp].offset, 0) if tp in committed else 0 for tp in tps}


def resume_points(config: StreamingConfig, partitions: Collection[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Where the worker group resumes each (topic, partition): its committed offset, or the
    partition's first offset where it has none above 0."""
    points = committed_offsets(config, partitions)
    missing = [TopicPartition(topic, p) for (topic, p), offset in points.items() if offset <= 0]
    if missing:
        consumer = KafkaConsumer(bootstrap_servers=config.bootstrap.split(","), client_id=f"{config.app_id}-offsets", **config.kafka_auth.client_kwargs())
        try:
            points.update({(tp.topic, tp.partition): offset for tp, offset in consumer.beginning_offsets(missing).items()})
        finally:
            consumer.close()
    return points


def read_records(config: StreamingConfig, topic: str, partition: int, start: int, stop: int, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """The messages of one partition from offset ``start`` up to, not including, ``stop``
    (from the partition's first message if ``start`` is gone)."""
    tp = TopicPartition(topic, partition)
    consumer = KafkaConsumer(
        bootstrap_servers=config.bootstrap.split(","), client_id=f"{config.app_id}-reread", enable_auto_commit=False,
        auto_offset_reset="earliest", **config.kafka_auth.client_kwargs(),
    )  # fmt: skip
    try:
        consumer.assign([tp])
        consumer.seek(tp, max(start, consumer.beginning_offsets([tp])[tp]))
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < stop:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {topic}[{partition}] only to offset {consumer.position(tp)} of {stop} in {timeout_s:.0f} s")
            for batch in consumer.poll(timeout_ms=1000).values():
                records += [r for r in batch if r.offset < stop]
        return records
    finally:
        consumer.close()
