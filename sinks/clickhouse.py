"""Events, risk scores, decisions, campaigns and dead letters in ClickHouse, through clickhouse-connect.

The schema is a list of numbered migrations (``schemas/clickhouse/NNN_name.sql``), applied
in order by every process that opens a store and recorded in ``schema_migrations``. The
tables are ReplacingMergeTrees keyed by what makes a row the same row (a client's
score after its n-th event under one model; a decision; a dead letter's source, line and
bytes): a rerun of ``run`` after a crash, or a worker replaying from its last commit, writes
rows that merge into the first ones. Until a merge, ``SELECT ... FINAL`` reads them once.

``chdb://PATH`` runs the real ClickHouse engine in this process, on disk at PATH (the
embedded default); ``http(s)://user:pass@host:port`` reaches a ClickHouse server. The
SQL and the client code are the same for both.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect

import schemas

from schemas import AccessEvent, CampaignScore, DeadLetter, Decision, Params, RiskScore, to_epoch

DEFAULT_DSN = "chdb://./clonewatch-data"
DEFAULT_DATABASE = "clonewatch"

MIGRATIONS_DIR = Path(schemas.__file__).resolve().parent / "clickhouse"


def migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, list[str]]]:
    """The schema's versioned migrations, in order: (version, name, statements with ``{db}``).

    >>> [(version, name) for version, name, _ in migrations()][:2]
    [(1, 'scores_decisions_dead_letters'), (2, 'access_events')]
    """
    found = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        statements = [part.strip() for part in text.split(";") if part.strip()]
        version, name = path.stem.split("_", 1)
        found.append((int(version), name, statements))
    return found


EXAMPLE_QUERY = (
    "SELECT client_id, max(risk) AS risk, argMax(action, ts) AS action, max(events_seen) AS events "
    "FROM clonewatch.risk_scores GROUP BY client_id ORDER BY risk DESC LIMIT 10"
)


ACCESS_EVENT_COLUMNS = [
    "ts", "client_id", "request_id", "ip", "user_agent", "path", "model", "status", "latency_ms", "tokens_in",
    "tokens_out", "prompt_hash", "prompt_chars", "features_count", "temperature", "max_tokens", "logprobs", "n", "prompt",
    "features", "turns", "logit_bias",
]  # fmt: skip

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


def _engine_hint(exc: Exception, dsn: str | None = None) -> str:
    """The engine's message, with what to do when the embedded store is held by another process."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    holder = holding_process(dsn) if dsn else None
    if holder is not None:
        return (
            f"process {holder} holds this embedded store (a running `clonewatch run`, worker or api: one process at a time "
            "opens an embedded store): stop it, or share the data through a ClickHouse server (docker-compose.yml)"
        )
    if "lock" in message.lower() or "already" in message.lower():
        message += " (another process, a running worker or run, holds this embedded store: stop it, or use a ClickHouse server)"
    return message


