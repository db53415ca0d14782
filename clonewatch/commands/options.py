"""Command-line options shared by several commands."""

from __future__ import annotations

import argparse
import os

from pathlib import Path

from detectors.embedding import BACKENDS, EMBEDDING_CACHE_ENV
from detectors.policy import DEFAULT_TARGET_FPR, PolicyConfig, thresholds_for
from ingest.formats import FORMATS, CustomFormat
from ingest.http_server import TlsFiles
from ingest.mapping import FieldMapping
from sinks.clickhouse import DEFAULT_DSN

_DEFAULTS = PolicyConfig()


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get("CLONEWATCH_STORE", DEFAULT_DSN),
        metavar="DSN",
        help="ClickHouse: chdb://PATH (embedded engine, on disk) or http(s)://user:pass@host:8123 "
        "(default: $CLONEWATCH_STORE or %(default)s)",
    )


def add_embedder_option(parser: argparse.ArgumentParser, scoring: bool = True) -> None:
    source = "$CLONEWATCH_EMBEDDER, else the one the model was trained with, else torch" if scoring else "$CLONEWATCH_EMBEDDER or torch"
    parser.add_argument(
        "--embedder", choices=BACKENDS, default=None,
        help=f"prompt embedder: torch (fp32; a GPU when there is one), onnx-int8 (an int8 ONNX export made locally "
        f"from the same weights, about 1.8x faster on CPU) or static (a static embedding distilled locally from the "
        f"same weights, a table lookup per token: many times faster, a different space) (default: {source})",
    )  # fmt: skip
    parser.add_argument(
        "--embedding-cache", type=Path, metavar="FILE", default=os.environ.get(EMBEDDING_CACHE_ENV) or None,
        help="an SQLite file that keeps each prompt's vector (keyed by a hash of the prompt and the embedder), so that "
        "training, scoring or replaying logs that share prompts embeds each prompt once; the vectors say much of "
        f"what the prompts said: keep the file where the logs are kept (default: ${EMBEDDING_CACHE_ENV}, else none)",
    )  # fmt: skip


def add_format_options(parser: argparse.ArgumentParser, per: str = "the first lines", strict: bool = True) -> None:
    parser.add_argument("--format", default="auto", choices=FORMATS, help=f"log line format; auto guesses it from {per} (default: %(default)s)")
    parser.add_argument(
        "--mapping", type=Path, metavar="FILE",
        help="for JSON logs of any other layout: a TOML or JSON file naming the path of each field "
        "(ts, api_key or client_id, ip, body, ...; see docs/gateways.md)",
    )  # fmt: skip
    if strict:
        parser.add_argument("--strict", action="store_true", help="exit 3 when more than half of the lines were rejected")


def log_format(args: argparse.Namespace) -> str | CustomFormat:
    """--format's name, or the --mapping file's format."""
    if args.mapping is None:
        return args.format
    if args.format != "auto":
        raise ValueError("give --format or --mapping, not both")
    return FieldMapping.load(args.mapping)


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("policy", "when a client is throttled, challenged or denied")
    group.add_argument(
        "--target-fpr", type=float, metavar="SHARE",
        help="share of benign clients that may ever be throttled over their life; sets the three "
        f"thresholds below (default: {DEFAULT_TARGET_FPR}, i.e. 0.1%%; challenge 10x and deny 100x rarer)",
    )
    group.add_argument("--throttle-at", type=float, default=_DEFAULTS.throttle, metavar="RISK", help="risk that starts throttling (default: %(default)s; overrides --target-fpr)")
    group.add_argument("--challenge-at", type=float, default=_DEFAULTS.challenge, metavar="RISK", help="risk that starts challenges (default: %(default)s)")
    group.add_argument("--deny-at", type=float, default=_DEFAULTS.deny, metavar="RISK", help="risk that denies (default: %(default)s)")
    group.add_argument("--min-events", type=int, default=_DEFAULTS.min_events, help="events before any action but allow (default: %(default)s)")
    group.add_argument("--min-events-deny", type=int, default=_DEFAULTS.min_events_deny, help="events before deny (default: %(default)s)")
    group.add_argument(
        "--confirm-jitter", type=int, default=_DEFAULTS.confirm_jitter, metavar="N",
        help="up to N more confirming events before an action, drawn per client with a hash keyed by "
        "$CLONEWATCH_KEY_SECRET, so a client cannot learn which query tripped it (default: %(default)s)",
    )  # fmt: skip
    group.add_argument("--allow", action="append", default=[], metavar="CLIENT_ID", help="always allow this client (repeatable)")


def policy_from_args(args: argparse.Namespace) -> PolicyConfig:
    """The policy the options ask for; explicit thresholds win over --target-fpr's."""
    throttle, challenge, deny = args.throttle_at, args.challenge_at, args.deny_at
    if args.target_fpr is not None:
        try:
            derived = thresholds_for(args.target_fpr)
        except ValueError as exc:
            raise SystemExit(f"clonewatch: error: --target-fpr: {exc}") from None
        defaults = (_DEFAULTS.throttle, _DEFAULTS.challenge, _DEFAULTS.deny)
        throttle, challenge, deny = (d if given == default else given for given, default, d in zip((throttle, challenge, deny), defaults, derived))
    return PolicyConfig(
        throttle=throttle,
        challenge=challenge,
        deny=deny,
        min_events=args.min_events,
        min_events_deny=args.min_events_deny,
        confirm_jitter=args.confirm_jitter,
        jitter_key=os.environ.get("CLONEWATCH_KEY_SECRET", ""),
        allowlist=frozenset(args.allow),
    )


def add_tls_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--tls-cert", type=Path, metavar="FILE", default=os.environ.get("CLONEWATCH_TLS_CERT") or None,
        help=f"serve {what} over TLS with this PEM certificate chain (default: $CLONEWATCH_TLS_CERT, else plain HTTP: "
        "only behind a proxy that terminates TLS, or on a trusted network, since the token travels with every request)",
    )  # fmt: skip
    parser.add_argument(
        "--tls-key", type=Path, metavar="FILE", default=os.environ.get("CLONEWATCH_TLS_KEY") or None,
        help="the certificate's PEM private key (default: $CLONEWATCH_TLS_KEY, else the key in --tls-cert's file)",
    )


def tls_files(args: argparse.Namespace) -> TlsFiles | None:
    if args.tls_cert is None:
        if args.tls_key is not None:
            raise ValueError("--tls-key needs --tls-cert (the certificate the key belongs to)")
        return None
    return TlsFiles(args.tls_cert, args.tls_key)
