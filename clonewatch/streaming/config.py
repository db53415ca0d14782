"""Everything a streaming process needs to know, from command-line options and environment variables.

Every field of :class:`StreamingConfig` can be set with an environment variable
(:data:`ENV_VARS`, used by docker-compose.yml) and most with a command-line option;
an option given on the command line wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clonewatch.streaming.kafka_auth import KafkaAuth
from clonewatch.streaming.expiry import DEFAULT_CLIENT_TTL_S
from clonewatch.streaming.metrics import parse_address
from detectors.policy import PolicyConfig
from sinks.clickhouse import DEFAULT_DSN

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ACCESS_TOPIC = "clonewatch.access"
DECISIONS_TOPIC = "clonewatch.decisions"
DEAD_LETTER_TOPIC = "clonewatch.dead-letters"

# Environment variable of each StreamingConfig field.
ENV_VARS: dict[str, str] = {
    "bootstrap": "CLONEWATCH_BOOTSTRAP",
    "store_dsn": "CLONEWATCH_STORE",
    "model_path": "CLONEWATCH_MODEL",
    "app_id": "CLONEWATCH_APP_ID",
    "access_topic": "CLONEWATCH_ACCESS_TOPIC",
    "decisions_topic": "CLONEWATCH_DECISIONS_TOPIC",
    "dead_letter_topic": "CLONEWATCH_DEAD_LETTER_TOPIC",
    "partitions": "CLONEWATCH_PARTITIONS",
    "replication_factor": "CLONEWATCH_REPLICATION_FACTOR",
    "batch_size": "CLONEWATCH_BATCH_SIZE",
    "batch_within": "CLONEWATCH_BATCH_WITHIN",
    "recent_ids": "CLONEWATCH_RECENT_IDS",
    "data_dir": "CLONEWATCH_DATA_DIR",
    "session_timeout": "CLONEWATCH_SESSION_TIMEOUT",
    "commit_interval": "CLONEWATCH_COMMIT_INTERVAL",
    "log_interval": "CLONEWATCH_LOG_INTERVAL",
    "status_file": "CLONEWATCH_STATUS_FILE",
    "keep_prompts": "CLONEWATCH_KEEP_PROMPTS",
    "max_lag": "CLONEWATCH_MAX_LAG",
    "stage_save_interval": "CLONEWATCH_STAGE_SAVE_INTERVAL",
    "metrics_address": "CLONEWATCH_METRICS_ADDRESS",
    "client_ttl": "CLONEWATCH_CLIENT_TTL",
}


CLIENT_TABLE = "clients"  # the worker's tables; each is kept in a changelog topic (StreamingConfig.changelog_topic)
STAGE_TABLE = "campaign-stage"


@dataclass(frozen=True)
class StreamingConfig:
    """Topic names, Kafka and store addresses, batching, and the worker's knobs.

    - ``app_id``: the Faust app id, which is also the consumer group of the workers and
      the prefix of the table changelog topics. Workers with the same id share the work.
    - ``partitions``: partitions of the topics created when missing; the most workers
      that can share the work. An existing access topic keeps its partition count.
    - ``batch_size``/``batch_within``: a worker scores up to ``batch_size`` events at a
      time, waiting at most ``batch_within`` seconds to fill a batch.
    - ``recent_ids``: request ids remembered per client to drop re-delivered events.
    - ``session_timeout``: seconds before a dead worker's partitions move to another one.
    - ``commit_interval``: seconds between offset commits; a restarted worker re-reads at
      most this much (and drops what it had applied).
    - ``max_lag``: seconds behind the newest traffic beyond which a worker embeds only the
      prompts it can keep up with, a fair share per client; every event still counts for its
      client's rate and shape signals. Off by default: measured, a client whose prompts are
      sampled looks unlike the fully embedded baseline, and benign clients get flagged
      (README, "Overload").
    - ``stage_save_interval``: seconds between saves of the campaign stage (all the clients
      it remembers, megabytes with many; a stage whose saves take long is saved less often,
      so that saving takes at most 5% of its time); a stage that dies or moves reads again
      the facts acknowledged after its last save.
    - ``keep_prompts``: store each prompt's text in ClickHouse's ``access_events`` (by
      default only its hash and length).
    - ``client_ttl``: seconds of event time after which a quiet client's state leaves the
      worker's table (:mod:`clonewatch.streaming.expiry`); it starts afresh if it comes back.
    - ``metrics_address``: ``PORT`` or ``HOST:PORT`` where the worker serves Prometheus
      metrics on ``/metrics`` (:mod:`clonewatch.streaming.metrics`); off by default.
    """

    bootstrap: str = DEFAULT_BOOTSTRAP
    store_dsn: str = DEFAULT_DSN
    model_path: Path | None = None
    app_id: str = "clonewatch"
    access_topic: str = ACCESS_TOPIC
    decisions_topic: str = DECISIONS_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    partitions: int = 4
    replication_factor: int = 1
    batch_size: int = 256
    batch_within: float = 1.0
    recent_ids: int = 1024
    data_dir: Path = Path("clonewatch-worker")
    session_timeout: float = 10.0
    commit_interval: float = 2.8
    log_interval: float = 5.0
    status_file: Path | None = None
    keep_prompts: bool = False
    max_lag: float | None = None
    stage_save_interval: float = 5.0
    metrics_address: str | None = None
    client_ttl: float = DEFAULT_CLIENT_TTL_S
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    kafka_auth: KafkaAuth = field(default_factory=KafkaAuth)  # from $CLONEWATCH_KAFKA_* (clonewatch/streaming/kafka_auth.py)

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication_factor < 1:
            raise ValueError("partitions and replication factor must be at least 1")
        if self.batch_size < 1 or self.batch_within <= 0:
            raise ValueError("batch size must be at least 1 and batch wait above 0 s")
        if self.recent_ids < 0:
            raise ValueError("recent ids must not be negative")
        if min(self.session_timeout, self.commit_interval, self.log_interval, self.max_lag or 1.0, self.stage_save_interval, self.client_ttl) <= 0:
            raise ValueError("session timeout, commit interval, log interval, max lag, stage save interval and client time to live must be above 0 s")
        if not self.bootstrap.strip():
            raise ValueError("the Kafka bootstrap address must not be empty")
        if self.metrics_address is not None:
            parse_address(self.metrics_address)

    @property
    def campaign_facts_topic(self) -> str:
        """The workers' facts for the campaign stage (one partition: the stage sees every key in order)."""
        return f"{self.app_id}-campaign-facts"

    @property
    def campaign_verdicts_topic(self) -> str:
        """The campaign stage's verdicts, keyed by member and partitioned like the access topic."""
        return f"{self.app_id}-campaign-verdicts"

    def changelog_topic(self, table: str) -> str:
        """The changelog topic Faust keeps ``table`` in (its own naming)."""
        return f"{self.app_id}-{table}-changelog"

    @property
    def broker_url(self) -> str:
        """The bootstrap servers in Faust's URL form: ``kafka://h1:9092;h2:9092``."""
        return ";".join(f"kafka://{server.strip()}" for server in self.bootstrap.split(",") if server.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StreamingConfig:
        """Defaults, then environment variables, then ``overrides`` (None means not given)."""
        environ = os.environ if environ is None else environ
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, var in ENV_VARS.items():
            raw = environ.get(var, "").strip()
            if raw:
                values[name] = _convert(types[name], raw, var)
        values["kafka_auth"] = KafkaAuth.from_env(environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **extra: Any) -> StreamingConfig:
        """Build from parsed options of :func:`add_kafka_options` (and any others that match fields)."""
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in vars(args).items() if k in names}
        return cls.from_env(**given, **extra)


def _convert(kind: str, raw: str, var: str) -> Any:
    """Turn an environment variable into the field's type (annotations are strings here)."""
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"${var} must be a number, got {raw!r}") from None
    if kind.startswith("Path"):
        return Path(raw)
    if kind.startswith("bool"):
        if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"${var} must be true or false, got {raw!r}")
        return raw.lower() in ("1", "true", "yes", "on")
    return raw


def add_kafka_options(parser: argparse.ArgumentParser, *, topics: tuple[str, ...] = ("access",)) -> None:
    """Add --bootstrap and the topic options; defaults come from the environment (see ENV_VARS)."""
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,...]",
        help=f"Kafka bootstrap servers (default: ${ENV_VARS['bootstrap']} or {DEFAULT_BOOTSTRAP})",
    )
    names = {"access": ACCESS_TOPIC, "decisions": DECISIONS_TOPIC, "dead_letter": DEAD_LETTER_TOPIC}
    for topic in topics:
        dest = f"{topic}_topic"
        parser.add_argument(
            f"--{topic.replace('_', '-')}-topic",
            dest=dest,
            metavar="NAME",
            help=f"{topic.replace('_', '-')} topic (default: ${ENV_VARS[dest]} or {names[topic]})",
        )
