"""Kafka with SASL/SCRAM, in the clear and over TLS: a broker that refuses unauthenticated
clients (and, over TLS, clients that do not trust its CA), and every clonewatch client
(shipper, worker, decision follower) authenticating from the environment. Over TLS the
broker also enforces ACLs: each client runs as its own user with only the grants of
`clonewatch kafka acls`."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from clonewatch.lab.kafka.broker import LocalBroker, make_certificates
from clonewatch.streaming.kafka_auth import KafkaAuth
from clonewatch.streaming.listener import listener_protocol
from tests.streaming_support import Names, Worker, cli, committed_everything, numeric_traffic, read_topic, wait_until, write_log

pytestmark = pytest.mark.kafka

USER, PASSWORD = "clonewatch", "correct-horse-battery"  # the broker's own user: with ACLs, the super user
ROLE_USERS = {"shipper": ("cw-shipper", "shipper-staple"), "worker": ("cw-worker", "worker-staple"), "reader": ("cw-reader", "reader-staple")}


@pytest.fixture(scope="module", params=["SASL_PLAINTEXT", "SASL_SSL"])
def sasl_broker(request, tmp_path_factory) -> LocalBroker:
    tls = request.param == "SASL_SSL"
    users = {USER: PASSWORD, **dict(ROLE_USERS.values())} if tls else {USER: PASSWORD}
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-sasl"), users=users, tls=tls, authorize=tls)
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


def as_role(env: dict[str, str], role: str) -> dict[str, str]:
    user, password = ROLE_USERS[role]
    return {**env, "CLONEWATCH_KAFKA_USERNAME": user, "CLONEWATCH_KAFKA_PASSWORD": password}


def can_write(bootstrap: str, topic: str, **security: str) -> bool:
    # Without idempotence, so that the topic's ACL answers (not the cluster's, for a producer id).
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=10_000, enable_idempotence=False, **security)
    try:
        producer.send(topic, key=b"forged", value=b"forged").get(timeout=10)  # decisions are compacted: keyed
        return True
    except TopicAuthorizationFailedError:
        return False
    finally:
        producer.close()


@pytest.mark.parametrize("sasl_broker", ["SASL_SSL"], indirect=True)  # SASL over TLS with ACLs: every client as its own role, end to end
def test_shipper_worker_and_decision_follower_authenticate(sasl_broker: LocalBroker, numeric_model: Path, tmp_path: Path) -> None:
    events, labels = numeric_traffic()
    names = Names.fresh("sasl")
    env = {**names.env(sasl_broker.bootstrap), "CLONEWATCH_KAFKA_USERNAME": USER, "CLONEWATCH_KAFKA_PASSWORD": PASSWORD,
           "CLONEWATCH_KAFKA_CA_FILE": str(sasl_broker.ca_file)}  # fmt: skip
    log = tmp_path / "access.log"
    write_log(log, events)
    shipper = as_role(env, "shipper")
    refused = cli("ship", "--file", str(log), "--once", env=shipper)  # nothing is granted yet
    assert refused.returncode != 0 and "Authorization" in refused.stderr.decode(), refused.stderr.decode()[-2000:]

    granted = cli("kafka", "acls", *(f"--{role}={user}" for role, (user, _) in ROLE_USERS.items()), env=env)
    assert granted.returncode == 0 and "granted 19 ACLs" in granted.stdout.decode(), granted.stderr.decode()
    shipped = cli("ship", "--file", str(log), "--once", env=shipper)
    assert shipped.returncode == 0, shipped.stderr.decode()
    worker = Worker(tmp_path / "worker", numeric_model, as_role(env, "worker"))
    try:
        wait_until(
            lambda: worker.alive() and committed_everything(sasl_broker.bootstrap, names.app_id, names.access, **sasl_broker.client_security),
            180, "the worker to score every event",
        )  # fmt: skip
    finally:
        assert worker.stop() == 0, worker.tail()
    assert read_topic(sasl_broker.bootstrap, names.decisions, **sasl_broker.client_security)

    shown = cli("decisions", env=as_role(env, "reader"))
    assert shown.returncode == 0, shown.stderr.decode()
    attackers = {cid for cid, label in labels.items() if label == "attack"}
    assert any(cid in shown.stdout.decode() for cid in attackers)
    assert not any(password in worker.log() + shown.stdout.decode() + shown.stderr.decode() for _, password in [*ROLE_USERS.values(), (USER, PASSWORD)])
    # Least privilege: neither a shipper's nor a gateway's password can forge a decision.
    for role in ("shipper", "reader"):
        security = KafkaAuth(username=ROLE_USERS[role][0], password=ROLE_USERS[role][1], ca_file=sasl_broker.ca_file).client_kwargs()
        assert not can_write(sasl_broker.bootstrap, names.decisions, **security), role
    assert can_write(sasl_broker.bootstrap, names.decisions, **sasl_broker.client_security)  # the check can tell
