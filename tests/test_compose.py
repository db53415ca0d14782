"""docker-compose.yml agrees with the code: images, ports, environment and commands."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from clonewatch.cli import build_parser
from clonewatch.commands import api, receive, ship, worker
from clonewatch.lab.kafka.broker import KAFKA_VERSION
from clonewatch.streaming.kafka_auth import ENV as KAFKA_AUTH_ENV
from clonewatch.streaming.kafka_auth import KafkaAuth
from clonewatch.streaming.acls import ROLES
from clonewatch.streaming.config import ACCESS_TOPIC, DEAD_LETTER_TOPIC, DECISIONS_TOPIC, ENV_VARS, StreamingConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the default; a required ``${NAME:?why}``: a stand-in."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{([A-Z_]+):\?[^}]*\}", r"set-\1", value)


def env(service: dict) -> dict[str, str]:
    return {k: interpolate(str(v)) for k, v in service.get("environment", {}).items()}


def mounted(service: dict, path: str) -> bool:
    return any(path.startswith(volume.split(":")[1].rstrip("/") + "/") for volume in service.get("volumes", []))


def test_services_and_pinned_images(services: dict) -> None:
    assert {"kafka", "clickhouse", "worker", "shipper"} <= set(services)
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"  # the version the tests run
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image {image} is not pinned"
    for name in ("kafka", "clickhouse", "worker"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert Path(ROOT / services["worker"]["build"], "Dockerfile").is_file()


def test_clonewatch_environment_matches_the_config(services: dict) -> None:
    for name in ("worker", "shipper"):
        variables = env(services[name])
        unknown = {k for k in variables if k.startswith("CLONEWATCH_")} - set(ENV_VARS.values()) - set(KAFKA_AUTH_ENV.values())
        assert not unknown, f"{name} sets variables the code does not read: {unknown}"
        config = StreamingConfig.from_env(variables)  # every value parses
        assert (config.access_topic, config.decisions_topic, config.dead_letter_topic) == (ACCESS_TOPIC, DECISIONS_TOPIC, DEAD_LETTER_TOPIC)


def test_addresses_match_the_servers(services: dict) -> None:
    kafka = env(services["kafka"])
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    for name in ("worker", "shipper"):
        config = StreamingConfig.from_env(env(services[name]))
        assert config.bootstrap == advertised["INTERNAL"] == "kafka:" + listeners["INTERNAL"].lstrip(":")
        assert "kafka" in services[name]["depends_on"]
    host_port = next(p for p in services["kafka"]["ports"] if p.endswith(":29092"))
    assert advertised["HOST"] == "localhost:" + host_port.rsplit(":", 1)[1]

    store = urlsplit(StreamingConfig.from_env(env(services["worker"])).store_dsn)
    clickhouse = env(services["clickhouse"])
    assert (store.scheme, store.hostname, store.port) == ("http", "clickhouse", 8123)
    assert (store.username, store.password) == (clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
    assert services["worker"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    # No password ships in the file: compose refuses to start until one is set.
    assert services["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"].startswith("${CLICKHOUSE_PASSWORD:?")
    assert "CLICKHOUSE_PASSWORD" in " ".join(services["clickhouse"]["healthcheck"]["test"])


def test_commands_parse_with_the_cli(services: dict) -> None:
    parser = build_parser()
    worker_args = parser.parse_args([interpolate(a) for a in services["worker"]["command"]])
    assert worker_args.func is worker.main
    ship_args = parser.parse_args([interpolate(a) for a in services["shipper"]["command"]])
    assert ship_args.func is ship.main and not ship_args.once
    assert mounted(services["shipper"], str(ship_args.file))
    assert not services["shipper"]["volumes"][0].endswith(":ro")  # the checkpoint is written next to the log


def test_worker_is_scalable_and_checked(services: dict) -> None:
    service = services["worker"]
    assert "container_name" not in service and "ports" not in service  # copies must not collide
    variables = env(service)
    assert mounted(service, variables["CLONEWATCH_MODEL"])
    assert variables["CLONEWATCH_STATUS_FILE"] in " ".join(service["healthcheck"]["test"])
    assert Path(variables["CLONEWATCH_STATUS_FILE"]).parent == Path(variables["CLONEWATCH_DATA_DIR"])
    grace = service["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > worker.STOP_TIMEOUT_S  # the worker's own deadline comes first


def test_api_and_receiver_parse_with_the_cli_and_answer_health_checks(services: dict) -> None:
    parser = build_parser()
    for name, command, token in (("api", api.main, "CLONEWATCH_API_TOKEN"), ("receiver", receive.main, "CLONEWATCH_RECEIVE_TOKEN")):
        service = services[name]
        args = parser.parse_args([interpolate(a) for a in service["command"]])
        assert args.func is command and args.host == "0.0.0.0"
        assert token in env(service)
        published = next(p for p in service["ports"] if p.startswith("127.0.0.1:"))
        assert published.rsplit(":", 1)[1] == str(args.port) and f":{args.port}/healthz" in " ".join(service["healthcheck"]["test"])
    assert StreamingConfig.from_env(env(services["api"])).store_dsn.startswith("http://clonewatch:")


def test_kafka_authenticates_each_role_and_grants_it_no_more(services: dict) -> None:
    """Every Kafka client logs in as its role's user, with the password the broker knows that
    user by; kafka-acls grants those users their roles as the one super user, before any of
    them starts; no listener is left without authentication."""
    kafka = env(services["kafka"])
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"} and kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer") and kafka["KAFKA_SUPER_USERS"] == "User:admin"
    for listener in protocols:
        jaas = services["kafka"]["environment"][f"KAFKA_LISTENER_NAME_{listener}_PLAIN_SASL_JAAS_CONFIG"]
        known = dict(re.findall(r'user_([a-z]+)="\$\{([A-Z_]+)', jaas))  # user -> the variable holding its password
        assert set(known) == {"admin", *ROLES} and 'username="admin" password="${KAFKA_ADMIN_PASSWORD' in jaas

    roles = {"shipper": "shipper", "receiver": "shipper", "worker": "worker", "api": "reader"}
    for name, role in roles.items():
        raw = services[name]["environment"]
        user = raw["CLONEWATCH_KAFKA_USERNAME"]
        assert user == role and raw["CLONEWATCH_KAFKA_PASSWORD"].startswith("${" + known[user] + ":?")
        assert KafkaAuth.from_env(env(services[name])).mechanism == "PLAIN"
        assert services[name]["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"

    acls = services["kafka-acls"]
    args = build_parser().parse_args([interpolate(a) for a in acls["command"]])
    assert {role: getattr(args, role) for role in ROLES} == {role: role for role in ROLES}
    assert acls["environment"]["CLONEWATCH_KAFKA_USERNAME"] == "admin"
    assert acls["environment"]["CLONEWATCH_KAFKA_PASSWORD"].startswith("${" + known["admin"] + ":?")
    assert acls["restart"] == "no" and acls["depends_on"]["kafka"]["condition"] == "service_healthy"
