"""A local single-node Kafka broker for clonewatch development and tests."""

from clonewatch.lab.kafka.broker import KAFKA_VERSION, BrokerError, LocalBroker, fetch_jars

__all__ = ["KAFKA_VERSION", "BrokerError", "LocalBroker", "fetch_jars"]
