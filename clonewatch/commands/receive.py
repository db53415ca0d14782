"""``clonewatch receive``: take the logs gateways push over HTTP (Kong http-log, Vector, Fluent Bit, OpenTelemetry)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from clonewatch.commands.options import add_format_options, add_tls_options, log_format, tls_files
from clonewatch.commands.serving import log_to_stderr, required_token, stop_on_sigterm
from clonewatch.streaming.config import StreamingConfig, add_kafka_options
from ingest.receiver import DEFAULT_MAX_BODY

TOKEN_ENV = "CLONEWATCH_RECEIVE_TOKEN"
log = logging.getLogger("clonewatch.receive")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "receive",
        help="serve POST /v1/logs for gateways that push their logs (Kong http-log, Vector, Fluent Bit, OpenTelemetry logs)",
        description=(
            "An HTTP endpoint for gateways that push their access logs instead of writing a file. "
            "POST /v1/logs takes JSON lines, one JSON object or an array of them (gzip too), in any "
            "format `ship` reads, or OpenTelemetry logs (OTLP/HTTP, protobuf or JSON: Traefik's accessLog.otlp, "
            "Envoy's OpenTelemetry logger, a Collector), with 'Authorization: Bearer TOKEN' (the token in "
            f"${TOKEN_ENV}). Records go to the Kafka access topic, as `ship` sends them, or with "
            "--spool to a JSON-lines file that `clonewatch run --input FILE` scores. A batch is "
            "answered 200 only once it is durable; 429 (Retry-After) while busy, 413 past --max-body, "
            "503 when the sink fails, so a gateway's retries lose nothing. GET /healthz needs no token; GET /metrics (Prometheus: batches, lines, records, dead letters, refusals by status) needs it."
        ),
        epilog=(
            f"example: {TOKEN_ENV}=s3cret clonewatch receive --port 8080 --spool received/events.jsonl; "
            "Kong: config.http_endpoint=http://HOST:8080/v1/logs, config.headers.Authorization='Bearer s3cret'"
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    add_format_options(parser, per="the first lines from each gateway address", strict=False)
    parser.add_argument("--spool", type=Path, metavar="FILE", help="append canonical records to FILE (dead letters beside it) instead of Kafka")
    add_kafka_options(parser, topics=("access", "dead_letter"))
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES", help="largest body accepted, also once decompressed (default: %(default)s)")
    parser.add_argument("--max-inflight", type=int, default=4, metavar="N", help="batches being made durable at once before 429 (default: %(default)s)")
    parser.add_argument(
        "--otlp-grpc-port", type=int, metavar="PORT",
        help="also take OpenTelemetry logs over gRPC on this port (4317 by convention; Istio's envoyOtelAls, Envoy's "
        "OpenTelemetry logger with a grpc_service), the same token in the 'authorization' metadata (default: off)",
    )  # fmt: skip
    add_tls_options(parser, "HTTP and gRPC")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ingest.receiver import PushReceiver, SpoolWriter
    from ingest.shipper import Shipper, make_producer

    token = required_token(TOKEN_ENV, "gateways")
    if args.max_body < 1 or args.max_inflight < 1:
        raise ValueError("--max-body and --max-inflight must be at least 1")
    log_to_stderr()
    logging.getLogger("kafka").setLevel(logging.WARNING)
    fmt = log_format(args)
    lock = threading.Lock()  # one batch converted and made durable at a time: counts and parser state stay exact
    producer = None
    if args.spool is not None:
        shipper = Shipper(None, fmt, "access", "dead_letter")
        spool = SpoolWriter(args.spool, args.spool.with_name(args.spool.stem + ".dead-letters.jsonl"))
        target = f"spool file {args.spool} (score it with: clonewatch run --input {args.spool})"

        def deliver(source, lines):
            with lock:
                messages = [m for line in lines for m in shipper.messages(source, line)]
                messages += shipper.end(source, lines[-1].number if lines else 0)
                spool.write([(topic == "access", value) for topic, _, value in messages])
            records = sum(topic == "access" for topic, _, _ in messages)
            return records, len(messages) - records
    else:
        from clonewatch.streaming.topics import TopicError, ensure_topics

        config = StreamingConfig.from_args(args)
        try:
            ensure_topics(config, only=(config.access_topic, config.dead_letter_topic))
        except TopicError as exc:
            print(f"clonewatch receive: error: {exc}", file=sys.stderr)
            return 1
        producer = make_producer(config.bootstrap, **config.kafka_auth.client_kwargs())
        shipper = Shipper(producer, fmt, config.access_topic, config.dead_letter_topic)
        target = f"Kafka topic {config.access_topic} at {config.bootstrap}"

        def deliver(source, lines):
            with lock:
                before = (shipper.stats.records, shipper.stats.dead_letters)
                shipper.ship_batch(source, lines, end_after=lines[-1].number if lines else 0)
                return shipper.stats.records - before[0], shipper.stats.dead_letters - before[1]

    tls = tls_files(args)
    receiver = PushReceiver(deliver, token, args.host, args.port, args.max_body, args.max_inflight, tls)
    grpc_receiver = None
    if args.otlp_grpc_port is not None:
        from ingest.otlp_grpc import OtlpGrpcReceiver

        grpc_receiver = OtlpGrpcReceiver(receiver, args.host, args.otlp_grpc_port, args.max_body, tls)
        grpc_receiver.start()
    host = receiver.address[0]
    stop_on_sigterm(receiver)
    if grpc_receiver is not None:
        over = " (TLS)" if tls is not None else ""
        print(f"clonewatch receive: OpenTelemetry logs over gRPC{over} on {host}:{grpc_receiver.port}", file=sys.stderr, flush=True)
    print(f"clonewatch receive: listening on {receiver.url}/v1/logs -> {target}", file=sys.stderr, flush=True)
    try:
        receiver.serve_forever()
    finally:
        if grpc_receiver is not None:
            grpc_receiver.stop()
        if producer is not None:
            producer.close()
        s = receiver.stats
        bounded = f" ({shipper.stats.bounded} with a prompt or feature row too long to keep whole, bounded)" if shipper.stats.bounded else ""
        print(f"received {s.requests} batches: {s.lines} lines, {s.records} records{bounded}, {s.dead_letters} dead letters; refused {s.refused or 'none'}", file=sys.stderr)
    return 0
