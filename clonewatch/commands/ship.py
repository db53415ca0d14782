"""``clonewatch ship``: send a gateway's access log to the access topic."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from clonewatch.streaming.config import StreamingConfig, add_kafka_options
from clonewatch.streaming.topics import TopicError, ensure_topics
from clonewatch.commands.options import add_format_options, log_format
from clonewatch.inputs import is_gzip

log = logging.getLogger("clonewatch.ship")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ship",
        help="tail a gateway access log (or read stdin) into the Kafka access topic",
        description=(
            "Convert each line of a gateway access log to a canonical access event and produce it "
            "to the access topic (acks=all, key = client id). A file is followed as it grows and "
            "across rotation; the offset is checkpointed only after Kafka acknowledged everything "
            "before it, so a restarted shipper resumes where it stopped and loses nothing. Lines "
            "that cannot be read go to the dead-letter topic with the reason."
        ),
        epilog=(
            "examples: clonewatch ship /var/log/nginx/clonewatch.log; "
            "zcat old.log.gz | clonewatch ship - --format envoy"
        ),
    )
    parser.add_argument("source", nargs="?", metavar="FILE|-", help="log file to follow (as --file), or - to read standard input until it ends")
    parser.add_argument("--file", type=Path, help="log file to follow")
    add_format_options(parser, per="the first lines of each source")
    add_kafka_options(parser, topics=("access", "dead_letter"))
    parser.add_argument("--checkpoint", type=Path, help="offset checkpoint file (default: FILE.clonewatch-offset next to the log)")
    parser.add_argument("--once", action="store_true", help="stop at the end of the file instead of following it")
    parser.add_argument("--batch-lines", type=int, default=2000, help="lines per acknowledged batch, the most in flight (default: %(default)s)")
    parser.add_argument("--partitions", type=int, help="partitions of topics created when missing (default: 4)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ingest.shipper import Shipper, make_producer, ship_file, ship_stream

    if args.source not in (None, "-") and args.file is None:
        args.source, args.file = None, Path(args.source)
    if (args.source is None) == (args.file is None):
        raise ValueError("give one log file (FILE or --file FILE) or - (standard input)")
    if args.batch_lines < 1:
        raise ValueError("--batch-lines must be at least 1")
    if args.file is not None and args.once and not args.file.is_file():
        raise FileNotFoundError(f"log file {args.file} does not exist")
    if args.file is not None and args.file.is_file() and is_gzip(args.file):
        raise ValueError(f"{args.file} is gzip-compressed: ship follows plain log files; for this one, zcat {args.file} | clonewatch ship -")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python logs every connection at INFO
    fmt = log_format(args)
    config = StreamingConfig.from_args(args)
    try:
        ensure_topics(config, only=(config.access_topic, config.dead_letter_topic))
    except TopicError as exc:
        print(f"clonewatch ship: error: {exc}", file=sys.stderr)
        return 1

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True  # finish the batch in flight, checkpoint, exit

    signal.signal(signal.SIGTERM, stop)
    producer = make_producer(config.bootstrap, **config.kafka_auth.client_kwargs())
    shipper = Shipper(producer, fmt, config.access_topic, config.dead_letter_topic)
    options = {"batch_lines": args.batch_lines, "should_stop": lambda: stopping}
    try:
        if args.file is not None:
            stats = ship_file(shipper, args.file, args.checkpoint, once=args.once, **options)
        else:
            stats = ship_stream(shipper, sys.stdin.buffer, **options)
    finally:
        producer.close()
    bounded = f" ({stats.bounded} with a prompt or feature row too long to ship whole, shipped bounded)" if stats.bounded else ""
    print(f"shipped {stats.lines} lines: {stats.records} records{bounded}, {stats.dead_letters} dead letters", file=sys.stderr)
    return mostly_rejected_exit(stats.lines, stats.dead_letters, str(fmt), args.strict, "ship")


def mostly_rejected_exit(lines: int, rejected: int, fmt: str, strict: bool, command: str) -> int:
    """Warn on stderr when most lines were rejected (a wrong --format reads nothing); 3 with --strict."""
    if lines and rejected > lines / 2:
        print(
            f"clonewatch {command}: warning: {rejected:,} of {lines:,} lines were rejected (--format {fmt}); "
            "see the dead letters for the reasons, and check --format (or --mapping)",
            file=sys.stderr,
        )
        return 3 if strict else 0
    return 0
