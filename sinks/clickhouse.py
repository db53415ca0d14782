"""Risk scores, decisions and dead letters in ClickHouse, through clickhouse-connect.

The tables are ReplacingMergeTrees keyed by what makes a row the same row (a client's
score after its n-th event under one model; a decision; a dead letter's source, line and
bytes): a rerun of ``run`` after a crash, or a worker replaying from its last commit, writes
rows that merge into the first ones. Until a merge, ``SELECT ... FINAL`` reads them once.

``chdb://PATH`` runs the real ClickHouse engine in this process, on disk at PATH (the
embedded default); ``http(s)://user:pass@host:port`` reaches a ClickHouse server. The
SQL and the client code are the same for both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect

from schemas import DeadLetter, Decision, RiskScore, to_epoch

DEFAULT_DSN = "chdb://./clonewatch-data"
DEFAULT_DATABASE = "clonewatch"

TABLES = {
    "risk_scores": """
        CREATE TABLE IF NOT EXISTS {db}.risk_scores (
            ts DateTime64(3, 'UTC'),
            client_id String,
            events_seen UInt64,
            window_events UInt32,
            risk Float64,
            action LowCardinality(String),
            reasons Array(String),
            features Map(String, Float64),
            model_version LowCardinality(String),
            campaign_id Nullable(String)
        ) ENGINE = ReplacingMergeTree ORDER BY (client_id, ts, events_seen, model_version)""",
    "decisions": """
        CREATE TABLE IF NOT EXISTS {db}.decisions (
            ts DateTime64(3, 'UTC'),
            client_id String,
            risk Float64,
            action LowCardinality(String),
            events_seen UInt64,
            reasons Array(String)
        ) ENGINE = ReplacingMergeTree ORDER BY (client_id, ts, events_seen, action)""",
    "dead_letters": """
        CREATE TABLE IF NOT EXISTS {db}.dead_letters (
            received_at DateTime64(3, 'UTC'),
            source String,
            line UInt64,
            reason String,
            raw String
        ) ENGINE = ReplacingMergeTree ORDER BY (source, line, reason, cityHash64(raw))""",
}

EXAMPLE_QUERY = (
    "SELECT client_id, max(risk) AS risk, argMax(action, ts) AS action, max(events_seen) AS events "
    "FROM clonewatch.risk_scores GROUP BY client_id ORDER BY risk DESC LIMIT 10"
)


_CREDENTIALS = re.compile(r"(\w+://[^/\s:@]*:)[^@\s]*@")


class StoreError(RuntimeError):
    """The store could not be reached or used; the message says why."""


def normalize_dsn(dsn: str) -> str:
    """Make a ``chdb://`` path absolute (``chdb://./data`` means ./data, not /data); reject
    what is malformed, with a message that names no password.

    >>> normalize_dsn("chdb:/demo-data/store")
    Traceback (most recent call last):
    ...
    sinks.clickhouse.StoreError: malformed store DSN 'chdb:/demo-data/store': write chdb://PATH (two slashes), e.g. chdb://./demo-data/store
    """
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        if not dsn.startswith("chdb://"):
            raise StoreError(f"malformed store DSN {redact(dsn)!r}: write chdb://PATH (two slashes), e.g. chdb://./{dsn.split(':', 1)[1].lstrip('/')}")
        raw = dsn[len("chdb://") :]
        if not raw:
            raise StoreError("a chdb DSN needs a path, e.g. chdb://./clonewatch-data")
        return "chdb://" + str(Path(raw).expanduser().resolve())
    if parts.scheme in ("http", "https"):
        if not dsn.startswith(f"{parts.scheme}://") or not parts.hostname:
            raise StoreError(f"malformed store DSN {redact(dsn)!r}: write {parts.scheme}://user:password@host:port")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise StoreError(f"malformed store DSN {redact(dsn)!r}: the port is not a number") from None
        return dsn
    raise StoreError(f"unsupported store DSN {redact(dsn)!r}: use chdb://PATH or http(s)://host:port")


def redact(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@`` in it replaced by ***.

    >>> redact("cannot reach http://cw:s3cret@ch:8123: timed out")
    'cannot reach http://cw:***@ch:8123: timed out'
    """
    return _CREDENTIALS.sub(r"\1***@", text)


def _engine_hint(exc: Exception) -> str:
    """The engine's message, with what to do when the embedded store is held by another process."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    if "lock" in message.lower() or "already" in message.lower():
        message += " (another process, a running worker or run, holds this embedded store: stop it, or use a ClickHouse server)"
    return message


def _utc(ts: str) -> datetime:
    return datetime.fromtimestamp(to_epoch(ts), tz=timezone.utc)


class ClickHouseStore:
    """Creates its tables on first use, idempotently, and writes records in batches."""

    def __init__(self, dsn: str = DEFAULT_DSN, database: str = DEFAULT_DATABASE) -> None:
        self.dsn = normalize_dsn(dsn)
        self.database = database
        try:
            self.client = clickhouse_connect.get_client(dsn=self.dsn)
        except Exception as exc:
            raise StoreError(redact(f"cannot open the store at {self.dsn}: {_engine_hint(exc)}")) from exc
        self.ensure_tables()

    @property
    def location(self) -> str:
        """The DSN, fit to print (no password)."""
        return redact(self.dsn)

    def ensure_tables(self) -> None:
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        for ddl in TABLES.values():
            self.client.command(ddl.format(db=self.database))

    def insert_risk_scores(self, scores: Sequence[RiskScore]) -> None:
        self._insert("risk_scores", [
            [_utc(s.ts), s.client_id, s.events_seen, s.window_events, s.risk, s.action, s.reasons, s.features,
             s.model_version, s.campaign_id]
            for s in scores
        ], ["ts", "client_id", "events_seen", "window_events", "risk", "action", "reasons", "features",
            "model_version", "campaign_id"])  # fmt: skip

    def insert_decisions(self, decisions: Sequence[Decision]) -> None:
        self._insert(
            "decisions",
            [[_utc(d.ts), d.client_id, d.risk, d.action.value, d.events_seen, d.reasons] for d in decisions],
            ["ts", "client_id", "risk", "action", "events_seen", "reasons"],
        )

    def insert_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        now = datetime.now(timezone.utc)
        self._insert(
            "dead_letters",
            [[now, d.source, d.line, d.reason, d.raw] for d in letters],
            ["received_at", "source", "line", "reason", "raw"],
        )

    def query(self, sql: str, parameters: dict | None = None) -> tuple[list[str], list[tuple]]:
        """Run any SQL, its ``{name:Type}`` placeholders bound by the engine; returns column names and rows."""
        result = self.client.query(sql, parameters=parameters or None)
        return list(result.column_names), list(result.result_rows)

    def close(self) -> None:
        self.client.close()

    def _insert(self, table: str, rows: list[list], columns: list[str]) -> None:
        if rows:
            self.client.insert(f"{self.database}.{table}", rows, column_names=columns)
