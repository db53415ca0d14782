"""pytest fixtures for a real local Kafka broker (see clonewatch.lab.kafka.broker).

Import them into tests/conftest.py::

    from tests.kafka_fixture import kafka_broker, kafka_bootstrap  # noqa: F401

The broker needs Java 17+ and, the first time, Maven to download its jars; when either is
missing the fixture fails with the reason rather than skipping, so CI cannot go green
without Kafka tests having run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clonewatch.lab.kafka.broker import BrokerError, LocalBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One broker for the whole session, on free 127.0.0.1 ports, with data in a temp dir."""
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except BrokerError as err:
        message = f"the local Kafka broker did not start: {err}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_bootstrap(kafka_broker: LocalBroker) -> str:
    """``bootstrap_servers`` of the session broker, e.g. ``"127.0.0.1:40123"``."""
    return kafka_broker.bootstrap
