"""``clonewatch report``: one self-contained HTML file with charts of a client, a campaign or the riskiest clients."""

from __future__ import annotations

import argparse
from pathlib import Path

from clonewatch.commands.options import add_policy_options, add_store_option, policy_from_args
from clonewatch.commands.sql import existing_store
from clonewatch.pictures import campaign_section, client_section, render, top_section
from sinks.clickhouse import ClickHouseStore


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report with charts: a client, a campaign or the riskiest clients",
        description=(
            "Read the store and write one self-contained HTML file (charts embedded, opens offline): "
            "a client's risk over its events against the thresholds, its coverage against benign clients "
            "of the same age, its request volume and decisions; a campaign's risk and its keys on one "
            "timeline; the riskiest clients now. Give any mix of --client, --campaign and --top."
        ),
        epilog="example: clonewatch report --top 20 --store chdb://./demo-data/store --out report.html",
    )
    parser.add_argument("--client", action="append", default=[], metavar="ID", help="a client to draw (repeatable)")
    parser.add_argument("--campaign", action="append", default=[], metavar="ID", help="a campaign to draw (repeatable; ids are in clonewatch.campaigns)")
    parser.add_argument("--top", type=int, metavar="N", help="the N riskiest clients now")
    parser.add_argument("--out", type=Path, default=Path("clonewatch-report.html"), help="the HTML file to write (default: %(default)s)")
    add_store_option(parser)
    add_policy_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not (args.client or args.campaign or args.top):
        raise ValueError("say what to draw: --client ID, --campaign ID or --top N")
    if args.top is not None and args.top < 1:
        raise ValueError("--top needs a positive number")
    policy = policy_from_args(args)
    existing_store(args.store)
    store = ClickHouseStore(args.store)
    sections = [top_section(store, args.top, policy)] if args.top else []
    sections += [campaign_section(store, campaign, policy) for campaign in args.campaign]
    sections += [client_section(store, client, policy) for client in args.client]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(sections, store), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): " + ", ".join(s.title for s in sections))
    return 0
