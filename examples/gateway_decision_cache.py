"""A gateway-side cache of clonewatch decisions, fed by the Kafka decisions topic.

The decisions topic is clonewatch's push channel: a record (key = client id) whenever a
client's action changes, in the JSON form of ``schemas.Decision``. The topic is compacted,
so reading it from the beginning gives every client's latest decision.

A gateway plugin keeps one :class:`DecisionCache` per process and asks it on every request::

    cache = DecisionCache("kafka:9092").start()
    cache.wait_until_loaded(timeout_s=30)
    ...
    action = cache.action_for(client_id)   # "allow" | "throttle" | "challenge" | "deny"

``action_for`` is a dictionary lookup; a background thread applies new decisions within
about a second. Client ids are those of the shipper: for an API key, compute
``ingest.formats.client_id_for_key(api_key)`` (``key_`` + 16 hex digits of its SHA-256).

Entries expire ``ttl_s`` seconds after the decision was made (``None``: never). The worker
only sends a decision when a client's action changes, so an expired sanction is not renewed
by itself: the TTL is a cap on how long one decision can hold a client, for gateways that
prefer to fail open and let a later change (or an analyst) decide again.

Run it against the local broker and watch decisions arrive::

    clonewatch kafka start
    python examples/gateway_decision_cache.py --bootstrap 127.0.0.1:9092 --client CLIENT_ID
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime

from kafka import KafkaConsumer, TopicPartition

ALLOW = "allow"


class DecisionCache:
    """client id -> latest action, kept current by a consumer thread on the decisions topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str = "clonewatch.decisions",
        ttl_s: float | None = None,
        on_change: Callable[[dict], None] | None = None,
        clock: Callable[[], float] = time.time,
        **security: str,
    ) -> None:
        """``security``: kafka-python's settings for a broker that authenticates, e.g.
        ``security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=..., sasl_plain_password=...``."""
        self.security = security
        self.bootstrap = bootstrap
        self.topic = topic
        self.ttl_s = ttl_s
        self.on_change = on_change
        self.clock = clock
        self._actions: dict[str, tuple[str, float]] = {}  # client id -> (action, decided at, epoch s)
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-cache", daemon=True)

    def start(self) -> DecisionCache:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_until_loaded(self, timeout_s: float) -> bool:
        """True once the decisions held by the topic at start have all been applied."""
        return self._loaded.wait(timeout_s)

    def action_for(self, client_id: str) -> str:
        """The client's current action; ``allow`` for unknown clients and expired decisions."""
        with self._lock:
            entry = self._actions.get(client_id)
        if entry is None:
            return ALLOW
        action, decided_at = entry
        if self.ttl_s is not None and self.clock() - decided_at > self.ttl_s:
            return ALLOW
        return action

    def apply(self, value: bytes) -> None:
        """Apply one record of the decisions topic (later records replace earlier ones)."""
        decision = json.loads(value)
        decided_at = datetime.fromisoformat(decision["ts"].replace("Z", "+00:00")).timestamp()
        with self._lock:
            self._actions[decision["client_id"]] = (decision["action"], decided_at)
        if self.on_change is not None:
            self.on_change(decision)

    def _run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","), enable_auto_commit=False, isolation_level="read_committed", **self.security
        )
        try:
            partitions = self._partitions(consumer)
            if not partitions:  # stopped before the topic appeared
                return
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            pending = {tp: end for tp, end in consumer.end_offsets(partitions).items() if end > 0}
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self.apply(record.value)
                pending = {tp: end for tp, end in pending.items() if consumer.position(tp) < end}
                if not pending:
                    self._loaded.set()
        finally:
            consumer.close()

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        while not self._stop.is_set():
            found = consumer.partitions_for_topic(self.topic)
            if found:
                return [TopicPartition(self.topic, p) for p in sorted(found)]
            time.sleep(1.0)  # the topic appears when the first worker starts
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description="Follow clonewatch decisions the way a gateway plugin would.")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="clonewatch.decisions")
    parser.add_argument("--ttl", type=float, default=None, metavar="SECONDS", help="expire decisions this long after they were made")
    parser.add_argument("--client", action="append", default=[], help="print this client's action every few seconds (repeatable)")
    args = parser.parse_args()

    def show(decision: dict) -> None:
        print(f"{decision['ts']}  {decision['client_id']} -> {decision['action']} (risk {decision['risk']:.4f})", flush=True)

    security = {}  # the variables clonewatch's own clients read (docs/streaming.md)
    if os.environ.get("CLONEWATCH_KAFKA_USERNAME"):
        security = {
            "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": os.environ.get("CLONEWATCH_KAFKA_MECHANISM", "SCRAM-SHA-256"),
            "sasl_plain_username": os.environ["CLONEWATCH_KAFKA_USERNAME"], "sasl_plain_password": os.environ.get("CLONEWATCH_KAFKA_PASSWORD", ""),
        }  # fmt: skip
    cache = DecisionCache(args.bootstrap, args.topic, ttl_s=args.ttl, on_change=show, **security).start()
    try:
        while True:
            time.sleep(5)
            for client in args.client:
                print(f"lookup {client}: {cache.action_for(client)}", flush=True)
    except KeyboardInterrupt:
        cache.stop()


if __name__ == "__main__":
    main()
