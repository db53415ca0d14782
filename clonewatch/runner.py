"""The embedded pipeline: JSON lines in, risk scores and decisions out, in one process.

decode -> (warm-up fit if no model) -> embed in batches -> detect -> ClickHouse + decisions file

ClickHouse gets every accepted event (access_events), each client's score after its
latest event of each batch, decisions, campaigns and dead letters.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


from clonewatch import DEFAULT_OUT_DIR, DEFAULT_WARMUP_EVENTS
from clonewatch.identities import Identities
from clonewatch.inputs import open_lines
from clonewatch.model_watch import ModelWatcher
from clonewatch.progress import how_far, progress_bar
from clonewatch.streaming.expiry import DEFAULT_CLIENT_TTL_S, ClientExpiry
from detectors import ClientState, CloneDetector, CloneModel, PolicyConfig, fit_clone_model
from detectors.embedding import embedder_for
from detectors.probes import is_probe
from detectors.vectorize import Vectorizer
from ingest.decode import DecodeLimits
from ingest.formats import CustomFormat
from ingest.reader import EventReader
from schemas import AccessEvent, Action, DeadLetter, RiskScore
from sinks.clickhouse import DEFAULT_DSN, ClickHouseStore
from sinks.jsonlines import JsonLinesWriter



@dataclass
class RunConfig:
    input: str
    format: str | CustomFormat = "auto"  # a format name, or a --mapping file's format
    model_path: Path | None = None
    store_dsn: str = DEFAULT_DSN
    decisions_path: Path = DEFAULT_OUT_DIR / "decisions.jsonl"
    dead_letters_path: Path = DEFAULT_OUT_DIR / "dead-letters.jsonl"
    batch_size: int = 256
    warmup_events: int = DEFAULT_WARMUP_EVENTS
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    keep_prompts: bool = False  # store prompt text in access_events (otherwise only its hash and length)
    embedder: str | None = None  # a backend of detectors.embedding.BACKENDS; default: $CLONEWATCH_EMBEDDER, the model's, torch
    embedding_cache: Path | None = None  # an SQLite file of prompt vectors kept across runs
    progress: bool = True
    client_ttl: float = DEFAULT_CLIENT_TTL_S  # seconds of event time after which a quiet client's state leaves memory


@dataclass
class RunSummary:
    accepted: int = 0
    with_query: int = 0  # of the accepted events, those whose request body gave a prompt or features
    probes: int = 0  # of the accepted events, health checks and metrics scrapes: stored, not scored (detectors.probes)
    rejected: int = 0
    format: str | None = None  # the input's format (--format auto: the one its lines showed)
    decisions: int = 0
    elapsed_s: float = 0.0
    model_version: str = ""
    model_source: str = ""
    fitted_on_input: bool = False  # no --model: the model was fitted on the input's own first events
    embedder: str = ""
    latest: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # each client's latest action, risk and events seen
    details: dict[str, RiskScore] = field(default_factory=dict)  # the latest scores of the riskiest clients, about DETAILED_CLIENTS to twice that
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    bounded: dict[str, int] = field(default_factory=dict)  # prompts and rows too long to keep whole, by what was done
    identities: Identities = field(default_factory=Identities)  # keys or addresses, and whether those are internal
    expired: int = 0  # clients quiet for longer than --client-ttl whose state left memory

    @property
    def clients(self) -> int:
        return len(self.latest)

    def record(self, scores: Iterable[RiskScore]) -> None:
        """Remember each client's latest score: its action, risk and events seen for every
        client, the whole score (reasons, features) only for the riskiest, so that a log of
        millions of clients is summarised in a few hundred bytes per client, not kilobytes."""
        for score in scores:
            self.latest[score.client_id] = (score.action, score.risk, score.events_seen)
            self.details[score.client_id] = score
        if len(self.details) > 2 * DETAILED_CLIENTS:
            kept = heapq.nsmallest(DETAILED_CLIENTS, self.details.values(), key=lambda s: _rank(s.client_id, s.action, s.risk))
            self.details = {s.client_id: s for s in kept}

    def riskiest(self, n: int = 5, min_events: int = 1) -> list[RiskScore]:
        """Acted-on clients first (most severe action), then by risk; clients with fewer than ``min_events`` left out."""
        eligible = ((client, *latest) for client, latest in self.latest.items() if latest[2] >= min_events)
        ranked = heapq.nsmallest(n, eligible, key=lambda c: _rank(c[0], c[1], c[2]))
        return [
            self.details.get(client)
            or RiskScore(ts="", client_id=client, events_seen=events, window_events=0, risk=risk, action=action, reasons=[], features={}, model_version="")
            for client, action, risk, events in ranked
        ]  # a client ranked here without its details fell out of them while riskier ones were about: its reasons are not kept

    def action_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action, _, _ in self.latest.values():
            counts[action] = counts.get(action, 0) + 1
        return counts


DETAILED_CLIENTS = 1024  # clients whose whole latest score the summary keeps, at least
_SEVERITY = {a.value: a.severity for a in Action}


def _rank(client: str, action: str, risk: float) -> tuple[int, float, str]:
    return (-_SEVERITY[action], -risk, client)


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class EmbeddedRunner:
    """Runs the whole pipeline over one input; :meth:`run` returns what happened."""

    def __init__(self, config: RunConfig, vectorizer: Vectorizer | None = None) -> None:
        self.config = config
        self.summary = RunSummary()
        self.states: dict[str, ClientState] = {}
        self.expiry = ClientExpiry(config.client_ttl)
        self._swept_at = float("-inf")  # the event time of the last sweep for quiet clients
        self.detector: CloneDetector | None = None
        self.watcher: ModelWatcher | None = None
        model = CloneModel.load(config.model_path) if config.model_path is not None else None
        self.vectorizer = vectorizer or Vectorizer(embedder_for(model.metadata if model else None, config.embedder, disk_cache=config.embedding_cache))
        self.summary.embedder = self.vectorizer.embedder.name
        if model is not None:
            self._use_model(model, f"model file {config.model_path}")
            self.watcher = ModelWatcher(config.model_path, current_version=model.version, embedder=self.vectorizer.embedder.backend)

    def run(self) -> RunSummary:
        cfg = self.config
        started = time.monotonic()
        store = ClickHouseStore(cfg.store_dsn)
        with (
            open_lines(cfg.input) as lines,
            JsonLinesWriter(cfg.decisions_path, create=True) as decisions,
            JsonLinesWriter(cfg.dead_letters_path) as dead_letters,
            progress_bar(not cfg.progress, desc="events", unit=" ev", mininterval=0.5) as bar,
        ):
            pending: list[tuple[AccessEvent, object]] = []  # warm-up buffer: (event, vector)
            reader = EventReader(cfg.input, cfg.format, cfg.limits)
            for batch in batched(reader.read(lines), cfg.batch_size):
                events = [r for r in batch if isinstance(r, AccessEvent)]
                self._reject([r for r in batch if isinstance(r, DeadLetter)], dead_letters, store)
                vectors = self.vectorizer.vectors(events)
                if self.detector is None:
                    pending.extend(zip(events, vectors))
                    bar.set_postfix_str(f"warming up {len(pending)}/{cfg.warmup_events}")
                    if len(pending) < cfg.warmup_events:
                        continue
                    self._fit_and_detect(pending, decisions, store, bar)
                    pending = []
                    continue
                self._detect(events, vectors, decisions, store)
                bar.set_postfix_str(", ".join([f"clients={len(self.states)}", f"flagged={self._flagged()}", *how_far(lines, started)]), refresh=False)
                bar.update(len(events))
            if pending:
                self._fit_and_detect(pending, decisions, store, bar)
        self.summary.elapsed_s = time.monotonic() - started
        self.summary.format = reader.format
        self.summary.bounded = dict(reader.bounded)
        self.summary.embedder += self.vectorizer.embedder.disk_cache_note
        return self.summary

    def _use_model(self, model: CloneModel, source: str) -> None:
        self.detector = CloneDetector.from_model(model, self.config.policy)
        self.summary.model_version = model.version
        self.summary.model_source = source

    def _fit_and_detect(self, pending: list[tuple[AccessEvent, object]], decisions: JsonLinesWriter, store: ClickHouseStore, bar) -> None:
        """Fit on the warm-up, then score its events, a batch at a time."""
        self._fit_on(pending, lambda stage: bar.set_postfix_str(f"fitting on the warm-up: {stage}"))
        for batch in batched(pending, self.config.batch_size):
            self._detect([e for e, _ in batch], [v for _, v in batch], decisions, store)
            bar.update(len(batch))

    def _fit_on(self, pending: list[tuple[AccessEvent, object]], progress: Callable[[str], None]) -> None:
        events = [e for e, _ in pending]
        named = {e.client_id: e for e in events if not is_probe(e)}
        if len(named) == 1:
            client, event = next(iter(named.items()))
            seen_as = f"the address {event.ip}, as no line names a key" if client.startswith("ip_") else "one key"
            raise ValueError(
                f"every one of the first {len(events):,} events comes from one client ({seen_as}), and a first look"
                " compares clients with one another: if a proxy or ingress stands in front of the gateway, log the"
                " client's forwarded address or its API key (docs/gateways.md), or pass --model"
            )
        model = fit_clone_model(events, [v for _, v in pending], contaminated=True, n_jobs=-1, progress=progress)
        model.metadata["embedder"] = self.vectorizer.embedder.describe()
        self._use_model(model, f"fitted on the first {len(events):,} events ({len(named)} clients) of the input itself, no --model given")
        self.summary.fitted_on_input = True

    def _detect(self, events, vectors, decisions: JsonLinesWriter, store: ClickHouseStore) -> None:
        if self.watcher is not None and (newer := self.watcher.poll()) is not None:
            self.detector.use_model(newer)  # a new version written over --model: states and campaigns carry over
            self.summary.model_version = newer.version
            self.summary.model_source = f"model file {self.config.model_path}, reloaded while running"
        result = self.detector.process(events, vectors, self.states)
        self.summary.accepted += len(events)
        self.summary.with_query += sum(e.prompt is not None or e.features is not None for e in events)
        self.summary.probes += sum(map(is_probe, events))
        self.summary.identities.learn(e for e in events if not is_probe(e))
        self.summary.decisions += len(result.decisions)
        store.insert_access_events(events, self.config.keep_prompts)
        store.insert_risk_scores(result.scores)
        store.insert_decisions(result.decisions)
        store.insert_campaigns(result.campaigns)
        decisions.write(result.decisions)
        self.summary.record(result.scores)
        self._forget_quiet_clients({e.client_id for e in events})

    def _forget_quiet_clients(self, active: set[str]) -> None:
        """Drop the states of clients quiet for longer than the time to live (event time), a
        sweep every quarter of it: a log of months, or of millions of addresses, is read in
        the memory of the clients active lately. A client that comes back starts afresh, as
        in the workers; its scores and decisions are in the store and the decisions file."""
        self.expiry.seen({c: self.states[c].last_ts for c in active if c in self.states})
        if self.expiry.newest - self._swept_at < self.config.client_ttl / 4:
            return
        self._swept_at = self.expiry.newest
        for client in self.expiry.due(lambda c: c in self.states):
            del self.states[client]
            self.summary.expired += 1

    def _reject(self, letters: list[DeadLetter], writer: JsonLinesWriter, store: ClickHouseStore) -> None:
        if letters:
            writer.write(letters)
            store.insert_dead_letters(letters)
            self.summary.rejected += len(letters)
            for letter in letters:
                key = letter.reason.split(" - at ")[0][:60]
                self.summary.dead_letter_reasons[key] = self.summary.dead_letter_reasons.get(key, 0) + 1

    def _flagged(self) -> int:
        return sum(1 for s in self.states.values() if s.action != "allow")
