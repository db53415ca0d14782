"""The ``clonewatch`` command.

Command modules import their engines (scikit-learn, SciPy, torch) inside ``main``, so that
``--help``, the shipper, the receiver and ``sql`` start in well under a second and stay small.
"""

from __future__ import annotations

import argparse
import sys

from clonewatch import __version__
from clonewatch.commands import api, decisions, drift, kafka, receive, report, run, ship, simulate, sql, train, worker
from clonewatch.inputs import InputError
from sinks.clickhouse import StoreError

COMMANDS = (run, train, sql, report, drift, api, simulate, kafka, ship, receive, worker, decisions)
USER_ERRORS = (InputError, StoreError, ValueError, FileNotFoundError, PermissionError)  # a ModelFileError is a ValueError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clonewatch",
        description="Find model-extraction (cloning) campaigns in AI API gateway traffic.",
        epilog="Start with: clonewatch simulate --scenario demo --out demo && clonewatch run --input demo/events.jsonl",
    )
    parser.add_argument("--version", action="version", version=f"clonewatch {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"clonewatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clonewatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
