"""``clonewatch sql``: run a query against the store and print the result as a table."""

from __future__ import annotations

import argparse

from clonewatch.commands.options import add_store_option
from sinks.clickhouse import EXAMPLE_QUERY, ClickHouseStore, redact

_MAX_CELL = 60


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="run a ClickHouse SQL query against the store",
        description="Run any ClickHouse SQL against the store (tables: clonewatch.risk_scores, clonewatch.decisions, clonewatch.dead_letters).",
        epilog=f'example: clonewatch sql "{EXAMPLE_QUERY}"',
    )
    parser.add_argument("query", help="the SQL to run")
    add_store_option(parser)
    parser.set_defaults(func=main)


def format_table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    out = [line(columns), line(["─" * w for w in widths])] + [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _cell(value) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def main(args: argparse.Namespace) -> int:
    store = ClickHouseStore(args.store)
    try:
        columns, rows = store.query(args.query)
    except Exception as exc:  # the engine's own message is the useful part
        print(redact(f"clonewatch sql: query failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"))
        return 1
    print(format_table(columns, rows))
    return 0
