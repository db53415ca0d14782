"""``clonewatch sql``: run a query against the store and print the result as a table."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from clonewatch.commands.options import add_store_option
from sinks.clickhouse import EXAMPLE_QUERY, ClickHouseStore, StoreError, redact

# A trailing FORMAT clause (CSV, JSONEachRow, Pretty, ...): the engine's own output is printed as is.
_FORMAT = re.compile(r"\s+FORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$", re.IGNORECASE)

_MAX_CELL = 60


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="run a ClickHouse SQL query against the store",
        description=(
            "Run any ClickHouse SQL against the store (clonewatch.access_events, risk_scores, decisions, "
            "campaigns, dead_letters and the view client_risk_latest; tested queries in docs/queries/) "
            "and print the rows as a table, or, with a FORMAT clause (CSV, "
            "JSONEachRow, Pretty, ...), exactly as ClickHouse writes them. Values are bound by the engine, "
            "never pasted into the SQL: write {name:Type} in the query and give --param name=value."
        ),
        epilog=(
            f'examples: clonewatch sql "{EXAMPLE_QUERY}"; '
            "clonewatch sql \"SELECT * FROM clonewatch.decisions WHERE client_id = {c:String} FORMAT JSONEachRow\" --param c=key_1; "
            "clonewatch sql -f docs/queries/coverage_growth.sql --param client=key_1"
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("query", nargs="?", help="the SQL to run")
    source.add_argument("--file", "-f", type=Path, metavar="FILE.sql", help="run the query in this file instead (e.g. one of docs/queries/)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a query parameter, for {NAME:Type} in the query (repeatable)")
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


def _parameters(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"--param takes NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def existing_store(dsn: str) -> None:
    """An embedded store must exist already: a mistyped path would otherwise be a new, empty store."""
    if not dsn.startswith("chdb://"):
        return
    path = Path(dsn[len("chdb://") :] or ".")
    if path.exists():
        return
    nearby = sorted(str(p.parent) for pattern in ("*/metadata", "*/*/metadata") for p in Path().glob(pattern) if p.is_dir())[:8]
    hint = f"; stores found here: {', '.join(f'chdb://./{n}' for n in nearby)}" if nearby else " (run `clonewatch run` or `make demo` first)"
    raise StoreError(f"no store at {path}{hint}")


def read_query(path: Path) -> str:
    """A query file's SQL, without the trailing semicolon the engine's client would refuse."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    return text.strip().rstrip(";").strip()


def main(args: argparse.Namespace) -> int:
    parameters = _parameters(args.param)
    query = read_query(args.file) if args.file is not None else args.query
    existing_store(args.store)
    store = ClickHouseStore(args.store)
    wanted = _FORMAT.search(query)
    try:
        if wanted:
            output = store.client.raw_query(query[: wanted.start()], parameters=parameters or None, fmt=wanted.group(1))
        else:
            columns, rows = store.query(query, parameters)
    except Exception as exc:  # the engine's own message is the useful part
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        print(redact(f"clonewatch sql: query failed: {message}"), file=sys.stderr)
        return 1
    if wanted:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
    else:
        print(format_table(columns, rows))
    return 0
