"""``clonewatch run``: score a log end to end on the embedded pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clonewatch import DEFAULT_OUT_DIR, DEFAULT_WARMUP_EVENTS
from clonewatch.commands.options import add_embedder_option, add_format_options, add_policy_options, add_store_option, log_format, policy_from_args
from clonewatch.commands.ship import mostly_rejected_exit
from clonewatch.streaming.expiry import DEFAULT_CLIENT_TTL_S
from clonewatch.threads import fit_threads_to_cpus


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="score a JSON-lines access log end to end (embedded, no servers needed)",
        description=(
            "Read access events (canonical JSON lines, or nginx, Envoy, Caddy, HAProxy, Traefik, AWS ALB, Kong, LiteLLM, KServe or AWS API "
            "Gateway logs: --format), embed prompts, keep "
            "per-client state, score every client and decide allow/throttle/challenge/deny. "
            "Events (prompts as hashes unless --keep-prompts), risk scores, campaigns and decisions go to ClickHouse (embedded chdb by default), decisions also to a JSON-lines "
            "file, and unreadable lines to a dead-letter file and the store with the reason."
        ),
        epilog="example: clonewatch simulate --scenario demo --out demo && clonewatch run --input demo/events.jsonl",
    )
    parser.add_argument("--input", "-i", required=True, metavar="FILE|-", help="access log (canonical JSON lines or a gateway's log; gzip-compressed too), or - for standard input")
    add_format_options(parser)
    parser.add_argument("--model", type=Path, help="model file from `clonewatch train`; without it the model is fitted on the first --warmup events of the input")
    add_store_option(parser)
    parser.add_argument("--decisions", type=Path, default=DEFAULT_OUT_DIR / "decisions.jsonl", help="decisions JSON-lines file, appended to (default: %(default)s)")
    parser.add_argument("--dead-letters", type=Path, default=DEFAULT_OUT_DIR / "dead-letters.jsonl", help="rejected lines with reasons, appended to (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="events embedded and scored together (default: %(default)s)")
    parser.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP_EVENTS,
        help="events to fit on when no --model is given, about a day of a hundred customers; a shorter input is fitted on whole (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=5, help="riskiest clients to show in the summary (default: %(default)s)")
    add_embedder_option(parser)
    parser.add_argument("--keep-prompts", action="store_true", help="store prompt text in ClickHouse's access_events, not only its hash and length")
    parser.add_argument(
        "--client-ttl", type=float, default=DEFAULT_CLIENT_TTL_S, metavar="SECONDS",
        help="a client quiet for this long (in the log's time) leaves memory and starts afresh if it comes back; its "
        "scores and decisions stay in the store (default: %(default).0f, 7 days)",
    )  # fmt: skip
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_policy_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    fit_threads_to_cpus()  # before torch starts its pool
    from clonewatch.report import render_summary
    from clonewatch.runner import EmbeddedRunner, RunConfig

    config = RunConfig(
        input=args.input,
        format=log_format(args),
        model_path=args.model,
        store_dsn=args.store,
        decisions_path=args.decisions,
        dead_letters_path=args.dead_letters,
        batch_size=args.batch_size,
        warmup_events=args.warmup,
        policy=policy_from_args(args),
        keep_prompts=args.keep_prompts,
        embedder=args.embedder,
        embedding_cache=args.embedding_cache,
        progress=not args.quiet,
        client_ttl=args.client_ttl,
    )
    summary = EmbeddedRunner(config).run()
    print(render_summary(summary, config, top=args.top))
    if not summary.accepted + summary.rejected:
        print(f"clonewatch run: warning: {'standard input' if str(args.input) == '-' else args.input} held no lines to read", file=sys.stderr)
    return mostly_rejected_exit(summary.accepted + summary.rejected, summary.rejected, str(summary.format or config.format), args.strict, "run")
