"""Create clonewatch's topics when they are missing, with kafka-python's admin client."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError

from clonewatch.streaming.config import StreamingConfig

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


def ensure_topics(config: StreamingConfig, timeout_s: float = 30.0) -> dict[str, int]:
    """Create the missing topics; return the partition count of every topic.

    Existing topics are left as they are (their partition count included).
    """
    specs = topic_specs(config)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=config.bootstrap.split(","),
            client_id=f"{config.app_id}-admin",
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {config.bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = {name: spec for name, spec in specs.items() if name not in existing}
        if missing:
            response = admin.create_topics(missing, timeout_ms=int(timeout_s * 1000), raise_errors=False, wait_for_metadata=True)
            for topic in response["topics"]:
                if topic["error_code"] not in (0, _ALREADY_EXISTS):  # another process may have won the race
                    raise TopicError(f"cannot create topic {topic['name']}: {topic.get('error_message') or topic['error_code']}")
            log.info("created topics %s", ", ".join(sorted(missing)))
        described = admin.describe_topics(list(specs))
    except KafkaError as exc:
        raise TopicError(f"cannot create the topics at {config.bootstrap}: {exc}") from exc
    finally:
        admin.close()
    return {topic["name"]: len(topic["partitions"]) for topic in described}



def rewind_points(config: StreamingConfig, partitions: list[int]) -> dict[int, int]:
    """The first offset of each of the access topic's ``partitions`` that the worker group
    has no committed offset above 0 for (those a consumer must be moved to explicitly)."""
    tps = [TopicPartition(config.access_topic, p) for p in partitions]
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap.split(","), client_id=f"{config.app_id}-offsets")
    try:
        committed = admin.list_group_offsets({config.app_id: tps}).get(config.app_id, {})
    finally:
        admin.close()
    missing = [tp for tp in tps if tp not in committed or committed[tp].offset <= 0]
    if not missing:
        return {}
    consumer = KafkaConsumer(bootstrap_servers=config.bootstrap.split(","), client_id=f"{config.app_id}-offsets")
    try:
        return {tp.partition: offset for tp, offset in consumer.beginning_offsets(missing).items()}
    finally:
        consumer.close()
