"""``clonewatch simulate``: write a labelled, simulated gateway access log."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections import Counter
from pathlib import Path

from clonewatch.lab.simulate import SCENARIOS, simulate, write


def _scenario_list() -> str:
    """One wrapped entry per scenario: its name and what it contains."""
    width = max(len(name) for name in SCENARIOS) + 4
    return "\n".join(
        textwrap.fill(spec.description, 88, initial_indent=f"  {name:<{width - 2}}",
                      subsequent_indent=" " * width)
        for name, spec in SCENARIOS.items()
    )


_DESCRIPTION = textwrap.fill(
    "Generate one day of simulated API-gateway traffic (benign customers and model-extraction"
    " attackers) as canonical access records. The output is deterministic for a given"
    " scenario, seed and scale. events.jsonl holds exactly what a gateway would log;"
    " labels.jsonl says, per client_id, whether it is benign or an attack, its persona or"
    " attack kind, and its campaign (shared by the keys of one multi-key campaign).", 88
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` command to the clonewatch CLI."""
    parser = subparsers.add_parser(
        "simulate",
        help="generate a labelled red-team traffic log (events.jsonl + labels.jsonl)",
        description=_DESCRIPTION,
        epilog=f"scenarios:\n{_scenario_list()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", default="demo", choices=list(SCENARIOS), metavar="NAME",
                        help="which scenario to generate (default: %(default)s; see below)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="directory to write events.jsonl and labels.jsonl into")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; same seed, same bytes (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply client counts and attack sizes (default: %(default)s)")
    parser.add_argument("--day", type=int, default=0,
                        help="another day of the same benign customers: same keys and habits, new "
                             "requests, this many days later (default: %(default)s, the first day); "
                             "train on day 0, score day 1 as a deployment would")
    parser.add_argument("--list", action="store_true",
                        help="list the scenarios and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the scenario, write it, and print a one-line summary."""
    if args.list:
        print(_scenario_list())
        return 0
    if args.out is None:
        print("clonewatch simulate: --out DIR is required (or use --list)", file=sys.stderr)
        return 2
    if args.scale <= 0:
        print("clonewatch simulate: --scale must be positive", file=sys.stderr)
        return 2
    if args.day < 0:
        print("clonewatch simulate: --day must not be negative", file=sys.stderr)
        return 2
    traffic = simulate(args.scenario, seed=args.seed, scale=args.scale, day=args.day)
    paths = write(traffic, args.out)
    attackers = Counter(entry["kind"] for entry in traffic.labels if entry["label"] == "attack")
    by_kind = ", ".join(f"{kind}={count}" for kind, count in sorted(attackers.items())) or "none"
    print(
        f"{args.scenario} (seed {args.seed}, scale {args.scale:g}{f', day {args.day}' if args.day else ''}): {len(traffic.events)} events,"
        f" {len(traffic.labels)} clients, attackers: {by_kind}; wrote {paths.events} and"
        f" {paths.labels}"
    )
    return 0