def holding_process(dsn: str) -> int | None:
    """The live process other than this one that has the embedded store at a ``chdb://`` DSN
    open: the engine writes its PID into the store's ``status`` file, and leaves it there
    when it exits (so a dead PID holds nothing).

    >>> holding_process("http://ch:8123") is None and holding_process("chdb:///nonexistent") is None
    True
    """
    if not dsn.startswith("chdb://"):
        return None
    try:
        found = re.search(r"^PID: (\d+)$", (Path(dsn[len("chdb://") :]) / "status").read_text(), re.MULTILINE)
    except (OSError, UnicodeDecodeError):
        return None
    if found is None or int(found[1]) == os.getpid():
        return None
    pid = int(found[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return pid


def _utc(ts: str) -> datetime:
    return datetime.fromtimestamp(to_epoch(ts), tz=timezone.utc)


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).timestamp()


def _iso(ts: datetime) -> str:
    return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ClickHouseStore:
    """Creates its tables on first use, idempotently, and writes records in batches."""

    def __init__(self, dsn: str = DEFAULT_DSN, database: str = DEFAULT_DATABASE) -> None:
        self.dsn = normalize_dsn(dsn)
        self.database = database
        try:
            self.client = clickhouse_connect.get_client(dsn=self.dsn)
        except Exception as exc:
            raise StoreError(redact(f"cannot open the store at {self.dsn}: {_engine_hint(exc, self.dsn)}")) from exc
        self.ensure_tables()

    @property
    def location(self) -> str:
        """The DSN, fit to print (no password)."""
        return redact(self.dsn)

    def ensure_tables(self) -> None:
        """Apply the migrations this store has not had yet, in order, and record each.

        Every statement is idempotent (``IF NOT EXISTS``), so two processes that migrate
        one store at once, or a migration interrupted half-way, do no harm.
        """
        db = self.database
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        self.client.command(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, applied_at DateTime64(3, 'UTC'))"
            " ENGINE = ReplacingMergeTree ORDER BY version"
        )
        applied = {row[0] for row in self.client.query(f"SELECT version FROM {db}.schema_migrations").result_rows}
        for version, name, statements in migrations():
            if version in applied:
                continue
            for statement in statements:
                self.client.command(statement.format(db=db))
            self._insert("schema_migrations", [[version, name, datetime.now(timezone.utc)]], ["version", "name", "applied_at"])

    def schema_version(self) -> int:
        rows = self.client.query(f"SELECT max(version) FROM {self.database}.schema_migrations").result_rows
        return int(rows[0][0]) if rows else 0

    def insert_access_events(self, events: Sequence[AccessEvent], keep_prompts: bool = False) -> None:
        """One row per accepted request; the prompt itself only with ``keep_prompts``."""
        rows = []
        for e in events:
            params = e.params or Params()
            prompt_hash = hashlib.blake2b(e.prompt.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() if e.prompt else ""
            rows.append([
                _utc(e.ts), e.client_id, e.request_id or "", e.ip or "", e.user_agent or "", e.path or "", e.model or "",
                e.status or 0, e.latency_ms or 0.0, e.tokens_in or 0, e.tokens_out or 0, prompt_hash,
                e.prompt_length, e.features_dim or len(e.features or ()), params.temperature,
                params.max_tokens if params.max_tokens is None else min(params.max_tokens, 2**32 - 1),
                params.wants_logprobs(), params.n or 1, e.prompt if keep_prompts else None, e.features or [],
                e.turns if e.turns is None else min(e.turns, 2**16 - 1), min(params.logit_bias or 0, 2**16 - 1),
            ])  # fmt: skip
        self._insert("access_events", rows, ACCESS_EVENT_COLUMNS)

    def history(self, span_s: float | None = None) -> tuple[list[AccessEvent], dict]:
        """Stored requests of clients never acted on, oldest first: the baseline for retraining.

        ``span_s`` keeps the last that many seconds before the newest stored request (so a
        store filled from an old log works the same as a live one). Requests whose prompt was
        not kept (``--keep-prompts`` was off) are left out: a text request without its text
        would train the model on a shape it never sees in scoring. Returns the events and
        what was read, for the model's metadata.
        """
        db = self.database
        (newest, oldest), = self.query(f"SELECT max(ts), min(ts) FROM {db}.access_events")[1]
        if not newest or newest.year < 1971:
            raise StoreError(f"no stored requests in {self.location} (the pipeline writes them to {db}.access_events)")
        since = oldest if span_s is None else max(oldest, newest - timedelta(seconds=span_s))
        since = since.astimezone(timezone.utc).replace(tzinfo=None) if since.tzinfo else since
        flagged = f"SELECT DISTINCT client_id FROM {db}.decisions WHERE action != 'allow'"
        window = "ts >= {since:DateTime64(3, 'UTC')}"
        _, counts = self.query(
            f"SELECT countIf(client_id IN ({flagged})), uniqExactIf(client_id, client_id IN ({flagged})),"
            f" countIf(prompt_chars > 0 AND prompt IS NULL AND client_id NOT IN ({flagged})) FROM {db}.access_events FINAL WHERE {window}",
            {"since": since},
        )  # fmt: skip
        flagged_events, flagged_clients, without_prompt = counts[0]
        _, rows = self.query(
            f"SELECT ts, client_id, request_id, ip, user_agent, path, model, status, latency_ms, tokens_in, tokens_out,"
            f" prompt, prompt_chars, features, features_count, temperature, max_tokens, logprobs, n, turns, logit_bias FROM {db}.access_events FINAL"
            f" WHERE {window} AND client_id NOT IN ({flagged}) AND NOT (prompt_chars > 0 AND prompt IS NULL) ORDER BY ts",
            {"since": since},
        )  # fmt: skip
        events = [
            AccessEvent(
                ts=_epoch(ts), client_id=client, request_id=request_id or None, ip=ip or None, user_agent=agent or None,
                path=path or None, model=model or None, status=status or None, latency_ms=latency or None,
                tokens_in=tokens_in or None, tokens_out=tokens_out or None, prompt=prompt, features=list(features) or None,
                prompt_chars=chars if prompt is not None and chars > len(prompt) else None,
                params=Params(temperature=temperature, max_tokens=max_tokens, logprobs=True if logprobs else None, n=n if n != 1 else None, logit_bias=bias or None),
                turns=turns, features_dim=count if count > len(features) else None,
            )
            for ts, client, request_id, ip, agent, path, model, status, latency, tokens_in, tokens_out, prompt, chars, features, count, temperature, max_tokens, logprobs, n, turns, bias in rows
        ]  # fmt: skip
        info = {
            "store": self.location, "from": _iso(since), "to": _iso(newest), "events": len(events),
            "left_out_flagged": {"clients": int(flagged_clients), "events": int(flagged_events)},
            "left_out_without_prompt": int(without_prompt),
        }  # fmt: skip
        return events, info

    def insert_campaigns(self, campaigns: Sequence[CampaignScore]) -> None:
        self._insert("campaigns", [
            [_utc(c.ts), c.campaign_id, c.members, c.ties, c.summary, c.events_seen, c.risk, c.evidence, c.model_version]
            for c in campaigns
        ], ["ts", "campaign_id", "members", "ties", "summary", "events_seen", "risk", "evidence", "model_version"])  # fmt: skip

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
        try:
            result = self.client.query(sql, parameters=parameters or None)
        except Exception as exc:  # the engine's message, first line, is what a person needs
            raise StoreError(redact(_engine_hint(exc))) from exc
        return list(result.column_names), list(result.result_rows)

    def close(self) -> None:
        self.client.close()

    def _insert(self, table: str, rows: list[list], columns: list[str]) -> None:
        if rows:
            self.client.insert(f"{self.database}.{table}", rows, column_names=columns)


def insert_risk_scores_from_child(dsn: str, scores: Sequence[RiskScore], timeout_s: float = 300.0) -> None:
    """Write risk scores to ``dsn`` from a child process.

    chdb holds one store per process, for the life of the process: a process that will
    have the store served by another (``clonewatch api`` in tests and benchmarks) must not
    open it itself.
    """
    import subprocess
    import sys

    import msgspec

    code = (
        "import sys, msgspec; from sinks.clickhouse import ClickHouseStore; from schemas import RiskScore; "
        "ClickHouseStore(sys.argv[1]).insert_risk_scores(msgspec.json.decode(sys.stdin.buffer.read(), type=list[RiskScore]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, dsn], input=msgspec.json.encode(list(scores)), cwd=Path(__file__).resolve().parents[1], check=True, timeout=timeout_s
    )  # fmt: skip
