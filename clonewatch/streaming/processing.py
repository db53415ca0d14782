"""What a worker does with a batch of Kafka messages, as plain functions the Faust agent calls.

decode -> drop re-deliveries -> embed + detect -> outputs. Nothing here knows Faust: the
agent hands in :class:`Incoming` messages and the per-client :class:`ClientRecord` values
it read from its table, and writes back the records this module touched.

Re-deliveries are dropped in two ways, both remembered in the client's record so that
they survive a worker restart through the table's changelog:

- by position: a client's events arrive in offset order on one partition, so an event at
  or before the last applied offset of its partition is a replay after a crash;
- by ``request_id``: the last ``recent_ids`` ids of the client, so a line the shipper
  sent twice (it is at-least-once) counts once. They are kept as 8-byte hashes (1024 UUIDs
  took 39 KB of a record, their hashes take 8 KB); two ids of one client share a hash with a
  chance of about 1 in 10^16.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

import msgspec
from kafka.partitioner.default import murmur2

from clonewatch.model_watch import ModelWatcher
from detectors import BatchResult, ClientState, CloneDetector
from detectors.vectorize import Vectorizer
from ingest.decode import DecodeLimits, EventDecoder
from schemas import AccessEvent, CampaignFact, CampaignVerdict, DeadLetter, Decision

_encoder = msgspec.json.Encoder()
MIN_EMBEDDED_PER_BATCH = 16  # however far behind, a batch embeds at least this many prompts


@dataclass(frozen=True)
class Incoming:
    """One message of the access topic, as the worker received it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None  # the record's Kafka timestamp (seconds), when the broker gave one

    @property
    def source(self) -> str:
        return f"{self.topic}[{self.partition}]"


