"""``clonewatch worker``: a Faust stream processor that scores the access topic."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from clonewatch.commands.options import add_embedder_option, add_policy_options, add_store_option, policy_from_args
from clonewatch.streaming.config import ENV_VARS, StreamingConfig, add_kafka_options
from clonewatch.streaming.topics import TopicError, ensure_topics
from clonewatch.threads import fit_threads_to_cpus

# Faust logs every rebalance step at INFO; its warnings and errors are what an operator needs.
_CHATTY_LOGGERS = ("faust", "mode", "aiokafka", "kafka")
STARTUP_GRACE_S = 60.0
STOP_TIMEOUT_S = 25.0  # under Kubernetes' default grace period of 30 s


class HealthyStartNoise(logging.Filter):
    """Drops what a healthy start logs as trouble: a fresh broker has no group coordinator for
    a moment (aiokafka: an ERROR, then warnings), and the worker reads offsets with consumers
    that have no group (kafka-python: a warning each). A coordinator lost after the first
    ``grace_s`` seconds is logged as it comes.

    >>> noise = HealthyStartNoise(grace_s=60.0, clock=iter([0.0, 1.0, 120.0]).__next__)
    >>> def record(message):
    ...     return logging.LogRecord("aiokafka", logging.ERROR, "", 0, message, None, None)
    >>> [noise.filter(record("Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError")) for _ in range(2)]
    [False, True]
    """

    def __init__(self, grace_s: float = STARTUP_GRACE_S, clock=time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.until = clock() + grace_s

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("group_id is None: disabling auto-commit"):
            return False
        starting = self.clock() < self.until
        return not (starting and ("GroupCoordinatorNotAvailable" in message or message.startswith("Marking the coordinator dead")))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="score the access topic as a Kafka stream processor (Faust)",
        description=(
            "Consume access events from Kafka, keep per-client state in a changelog-backed table, "
            "score clients in batches, write risk scores to ClickHouse and push a decision to the "
            "decisions topic whenever a client's action changes. Start more workers with the same "
            "--app-id to share the partitions; a killed worker's partitions move to the others. One "
            "worker at a time also runs the campaign stage, which sees every worker's keys (topics "
            "<app-id>-campaign-facts and <app-id>-campaign-verdicts). Kafka credentials come from "
            "$CLONEWATCH_KAFKA_USERNAME and $CLONEWATCH_KAFKA_PASSWORD."
        ),
        epilog="example: clonewatch worker --bootstrap 127.0.0.1:9092 --model model.cwm --store chdb://./worker-store",
    )
    add_kafka_options(parser, topics=("access", "decisions", "dead_letter"))
    parser.add_argument("--model", dest="model_path", type=Path, metavar="PATH", help=f"model file from `clonewatch train` (default: ${ENV_VARS['model_path']})")
    add_store_option(parser)
    parser.add_argument("--app-id", help="Faust app id = consumer group; workers with the same id share the work (default: clonewatch)")
    parser.add_argument("--partitions", type=int, help="partitions of topics created when missing (default: 4)")
    parser.add_argument("--replication-factor", type=int, help="replication of topics created when missing (default: 1)")
    parser.add_argument("--data-dir", type=Path, help="the worker's local data directory (default: ./clonewatch-worker)")
    parser.add_argument("--batch-size", type=int, help="events scored together; smaller batches lower the latency of decisions and the capacity (default: 256)")
    parser.add_argument("--batch-within", type=float, metavar="SECONDS", help="longest wait to fill a batch (default: 1.0)")
    parser.add_argument("--log-interval", type=float, metavar="SECONDS", help="seconds between progress lines (default: 5)")
    add_embedder_option(parser)
    parser.add_argument("--keep-prompts", action="store_true", default=None, help=f"store prompt text in ClickHouse's access_events, not only its hash and length (default: ${ENV_VARS['keep_prompts']} or off)")
    parser.add_argument(
        "--max-lag", type=float, metavar="SECONDS",
        help="behind the traffic by more than this, embed only the prompts the worker keeps up with, a fair share per "
        "client. Off by default, and costly: with a tenth of prompts embedded, 5 of 288 benign clients were acted on "
        f"with a 100-client baseline and 36 of 288 with 300 (README, \"Overload\") (default: ${ENV_VARS['max_lag']} or off)",
    )  # fmt: skip
    parser.add_argument(
        "--client-ttl", type=float, metavar="SECONDS",
        help=f"a client quiet for this long (in event time) leaves the worker's table and starts afresh if it comes back; "
        f"its decisions stay on the decisions topic and in the store (default: ${ENV_VARS['client_ttl']} or 7 days)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-address", metavar="[HOST:]PORT",
        help=f"serve Prometheus metrics on http://HOST:PORT/metrics (events, dead letters, decisions, consumer lag, time spent "
        f"embedding and detecting); HOST defaults to 127.0.0.1 (default: ${ENV_VARS['metrics_address']} or off)",
    )  # fmt: skip
    parser.add_argument("--status-file", type=Path, help="rewrite this JSON file with the progress counters at every progress line (for health checks)")
    parser.add_argument(
        "--stop-timeout", type=float, default=STOP_TIMEOUT_S, metavar="SECONDS",
        help="after SIGTERM/SIGINT, the longest graceful stop (finish the batch in hand, commit, leave the group); past it "
        "the worker logs the stack of every thread and task and exits with code 3. Nothing accepted is lost either way: "
        "uncommitted events are scored again by whoever next holds their partition (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="(default: %(default)s)")
    add_policy_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    fit_threads_to_cpus()  # before torch starts its pool
    config = StreamingConfig.from_args(args, store_dsn=args.store, policy=policy_from_args(args))
    if args.stop_timeout <= 0:
        raise ValueError(f"--stop-timeout must be positive, not {args.stop_timeout:g}")
    if config.model_path is None:
        raise ValueError(f"the worker needs a model: give --model PATH or set ${ENV_VARS['model_path']} (create one with `clonewatch train`)")
    # Heavy imports after argument checks, so `--help` and usage errors stay fast.
    from clonewatch.streaming.app import Blocking, create_app
    from clonewatch.streaming.bounded_stop import BoundedStopWorker
    from clonewatch.model_watch import ModelWatcher
    from clonewatch.streaming.processing import BatchProcessor
    from detectors import CloneDetector, CloneModel
    from detectors.embedding import embedder_for
    from detectors.vectorize import Vectorizer

    model = CloneModel.load(config.model_path)
    blocking = Blocking(config.store_dsn)
    blocking.open_store()
    try:
        partitions = ensure_topics(config, worker_topics=True)
    except TopicError as exc:
        print(f"clonewatch worker: error: {exc}", file=sys.stderr)
        return 1
    access_partitions = partitions[config.access_topic]
    vectorizer = Vectorizer(embedder_for(model.metadata, args.embedder, disk_cache=args.embedding_cache))
    if "text" in model.references:
        vectorizer.embedder.embed(["warm-up"])  # load the embedding model now, not on the first batch
    watcher = ModelWatcher(config.model_path, current_version=model.version, embedder=vectorizer.embedder.backend)
    detector = CloneDetector.from_model(model, config.policy, campaigns="elsewhere")  # the stage is an agent of the app
    processor = BatchProcessor(detector, vectorizer, config.recent_ids, watcher=watcher, max_lag_s=config.max_lag)
    app = create_app(config, processor, blocking, access_partitions)
    worker = BoundedStopWorker(app, stop_timeout=args.stop_timeout, loglevel=args.log_level, quiet=True, redirect_stdouts=False)
    if args.log_level != "debug":
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        noise = HealthyStartNoise()
        for name in ("aiokafka.consumer.group_coordinator", "kafka.coordinator.consumer"):
            logging.getLogger(name).addFilter(noise)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits the process
    return 0
