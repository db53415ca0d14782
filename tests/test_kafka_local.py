"""The local Kafka broker works end to end: real broker, real kafka-python clients, real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from clonewatch.lab.kafka.broker import LocalBroker
from clonewatch.streaming.acls import ROLES

pytestmark = pytest.mark.kafka

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs `clonewatch kafka ...` in a fresh process, the way the CLI registers the command.
CLI = (
    "import argparse, sys\n"
    "from clonewatch.commands import kafka\n"
    "parser = argparse.ArgumentParser(prog='clonewatch')\n"
    "kafka.register(parser.add_subparsers(required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "raise SystemExit(args.func(args))\n"
)

Record = tuple[bytes, bytes]


def _create_topic(bootstrap: str) -> str:
    topic = f"test-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    return topic


def _produce(bootstrap: str, topic: str, count: int) -> list[Record]:
    records = [(f"client-{i % 7}".encode(), f"request-{i}".encode()) for i in range(count)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=10)
    finally:
        producer.close()
    return records


def _consume(consumer: KafkaConsumer, count: int, timeout: float = 20) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records += [(record.key, record.value) for record in batch]
    return records


def test_produce_and_consume_in_a_group(kafka_bootstrap: str) -> None:
    topic = _create_topic(kafka_bootstrap)
    sent = _produce(kafka_bootstrap, topic, 100)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"group-{topic}",
        auto_offset_reset="earliest",
    )
    try:
        received = _consume(consumer, len(sent))
        end_offsets = consumer.end_offsets([TopicPartition(topic, 0)])
    finally:
        consumer.close()

    assert received == sent
    assert end_offsets == {TopicPartition(topic, 0): 100}  # nothing beyond the 100 sent


def test_data_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    with LocalBroker(data_dir) as broker:
        topic = _create_topic(broker.bootstrap)
        sent = _produce(broker.bootstrap, topic, 20)
    assert not broker.is_running()

    with LocalBroker(data_dir) as restarted:  # new ports, same storage
        consumer = KafkaConsumer(
            bootstrap_servers=restarted.bootstrap, auto_offset_reset="earliest"
        )
        try:
            consumer.assign([TopicPartition(topic, 0)])
            received = _consume(consumer, len(sent))
        finally:
            consumer.close()

    assert received == sent


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "kafka", *argv],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_cli_start_status_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    port = LocalBroker(data_dir).port  # a free port on 127.0.0.1
    try:
        started = _cli("start", "--data-dir", str(data_dir), "--port", str(port))
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout

        # The broker outlived the `start` process and is found from another process.
        broker = LocalBroker.attach(data_dir)
        assert broker is not None and broker.is_running()
        running = _cli("status", "--data-dir", str(data_dir))
        assert running.returncode == 0 and f"127.0.0.1:{port}" in running.stdout

        again = _cli("start", "--data-dir", str(data_dir), "--port", str(port))
        assert again.returncode == 1 and "already running" in again.stderr

        stopped = _cli("stop", "--data-dir", str(data_dir))
        assert stopped.returncode == 0, stopped.stderr
        assert not broker.is_running()
        assert not (data_dir / "broker.json").exists()
        assert _cli("status", "--data-dir", str(data_dir)).returncode == 1
    finally:
        leftover = LocalBroker.attach(data_dir)
        if leftover is not None:
            leftover.stop()


def test_cli_starts_a_broker_with_acls_and_role_users(tmp_path: Path) -> None:
    """`kafka start --sasl --acls`: the role users' credentials in owner-only files, nothing
    allowed to them until `kafka acls` grants it as the super user."""
    data_dir = tmp_path / "kafka-acls"
    port = LocalBroker(data_dir).port
    admin = {"CLONEWATCH_KAFKA_USERNAME": "admin", "CLONEWATCH_KAFKA_PASSWORD": "admin-staple"}
    assert _cli("start", "--data-dir", str(data_dir), "--acls", env=admin).returncode == 1  # ACLs need --sasl
    try:
        started = _cli("start", "--data-dir", str(data_dir), "--port", str(port), "--sasl", "--acls", env=admin)
        assert started.returncode == 0 and "with SASL/SCRAM and ACLs" in started.stdout, started.stderr
        roles = {role: dict(line.split("=", 1) for line in (data_dir / f"{role}.env").read_text().splitlines()) for role in ROLES}
        assert all((data_dir / f"{role}.env").stat().st_mode & 0o077 == 0 for role in ROLES)
        assert {r["CLONEWATCH_KAFKA_USERNAME"] for r in roles.values()} == set(ROLES) and len({r["CLONEWATCH_KAFKA_PASSWORD"] for r in roles.values()}) == 3
        bootstrap = {"CLONEWATCH_BOOTSTRAP": f"127.0.0.1:{port}"}
        refused = _cli("acls", "--shipper", "shipper", env={**bootstrap, **roles["shipper"]})  # only the super user grants
        assert refused.returncode == 1 and "ClusterAuthorizationFailed" in refused.stderr, refused.stderr
        granted = _cli("acls", "--shipper", "shipper", "--worker", "worker", "--reader", "reader", env={**bootstrap, **admin})
        assert granted.returncode == 0 and "granted 19 ACLs" in granted.stdout, granted.stderr
        assert _cli("stop", "--data-dir", str(data_dir)).returncode == 0
        plain = _cli("start", "--data-dir", str(data_dir), "--port", str(port), "--sasl", env=admin)  # ACLs are not dropped by forgetting them
        assert plain.returncode == 1 and "start it with --acls again" in plain.stderr
    finally:
        leftover = LocalBroker.attach(data_dir)
        if leftover is not None:
            leftover.stop()