def expected_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in the Java client) picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class ClientRecord:
    """A client's table value: the detector's :class:`ClientState` plus what was already applied.

    >>> record = ClientRecord(ClientState(window=10), max_ids=2)
    >>> event = AccessEvent(ts=1795428000, client_id="k", request_id="r1")
    >>> record.is_replay(event, partition=0, offset=5)
    False
    >>> record.admit(event, partition=0, offset=5), record.admit(event, partition=0, offset=5)
    (True, False)
    >>> record.is_replay(event, partition=0, offset=9), record.is_replay(AccessEvent(ts=1795428000, client_id="k"), 0, 5)
    (True, True)
    >>> ClientRecord.from_bytes(record.to_bytes(), max_ids=2).is_replay(event, 1, 0)
    True
    """

    ID_BYTES = 8

    def __init__(
        self,
        state: ClientState,
        recent_ids: Iterable[str] = (),
        positions: Mapping[int, int] | None = None,
        max_ids: int = 1024,
    ) -> None:
        self.state = state
        self.recent_ids: deque[bytes] = deque(map(self.id_hash, recent_ids), maxlen=max_ids)
        self._id_set = set(self.recent_ids)
        self.positions: dict[int, int] = dict(positions or {})  # partition -> last applied offset

    @classmethod
    def id_hash(cls, request_id: str) -> bytes:
        return hashlib.blake2b(request_id.encode(), digest_size=cls.ID_BYTES).digest()

    def is_replay(self, event: AccessEvent, partition: int, offset: int) -> bool:
        """True if this event, or one with its request_id, was applied already."""
        return self._seen(self._hash_of(event), partition, offset)

    def admit(self, event: AccessEvent, partition: int, offset: int) -> bool:
        """Remember the event as applied and return True, or return False if it was applied
        already (its request id hashed once)."""
        hashed = self._hash_of(event)
        if self._seen(hashed, partition, offset):
            return False
        self._remember(hashed, partition, offset)
        return True

    def _hash_of(self, event: AccessEvent) -> bytes | None:
        return None if event.request_id is None else self.id_hash(event.request_id)

    def _seen(self, hashed: bytes | None, partition: int, offset: int) -> bool:
        last = self.positions.get(partition)
        return (last is not None and offset <= last) or (hashed is not None and hashed in self._id_set)

    def _remember(self, hashed: bytes | None, partition: int, offset: int) -> None:
        self.positions[partition] = max(offset, self.positions.get(partition, -1))
        if hashed is not None and self.recent_ids.maxlen:
            if len(self.recent_ids) == self.recent_ids.maxlen:
                self._id_set.discard(self.recent_ids[0])
            self.recent_ids.append(hashed)
            self._id_set.add(hashed)

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode({
            "state": self.state.to_bytes(),
            "id_hashes": b"".join(self.recent_ids),
            "positions": self.positions,
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes, max_ids: int = 1024) -> ClientRecord:
        raw = msgspec.msgpack.decode(data)
        record = cls(ClientState.from_bytes(raw["state"]), raw.get("ids", ()), {int(p): o for p, o in raw["positions"].items()}, max_ids)
        hashes = raw.get("id_hashes", b"")  # records written before the ids were hashed hold "ids"
        record.recent_ids.extend(hashes[i : i + cls.ID_BYTES] for i in range(0, len(hashes), cls.ID_BYTES))
        record._id_set = set(record.recent_ids)
        return record


@dataclass
class Admitted:
    """A decoded batch: fresh events in arrival order, and what was set aside."""

    events: list[AccessEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    misrouted: int = 0  # key missing, not the client id, or not on the partition Kafka would pick
    bounded: int = 0  # fresh events scored on a bounded part of them (ingest.oversize), by the shipper or the decoder

    @property
    def client_ids(self) -> set[str]:
        return {e.client_id for e in self.events}


class BatchProcessor:
    """Decodes, de-duplicates and scores batches; holds the detector and the embedder."""

    def __init__(
        self,
        detector: CloneDetector,
        vectorizer: Vectorizer,
        recent_ids: int = 1024,
        limits: DecodeLimits = DecodeLimits(),
        watcher: ModelWatcher | None = None,
        max_lag_s: float | None = None,
    ) -> None:
        self.detector = detector
        self.watcher = watcher  # a new model file version is used from the next batch on
        self.max_lag_s = max_lag_s  # behind by more than this, embed only what keeps up (None: embed everything)
        self.prompt_rate: float | None = None  # prompts embedded per second, a moving average
        self.vectorizer = vectorizer
        self.recent_ids = recent_ids
        self.limits = limits
        self._decoders: dict[str, EventDecoder] = {}
        self.embed_seconds = 0.0  # time spent embedding, and in detection, since start
        self.detect_seconds = 0.0

    def decode(self, messages: Sequence[Incoming]) -> list[tuple[Incoming, AccessEvent | DeadLetter]]:
        """Decode each message; a dead letter names the topic, partition and offset (as ``line``)."""
        out = []
        for message in messages:
            decoder = self._decoders.get(message.source)
            if decoder is None:
                decoder = self._decoders[message.source] = EventDecoder(message.source, self.limits)
            out.append((message, decoder.decode(message.value, message.offset)))
        return out

    def new_record(self) -> ClientRecord:
        return ClientRecord(ClientState(window=self.detector.model.window), max_ids=self.recent_ids)

    def load_record(self, data: bytes) -> ClientRecord:
        return ClientRecord.from_bytes(data, max_ids=self.recent_ids)

    def admit(
        self,
        decoded: Sequence[tuple[Incoming, AccessEvent | DeadLetter]],
        records: MutableMapping[str, ClientRecord],
        partitions: int,
    ) -> Admitted:
        """Keep the events not applied before, marking them applied in ``records`` (created as needed)."""
        admitted = Admitted()
        for message, item in decoded:
            if isinstance(item, DeadLetter):
                admitted.dead_letters.append(item)
                continue
            key = item.client_id.encode()
            if message.key != key or message.partition != expected_partition(key, partitions):
                admitted.misrouted += 1
            record = records.get(item.client_id)
            if record is None:
                record = records[item.client_id] = self.new_record()
            if not record.admit(item, message.partition, message.offset):
                admitted.duplicates += 1
                continue
            admitted.events.append(item)
            admitted.bounded += item.prompt_chars is not None or item.features_dim is not None
        return admitted

    def score(
        self, events: Sequence[AccessEvent], records: Mapping[str, ClientRecord], lag_s: float | None = None, span_s: float | None = None
    ) -> BatchResult:
        """Embed and detect (blocking: run it off the event loop). Updates the records' states."""
        if self.watcher is not None and (newer := self.watcher.poll()) is not None:
            self.detector.use_model(newer)
        states = {cid: records[cid].state for cid in {e.client_id for e in events}}
        budget = self.embedding_budget(lag_s, span_s)
        embedded_before = self.vectorizer.prompts_embedded
        started = time.monotonic()
        vectors = self.vectorizer.vectors(events, budget)
        embedded_at = time.monotonic()
        self.embed_seconds += embedded_at - started
        embedded = self.vectorizer.prompts_embedded - embedded_before
        if embedded >= 8:
            rate = embedded / max(embedded_at - started, 1e-6)
            self.prompt_rate = rate if self.prompt_rate is None else 0.8 * self.prompt_rate + 0.2 * rate
        result = self.detector.process(events, vectors, states)
        self.detect_seconds += time.monotonic() - embedded_at
        return result

    def embedding_budget(self, lag_s: float | None, span_s: float | None) -> int | None:
        """How many of a batch's prompts to embed: all of them (None) unless the worker is
        behind by more than ``max_lag_s``; then as many as it embeds in the time the batch
        took to arrive (``span_s``), less a fifth for everything else, so it stops falling
        further behind. Every event still updates its client's rate and shape signals.

        >>> processor = BatchProcessor(None, None, max_lag_s=30.0)
        >>> processor.prompt_rate = 100.0
        >>> processor.embedding_budget(5.0, 2.0), processor.embedding_budget(60.0, 2.0), processor.embedding_budget(60.0, 0.01)
        (None, 160, 16)
        """
        if self.max_lag_s is None or lag_s is None or lag_s <= self.max_lag_s or self.prompt_rate is None:
            return None
        return max(MIN_EMBEDDED_PER_BATCH, int(0.8 * self.prompt_rate * max(span_s or 0.0, 0.0)))


def arrival_seconds(times_by_partition: Iterable[Sequence[float]]) -> float | None:
    """How long a batch's events took to arrive: their number over the offered rate, each
    partition's rate from its own events' times. A worker behind the traffic reads its
    partitions unevenly, one far ahead of another, so the span of all the batch's times says
    how far apart the partitions are, not how fast events come (it overstated the time a batch
    took to arrive many times over, and the overload mode embedded nearly everything).

    >>> arrival_seconds([[0.0, 1.0], [10.0, 11.0]])  # two partitions at 1 event/s each: 4 events in 2 s
    2.0
    >>> arrival_seconds([[5.0], []]) is None
    True
    """
    groups = [g for g in times_by_partition if len(g) >= 2 and max(g) > min(g)]
    if not groups:
        return None
    rate = sum((len(g) - 1) / (max(g) - min(g)) for g in groups)  # n times span n - 1 gaps
    return sum(len(g) for g in groups) / rate


def encode(record: msgspec.Struct) -> bytes:
    """The JSON wire form of a Decision, DeadLetter or CampaignVerdict."""
    return _encoder.encode(record)


_fact_decoder = msgspec.msgpack.Decoder(CampaignFact)
_verdict_decoder = msgspec.json.Decoder(CampaignVerdict)


def encode_fact(fact: CampaignFact) -> bytes:
    """The wire form of a fact for the campaign stage (msgpack: it carries a packed vector)."""
    return msgspec.msgpack.encode(fact)


def decode_fact(data: bytes) -> CampaignFact:
    return _fact_decoder.decode(data)


def decode_verdict(data: bytes) -> CampaignVerdict:
    return _verdict_decoder.decode(data)


def decision_message(decision: Decision) -> tuple[bytes, bytes]:
    """Key and value of a decision on the decisions topic (key = client id)."""
    return decision.client_id.encode(), encode(decision)


@dataclass
class WorkerStats:
    """Counters for the progress log and the status file."""

    events: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    misrouted: int = 0
    poisoned: int = 0  # events that failed after decoding and were dead-lettered
    bounded: int = 0  # events with a prompt or feature row too long to keep whole, scored on a bounded part
    not_embedded: int = 0  # prompts left unembedded while the worker was behind (their events still counted)
    decisions: int = 0
    facts: int = 0  # facts this worker's campaign stage learned (while it held the facts partition)
    verdicts: int = 0  # verdicts it sent
    passed_over: int = 0  # offsets Faust passed over, never handing them to an agent, that the worker went back for
    expired: int = 0  # clients that went quiet and left the table
    batches: int = 0
    embed_seconds: float = 0.0  # the processor's, copied after each batch
    detect_seconds: float = 0.0
    event_age_s: float | None = None  # age of the oldest event of the latest batch when it was scored
    stage_save_s: float | None = None  # what the latest save of the campaign stage took (on the worker that runs it)
    started: float = field(default_factory=time.monotonic)
    actions: dict[str, str] = field(default_factory=dict)  # latest action of each client scored since start
    _last_events: int = 0
    _last_time: float = field(default_factory=time.monotonic)

    def add(self, admitted: Admitted, result: BatchResult) -> None:
        self.batches += 1
        self.events += len(admitted.events)
        self.dead_letters += len(admitted.dead_letters)
        self.duplicates += admitted.duplicates
        self.misrouted += admitted.misrouted
        self.bounded += admitted.bounded
        self.decisions += len(result.decisions)
        self.actions.update((s.client_id, s.action) for s in result.scores)

    @property
    def flagged(self) -> int:
        return sum(1 for action in self.actions.values() if action != "allow")

    def snapshot(self) -> dict[str, float | int]:
        """Totals plus the event rate since the previous snapshot."""
        now = time.monotonic()
        rate = (self.events - self._last_events) / max(now - self._last_time, 1e-9)
        self._last_events, self._last_time = self.events, now
        return {
            "events": self.events,
            "events_per_s": round(rate, 1),
            "clients": len(self.actions),
            "flagged": self.flagged,
            "decisions": self.decisions,
            "dead_letters": self.dead_letters,
            "duplicates": self.duplicates,
            "misrouted": self.misrouted,
            "poisoned": self.poisoned,
            "bounded": self.bounded,
            "not_embedded": self.not_embedded,
            "campaign_facts": self.facts,
            "campaign_verdicts": self.verdicts,
            "passed_over": self.passed_over,
            "expired": self.expired,
            "batches": self.batches,
            "embed_seconds": round(self.embed_seconds, 3),
            "detect_seconds": round(self.detect_seconds, 3),
            **({} if self.event_age_s is None else {"event_age_s": round(self.event_age_s, 3)}),
            **({} if self.stage_save_s is None else {"stage_save_s": round(self.stage_save_s, 3)}),
            "uptime_s": round(now - self.started, 1),
        }
