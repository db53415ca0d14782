"""Ingest benchmark: lines per second through each parser and the decoder, on one core.

    python benchmarks/ingest.py              # 200k lines per format
    python benchmarks/ingest.py --lines 50000

Valid lines only (the goal: >= 100k lines/s on one core for the canonical decoder), built from
the repository's real nginx and Envoy samples and from generated canonical records, each
repeated with fresh timestamps and keys. Prints lines/s per format and the path it measures:
``EventReader`` (parser, then decoder) as ``clonewatch run`` and the worker use it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.reader import EventReader  # noqa: E402
from schemas import AccessEvent  # noqa: E402

DATA = ROOT / "tests" / "data"


def canonical_lines(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        out.append(json.dumps({
            "ts": 1795428000.0 + i * 0.01, "client_id": f"key_{i % 500:04d}", "ip": "203.0.113.7", "path": "/v1/chat/completions",
            "status": 200, "model": "m", "prompt": f"summarise the ticket number {i} about a failed login", "params": {"temperature": 0.2},
        }).encode())  # fmt: skip
    return out


def sample_lines(name: str, n: int) -> list[bytes]:
    """The real sample's lines, repeated until there are ``n``."""
    lines = [line for line in (DATA / name).read_bytes().splitlines() if line.strip()]
    return [lines[i % len(lines)] for i in range(n)]


def measure(fmt: str, lines: list[bytes]) -> tuple[float, int, int]:
    reader = EventReader("bench.log", fmt)
    started = time.perf_counter()
    events = rejected = 0
    for record in reader.read(lines):
        if isinstance(record, AccessEvent):
            events += 1
        else:
            rejected += 1
    return len(lines) / (time.perf_counter() - started), events, rejected


def otlp_requests(name: str, n: int, per_request: int = 100) -> list[bytes]:
    """The real sample's lines as the bodies of OTLP log records, ``per_request`` to a protobuf request."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    lines = sample_lines(name, n)
    requests = []
    for start in range(0, n, per_request):
        request = ExportLogsServiceRequest()
        records = request.resource_logs.add().scope_logs.add().log_records
        for i, line in enumerate(lines[start : start + per_request]):
            record = records.add()
            record.time_unix_nano = 1796416288_000000000 + (start + i) * 1_000_000
            record.body.string_value = line.decode()
        requests.append(request.SerializeToString())
    return requests


def measure_otlp(requests: list[bytes], lines: int) -> tuple[float, int, int]:
    """What ``receive`` does with OTLP bodies before they are made durable: decode, then read each record's line."""
    from ingest.otlp import otlp_lines

    reader = EventReader("bench-otlp", "auto")
    started = time.perf_counter()
    events = rejected = 0
    for body in requests:
        for record in reader.read(otlp_lines(body, "application/x-protobuf")):
            if isinstance(record, AccessEvent):
                events += 1
            else:
                rejected += 1
    return lines / (time.perf_counter() - started), events, rejected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    cases = [
        ("canonical", "canonical", canonical_lines(args.lines)),
        ("auto (canonical lines)", "auto", canonical_lines(args.lines)),
        ("nginx JSON (real sample)", "nginx", sample_lines("nginx-json.log", args.lines)),
        ("nginx JSON without escape=json (real)", "nginx", sample_lines("nginx-json-default-escape.log", args.lines)),
        ("nginx JSON, json_combined layout (real)", "nginx", sample_lines("nginx-json-combined.log", args.lines)),
        ("nginx combined text (real sample)", "nginx", sample_lines("nginx-combined.log", args.lines)),
        ("nginx upstream_time text (real)", "nginx", sample_lines("nginx-upstream-time.log", args.lines)),
        ("nginx text + key + body, \\xHH escapes (real)", "nginx", sample_lines("nginx-text-request-body.log", args.lines)),
        ("envoy JSON (real sample)", "envoy", sample_lines("envoy-json.log", args.lines)),
        ("envoy JSON, epoch time, header names (real)", "envoy", sample_lines("envoy-json-epoch.log", args.lines)),
        ("envoy default text + key (real)", "envoy", sample_lines("envoy-default-extended.log", args.lines)),
        ("envoy, Istio's default text (real)", "envoy", sample_lines("envoy-istio-default.log", args.lines)),
        ("envoy, Envoy Gateway's default JSON (real)", "envoy", sample_lines("envoy-gateway-default.log", args.lines)),
        ("caddy JSON, no body (real)", "caddy", sample_lines("caddy-json.log", args.lines)),
        ("haproxy httplog, captured key (real)", "haproxy", sample_lines("haproxy-httplog.log", args.lines)),
        ("traefik JSON, kept headers (real)", "traefik", sample_lines("traefik-json.log", args.lines)),
        ("AWS ALB entries (from its documentation)", "alb", sample_lines("aws-alb.log", args.lines)),
        ("Knative queue-proxy, CRI-wrapped (its template)", "auto", sample_lines("knative-queue-proxy.log", args.lines)),
    ]
    print(f"{'input':<46} {'lines/s':>10}  events  dead letters")
    for name, fmt, lines in cases:
        rate, events, rejected = measure(fmt, lines)
        print(f"{name:<46} {rate:>10,.0f}  {events:,}  {rejected:,}")
    rate, events, rejected = measure_otlp(otlp_requests("traefik-json.log", args.lines), args.lines)
    print(f"{'traefik JSON as OTLP records (protobuf, 100/req)':<46} {rate:>10,.0f}  {events:,}  {rejected:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
