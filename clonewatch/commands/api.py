"""``clonewatch api``: the risk lookup API that gateways and analysts call."""

from __future__ import annotations

import argparse
import sys
import threading

from clonewatch.commands.options import add_store_option, add_tls_options, tls_files
from clonewatch.streaming.config import add_kafka_options
from clonewatch.commands.serving import log_to_stderr, required_token, stop_on_sigterm

TOKEN_ENV = "CLONEWATCH_API_TOKEN"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "api",
        help="serve each client's current risk and action over HTTP (lookups, nginx auth_request, Envoy ext_authz)",
        description=(
            "Serve the store's current state of every client from memory, refreshed in the background: "
            "GET /v1/clients/{id}, GET /v1/clients?action=...&limit=..., GET /v1/decide (for nginx "
            "auth_request and Envoy ext_authz: 200 allow, 429 throttle with Retry-After or 200 with "
            "degrade headers, the --challenge-status, 403 deny), GET /healthz, GET /metrics. Every path "
            f"but /healthz needs 'Authorization: Bearer TOKEN' (the token in ${TOKEN_ENV})."
        ),
        epilog=f"example: {TOKEN_ENV}=s3cret clonewatch api --store chdb://./demo-data/store --port 8090",
    )
    add_store_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port (default: %(default)s)")
    parser.add_argument("--refresh", type=float, default=2.0, metavar="SECONDS", help="how often the state is refreshed from the store (default: %(default)s)")
    parser.add_argument("--key-header", default="x-api-key", help="header with the API key for /v1/decide, hashed as ingest hashes keys (default: %(default)s)")
    parser.add_argument("--client-header", help="header with a client id used as given (checked before --key-header)")
    parser.add_argument("--throttle-mode", choices=("429", "degrade"), default="429", help="answer to a throttled client: 429, or 200 with headers telling the gateway to serve less (default: %(default)s)")
    parser.add_argument("--degrade-max-tokens", type=int, default=256, metavar="N", help="with --throttle-mode degrade: the most tokens a throttled client's answer may have (default: %(default)s)")
    parser.add_argument("--degrade-delay-ms", type=int, default=500, metavar="MS", help="with --throttle-mode degrade: the delay the gateway adds before a throttled client's answer (default: %(default)s)")
    parser.add_argument("--challenge-status", type=int, default=401, help="status for a challenged client (default: %(default)s)")
    parser.add_argument("--retry-after", type=int, default=30, metavar="SECONDS", help="Retry-After of a 429 (default: %(default)s)")
    parser.add_argument(
        "--follow-decisions", action="store_true",
        help="also follow the workers' decisions topic (at --bootstrap): an action reaches lookups as soon as it is "
        "published, without waiting for the store; on start the compacted topic replays every client's latest decision",
    )  # fmt: skip
    add_kafka_options(parser, topics=("decisions",))
    add_tls_options(parser, "the API")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from clonewatch.api.server import DecideConfig, RiskApi
    from clonewatch.api.state import ClientTable
    from clonewatch.commands.sql import existing_store
    from sinks.clickhouse import ClickHouseStore

    token = required_token(TOKEN_ENV, "callers")
    if args.refresh <= 0:
        raise ValueError("--refresh must be positive")
    log_to_stderr()
    existing_store(args.store)
    store = ClickHouseStore(args.store)
    table = ClientTable(store)
    table.refresh()
    decide = DecideConfig(
        key_header=args.key_header, client_header=args.client_header, throttle_mode=args.throttle_mode,
        retry_after_s=args.retry_after, challenge_status=args.challenge_status,
        degrade_max_tokens=args.degrade_max_tokens, degrade_delay_ms=args.degrade_delay_ms,
    )  # fmt: skip
    api = RiskApi(table, token, decide, args.host, args.port, tls_files(args))
    stop = threading.Event()
    threading.Thread(target=table.keep_current, args=(args.refresh, stop), daemon=True).start()
    if args.follow_decisions:
        from clonewatch.streaming.config import StreamingConfig

        config = StreamingConfig.from_args(args)
        threading.Thread(target=table.follow_decisions, args=(config, stop), daemon=True).start()
    stop_on_sigterm(api)
    print(f"clonewatch api: {len(table.clients)} clients from {store.location}; listening on {api.url}", file=sys.stderr, flush=True)
    try:
        api.serve_forever()
    finally:
        stop.set()
        table.close()
    return 0
