"""``clonewatch decisions``: read the decisions topic, the channel that pushes actions to gateways."""

from __future__ import annotations

import argparse
import sys

import msgspec
from kafka.errors import KafkaError

from clonewatch.streaming.config import StreamingConfig, add_kafka_options
from clonewatch.streaming.decision_feed import read_decisions
from clonewatch.streaming.listener import ListenerMismatch
from schemas import Decision

_decoder = msgspec.json.Decoder(Decision)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "decisions",
        help="print the decisions pushed to gateways (from the Kafka decisions topic)",
        description=(
            "Print the decisions topic: one line per change of a client's action. Without "
            "--follow, print what the topic holds and exit; with --follow, print new decisions "
            "as they arrive (add --from-beginning to print the held ones first). The topic is "
            "compacted, so old decisions of a client may be gone, never its latest."
        ),
        epilog="example: clonewatch decisions --follow --bootstrap 127.0.0.1:9092",
    )
    add_kafka_options(parser, topics=("decisions",))
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new decisions until interrupted")
    parser.add_argument("--from-beginning", action="store_true", help="with --follow, start with the decisions the topic holds")
    parser.add_argument("--json", action="store_true", help="print the raw JSON records, one per line")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="give up connecting after this long (default: %(default)s)")
    parser.set_defaults(func=main)


def describe(decision: Decision) -> str:
    """One readable line: time, action, client, risk, evidence, first reason.

    >>> from schemas import Action
    >>> describe(Decision("key_1", "2026-11-23T10:00:00.000Z", 0.99995, Action.DENY, 40, ["logprobs share 1, higher than 99% of baseline clients"]))
    '2026-11-23T10:00:00.000Z  DENY       key_1  risk 0.99995 after 40 events: logprobs share 1, higher than 99% of baseline clients'
    """
    reasons = "; ".join(decision.reasons[:2])
    return f"{decision.ts}  {decision.action.value.upper():<9}  {decision.client_id}  risk {decision.risk:.5f} after {decision.events_seen} events: {reasons}"


def main(args: argparse.Namespace) -> int:
    config = StreamingConfig.from_args(args)
    try:
        for raw in read_decisions(config, args.follow, args.from_beginning, args.timeout):
            if args.json:
                print(raw.decode(), flush=True)
                continue
            try:
                print(describe(_decoder.decode(raw)), flush=True)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                print(f"(unreadable decision: {exc}: {raw[:200]!r})", file=sys.stderr)
    except KafkaError as exc:
        hint = "" if isinstance(exc, ListenerMismatch) else config.kafka_auth.hint()
        print(f"clonewatch decisions: error: cannot read {config.decisions_topic} at {config.bootstrap}: {exc}{hint}", file=sys.stderr)
        return 1
    return 0
