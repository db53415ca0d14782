"""Kafka with SASL/SCRAM, in the clear and over TLS: a broker that refuses unauthenticated
clients (and, over TLS, clients that do not trust its CA), and every clonewatch client
(shipper, worker, decision follower) authenticating from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from clonewatch.lab.kafka.broker import LocalBroker, make_certificates
from clonewatch.streaming.kafka_auth import KafkaAuth
from clonewatch.streaming.listener import listener_protocol
from tests.streaming_support import Names, Worker, cli, committed_everything, numeric_traffic, read_topic, wait_until, write_log

pytestmark = pytest.mark.kafka

USER, PASSWORD = "clonewatch", "correct-horse-battery"


@pytest.fixture(scope="module", params=["SASL_PLAINTEXT", "SASL_SSL"])
def sasl_broker(request, tmp_path_factory) -> LocalBroker:
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-sasl"), users={USER: PASSWORD}, tls=request.param == "SASL_SSL")
    broker.start()
    yield broker
    broker.stop()


def can_list_topics(bootstrap: str, **security: str) -> bool:
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, bootstrap_timeout_ms=5000, **security)
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def test_the_broker_refuses_clients_without_the_password(sasl_broker: LocalBroker, tmp_path: Path) -> None:
    assert can_list_topics(sasl_broker.bootstrap, **sasl_broker.client_security)
    assert not can_list_topics(sasl_broker.bootstrap)
    wrong = KafkaAuth(username=USER, password="guess", ca_file=sasl_broker.ca_file).client_kwargs()
    assert not can_list_topics(sasl_broker.bootstrap, **wrong)
    if sasl_broker.tls:
        in_the_clear = KafkaAuth(username=USER, password=PASSWORD).client_kwargs()
        assert not can_list_topics(sasl_broker.bootstrap, **in_the_clear)
        another_ca, _ = make_certificates(tmp_path / "another-ca")  # the password is right, the CA is not the broker's
        assert not can_list_topics(sasl_broker.bootstrap, **KafkaAuth(username=USER, password=PASSWORD, ca_file=another_ca).client_kwargs())
        assert (sasl_broker.data_dir / "tls" / "broker.pem").stat().st_mode & 0o077 == 0  # the broker's private key
    assert (sasl_broker.data_dir / "server.properties").stat().st_mode & 0o077 == 0  # it holds the broker's password


def test_a_client_without_the_listeners_security_is_told_what_to_set_at_once(sasl_broker: LocalBroker, kafka_bootstrap: str, tmp_path: Path) -> None:
    """A broker drops a client that speaks the wrong protocol without a word; the shipper and
    `decisions` ask the listener what it speaks and say what to set, instead of waiting out
    kafka-python's 30-second bootstrap timeout and guessing."""
    assert listener_protocol(sasl_broker.bootstrap) == ("TLS" if sasl_broker.tls else "SASL_PLAINTEXT")
    assert listener_protocol(kafka_bootstrap) == "PLAINTEXT"
    log = tmp_path / "access.log"
    write_log(log, numeric_traffic()[0][:5])
    names = Names.fresh("mismatch")
    told = "speaks TLS: set $CLONEWATCH_KAFKA_CA_FILE" if sasl_broker.tls else "requires SASL authentication: set $CLONEWATCH_KAFKA_USERNAME"
    for command in (["ship", "--file", str(log), "--once"], ["decisions"]):
        refused = cli(*command, env=names.env(sasl_broker.bootstrap), timeout=20)  # well inside the 30-second bootstrap wait
        assert refused.returncode != 0 and told in refused.stderr.decode().splitlines()[-1], refused.stderr.decode()[-2000:]
    with_a_password = {**names.env(kafka_bootstrap), "CLONEWATCH_KAFKA_USERNAME": USER, "CLONEWATCH_KAFKA_PASSWORD": PASSWORD}
    refused = cli("ship", "--file", str(log), "--once", env=with_a_password, timeout=20)
    assert refused.returncode != 0 and "does not use SASL on this listener" in refused.stderr.decode(), refused.stderr.decode()[-2000:]


@pytest.mark.parametrize("sasl_broker", ["SASL_SSL"], indirect=True)  # SASL over TLS: the credentials and the CA, end to end
def test_shipper_worker_and_decision_follower_authenticate(sasl_broker: LocalBroker, numeric_model: Path, tmp_path: Path) -> None:
    events, labels = numeric_traffic()
    names = Names.fresh("sasl")
    env = {**names.env(sasl_broker.bootstrap), "CLONEWATCH_KAFKA_USERNAME": USER, "CLONEWATCH_KAFKA_PASSWORD": PASSWORD}
    if sasl_broker.ca_file is not None:
        env["CLONEWATCH_KAFKA_CA_FILE"] = str(sasl_broker.ca_file)
    log = tmp_path / "access.log"
    write_log(log, events)

    shipped = cli("ship", "--file", str(log), "--once", env=env)
    assert shipped.returncode == 0, shipped.stderr.decode()
    worker = Worker(tmp_path / "worker", numeric_model, env)
    try:
        wait_until(
            lambda: worker.alive() and committed_everything(sasl_broker.bootstrap, names.app_id, names.access, **sasl_broker.client_security),
            180, "the worker to score every event",
        )  # fmt: skip
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert read_topic(sasl_broker.bootstrap, names.decisions, **sasl_broker.client_security)

    shown = cli("decisions", env=env)
    assert shown.returncode == 0, shown.stderr.decode()
    attackers = {cid for cid, label in labels.items() if label == "attack"}
    assert any(cid in shown.stdout.decode() for cid in attackers)
    assert PASSWORD not in worker.log() + shown.stdout.decode() + shown.stderr.decode()
