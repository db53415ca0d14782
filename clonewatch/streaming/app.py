"""The Faust app of ``clonewatch worker``: topics, tables and agents, in one place.

Data flow, one batch at a time (``noack_take``, acknowledged after the batch is done), key =
client id everywhere::

    access topic ──decode──> dead letters ──────────────────────────────> dead-letter topic
         │                                                                 + ClickHouse
         └─> drop re-deliveries (client table) ─> embed + detect (thread) ─> events, risk scores -> ClickHouse
                                                        ├─> action changed ─> decisions topic + ClickHouse
                                                        ├─> client state ──> client table (changelog)
                                                        └─> one fact per event ─> campaign facts topic (1 partition)

    campaign facts ──> campaign stage (one worker at a time) ─> campaigns -> ClickHouse
                               │                              └─> stage, every few seconds ──> stage table (changelog)
                               └─> verdicts, keyed by member ─> campaign verdicts topic

    campaign verdicts ──> the member's state (client table) ─> action changed ─> decisions topic + ClickHouse

Campaigns need every key; scoring splits keys over workers. So each worker sends a
:class:`schemas.CampaignFact` per scored event to a one-partition topic, whose one consumer
runs the :class:`detectors.campaign_stage.CampaignStage` that ``clonewatch run`` runs in
process, and its verdicts come back on a topic partitioned like the access topic, so each
reaches the worker that holds its member's state. A member's risk is the larger of its own
and its campaign's as the stage last said; a campaign's action reaches every member. The
stage drops facts it has seen (by the client's event count), so replays count once. It is
saved every ``stage_save_interval`` seconds, not after each batch, and reads again the facts
acknowledged after its last save when it is next loaded (:class:`StageHolder`).

Poison and outages (:func:`with_retries`): a batch that keeps failing is tried event by
event; an event that fails on its own while the store answers is dead-lettered with the
reason and skipped, and while the store does not answer the batch waits and is tried again,
uncommitted, until it goes through. A batch still in hand after :data:`STALL_LIMIT_S` makes
the worker log the stack of every thread and task, once (:mod:`clonewatch.streaming.stall_watch`).

Processing guarantee: at-least-once delivery made exact by the client table. For each batch
the agent (1) writes risk scores, decisions and dead letters to ClickHouse, (2) publishes
decisions and dead letters and waits for the broker's acknowledgement, (3) writes the
touched clients to the table and waits until the changelog holds them; only then does the
batch's offset become committable. A worker killed anywhere in between replays the batch;
the replayed events that the recovered table already applied are dropped by position and
request id, the others are applied once. So events_seen counts each event once and no
decision is lost (one may be published twice; the topic is keyed and compacted). ClickHouse
rows of a replayed batch may be inserted twice; the replacing merge trees, keyed by what makes
a row the same row, merge the copies away (``FINAL`` reads each once before that). Messages
that Faust passes over around a rebalance, never handing them to an agent, are read straight
from Kafka and processed in front of the batch that jumped over them
(:mod:`clonewatch.streaming.offset_trail`).

Faust's ``exactly_once`` guarantee is not used. The replay guard is needed anyway, for the
shipper's at-least-once re-sends, and it alone gives exact per-client counts across a
SIGKILL (tests/test_streaming.py); ClickHouse is outside Kafka transactions either way; and
exactly_once (one transactional producer per partition, commits through transactions) was
not tested here with batched processing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import faust
import mode
from faust.types import EventT, Message, StreamT

from clonewatch.streaming.bounded_stop import dump_stacks
from clonewatch.streaming.config import CLIENT_TABLE, STAGE_TABLE, StreamingConfig
from clonewatch.streaming.expiry import ClientExpiry
from clonewatch.streaming.metrics import MetricsServer, parse_address
from clonewatch.streaming.metrics import render as render_metrics
from clonewatch.streaming.offset_trail import OffsetTrail
from clonewatch.streaming.processing import (
    BatchProcessor,
    ClientRecord,
    Incoming,
    WorkerStats,
    arrival_seconds,
    decision_message,
    decode_fact,
    decode_verdict,
    encode,
    encode_fact,
    expected_partition,
)
from clonewatch.streaming.stall_watch import STALL_LIMIT_S, StallWatch
from clonewatch.streaming.topics import read_records, resume_points
from detectors import BatchResult
from detectors.campaign_stage import CampaignStage
from ingest.formats import dead_letter_raw
from schemas import AccessEvent, DeadLetter
from schemas.text import printable
from sinks.clickhouse import ClickHouseStore, redact

log = logging.getLogger("clonewatch.worker")

T = TypeVar("T")

STAGE_CHUNK_BYTES = 512 * 1024
STAGE_SAVE_SHARE = 0.05  # at most this share of the stage's time goes to saving it
RETRY_DELAYS_S = (1.0, 4.0, 16.0)  # waits between attempts at a failing batch
OUTAGE_RETRY_S = 30.0  # then, while ClickHouse or Kafka is away, a try every this long
IDLE_LOG_INTERVAL_S = 60.0
KAFKA_RETRY_S = 5.0  # between tries at reading offsets or messages while Kafka does not answer
TRAIL_CHECK_INTERVAL_S = 10.0  # how often partitions whose trail stands still are compared with the consumer's position
EXPIRY_SWEEP_S = 600.0  # seconds between sweeps for quiet clients (a quarter of the time to live, if shorter)
TRAIL_PATIENCE_S = 30.0  # a trail standing still this long, the worker idle and the consumer past it: messages passed over


class Blocking:
    """Runs blocking work (embedding, detection, ClickHouse) on one thread off the event loop.

    One thread keeps the embedder and the embedded ClickHouse engine single-threaded; the
    event loop stays free for Kafka heartbeats while a batch is scored.
    """

    def __init__(self, store_dsn: str) -> None:
        self.store_dsn = store_dsn
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clonewatch-blocking")
        self._store: ClickHouseStore | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    def open_store(self) -> None:
        """Open the store now, from the calling thread, so that a bad DSN fails at startup."""
        self._pool.submit(self.store).result()

    def ping(self) -> None:
        """Raise unless the store answers a trivial query (call on the blocking thread)."""
        self.store().client.command("SELECT 1")

    def store(self) -> ClickHouseStore:
        """The ClickHouse store, opened on first use on the blocking thread."""
        if self._store is None:
            self._store = ClickHouseStore(self.store_dsn)
        return self._store


class StageHolder:
    """The campaign stage of this worker, read from its table when first needed and saved
    back every ``save_interval`` seconds while facts come in (at once after it is read):
    chunks under a generation's keys, then the generation's manifest, then the previous
    generation's chunks deleted, so a reader never mixes two generations. A stage is kept
    across rebalances while no other worker saved one since (:meth:`current`): the facts it
    learned and the group did not commit yet come again, and it knows them.

    The stage holds every client it remembers (megabytes with tens of thousands, about 570
    bytes each), so it is not rewritten after each batch, and a stage whose last save took
    ``s`` seconds (encoding and writing it) is saved again after ``s / STAGE_SAVE_SHARE``
    seconds if that is longer than ``save_interval``: a stage of 200,000 clients is not
    rewritten every few seconds, and a restart reads again that much more of the facts topic.
    The manifest names the offset of the first fact the save
    does not hold: facts acknowledged after the last save are read again from there when the
    stage is next loaded (:attr:`saved_up_to`), and those a replay repeats are dropped by
    their client's event count, so none is lost or counted twice.
    """

    def __init__(self, processor: BatchProcessor, table: Any, save_interval: float) -> None:
        self.processor = processor
        self.table = table
        self.save_interval = save_interval
        self.saved_up_to: int | None = None  # the offset of the first fact the loaded save does not hold
        self._stage: CampaignStage | None = None
        self._generation = 0
        self._chunks = 0
        self._manifest: bytes | None = None  # the manifest this stage was read from or last saved under
        self._saved_at = float("-inf")
        self.save_seconds = 0.0  # what the last save took, from encoding the stage to its last chunk written

    def current(self) -> bool:
        """Whether a stage is in hand and no other worker saved one since it was read or last
        saved (the facts partition may have been elsewhere for a while)."""
        return self._stage is not None and self.table.get(b"manifest") == self._manifest

    def stage(self) -> CampaignStage:
        detector = self.processor.detector
        if self._stage is None:
            manifest = self._manifest = self.table.get(b"manifest")
            if manifest is None:
                self._stage, self.saved_up_to = CampaignStage(detector.model, detector.policy), 0
            else:
                generation, chunks, *offset = (int(x) for x in manifest.decode().split(":"))
                self._generation, self._chunks = generation, chunks
                self.saved_up_to = offset[0] if offset else None  # a stage saved after every batch kept none
                data = b"".join(self.table[f"{self._generation}:{i}".encode()] for i in range(self._chunks))
                self._stage = CampaignStage.from_bytes(data, detector.model, detector.policy)
            self._saved_at = float("-inf")
            log.info(
                "running the campaign stage: %d campaigns, %d clients remembered, %d facts learned",
                len(self._stage.tracker.campaigns), len(self._stage.tracker), self._stage.facts_learned,
            )  # fmt: skip
        self._stage.model = detector.model  # a newer model file, once the scorer has switched to it
        return self._stage

    def interval(self) -> float:
        """Seconds between saves: ``save_interval``, or longer for a stage that takes long to save."""
        return max(self.save_interval, self.save_seconds / STAGE_SAVE_SHARE)

    def due(self) -> bool:
        return time.monotonic() - self._saved_at >= self.interval()

    def save(self, data: bytes, up_to: int, started: float | None = None) -> None:
        """Write ``data`` (the stage's ``to_bytes()``), which holds the facts before offset ``up_to``;
        ``started``: the ``time.monotonic()`` at which encoding it began."""
        started = time.monotonic() if started is None else started
        old_generation, old_chunks = self._generation, self._chunks
        self._generation += 1
        self._chunks = max(1, -(-len(data) // STAGE_CHUNK_BYTES))
        for i in range(self._chunks):
            self.table[f"{self._generation}:{i}".encode()] = data[i * STAGE_CHUNK_BYTES : (i + 1) * STAGE_CHUNK_BYTES]
        self._manifest = f"{self._generation}:{self._chunks}:{up_to}".encode()
        self.table[b"manifest"] = self._manifest
        for i in range(old_chunks):
            self.table.pop(f"{old_generation}:{i}".encode(), None)
        self._saved_at = time.monotonic()
        self.save_seconds = self._saved_at - started

    def forget(self) -> None:
        self._stage = None
        self._manifest = None


def create_app(config: StreamingConfig, processor: BatchProcessor, blocking: Blocking, partitions: int) -> faust.App:
    """The worker app; ``partitions`` is the access topic's actual partition count."""
    app = faust.App(
        config.app_id,
        broker=config.broker_url,
        broker_credentials=config.kafka_auth.faust_credentials(),
        store="memory://",
        datadir=str(config.data_dir),
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=config.replication_factor,
        broker_session_timeout=config.session_timeout,
        broker_commit_interval=config.commit_interval,
        broker_heartbeat_interval=min(3.0, config.session_timeout / 3),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
    )

    access = app.topic(config.access_topic, key_serializer="raw", value_serializer="raw", partitions=partitions)
    decisions = app.topic(config.decisions_topic, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(config.dead_letter_topic, key_serializer="raw", value_serializer="raw")
    facts = app.topic(config.campaign_facts_topic, key_serializer="raw", value_serializer="raw", partitions=1)
    verdicts = app.topic(config.campaign_verdicts_topic, key_serializer="raw", value_serializer="raw", partitions=partitions)
    # client id (bytes) -> ClientRecord.to_bytes(). The changelog partition is picked from
    # the key by the same murmur2 partitioner the shipper uses for the access topic, so a
    # client's state recovers on the worker that gets its events.
    clients = app.Table(
        CLIENT_TABLE,
        partitions=partitions,
        key_type=bytes,  # bytes keys and values make Faust use its "raw" codec, also in recovery
        value_type=bytes,
        use_partitioner=True,
        help="per-client detector state and replay guard",
    )
    # The campaign stage, saved every few seconds in chunks (one Kafka message is
    # at most 1 MB); on the worker that holds the facts partition.
    stage_table = app.Table(
        STAGE_TABLE, partitions=1, key_type=bytes, value_type=bytes, use_partitioner=True, help="the campaign stage, chunked"
    )
    held = StageHolder(processor, stage_table, config.stage_save_interval)
    watch = StallWatch(STALL_LIMIT_S, dump=lambda: dump_stacks(app.loop, sys.stderr)).start()
    trail = OffsetTrail()  # per partition, the next offset its agent should be handed
    consumed = (config.access_topic, config.campaign_facts_topic, config.campaign_verdicts_topic)
    clients_lock = asyncio.Lock()  # scoring and verdicts both rewrite client records

    stats = WorkerStats()
    last_line, last_misrouted = float("-inf"), 0
    metrics = serve_metrics(config.metrics_address)
    expiry = ClientExpiry(config.client_ttl)

    @app.agent(access, supervisor_strategy=mode.CrashingSupervisor)
    async def score(stream: StreamT) -> None:
        await in_batches(stream, process_batch)

    async def in_batches(
        stream: StreamT,
        process: Callable[[Sequence[EventT]], Awaitable[None]],
        before: Callable[[Sequence[EventT]], Awaitable[None]] | None = None,
    ) -> None:
        """Process a stream batch by batch, with the messages the stream skipped in front of
        it; a batch's offsets become committable only once it is done."""
        async for taken in stream.noack_take(config.batch_size, within=config.batch_within):
            watch.started(process.__name__)
            batch = await with_skipped(taken)
            if before is not None:
                await before(batch)
            await with_retries(process, batch, quarantine, healthy)
            for event in batch:
                if isinstance(event, Reread):
                    acknowledge_reread(app.consumer, event.message)
                else:
                    await stream.ack(event)
            watch.finished(process.__name__)

    async def with_skipped(batch: Sequence[EventT]) -> Sequence[EventT]:
        """``batch``, with the messages the stream passed over before its offsets read straight
        from Kafka and put in front of them (:mod:`clonewatch.streaming.offset_trail`)."""
        if unknown := trail.unknown(e.message.tp for e in batch):
            points = await from_kafka(resume_points, config, [(tp.topic, tp.partition) for tp in unknown])
            for tp in unknown:
                trail.start(tp, points[(tp.topic, tp.partition)])
        gaps = trail.skipped((e.message.tp, e.message.offset) for e in batch)
        if not gaps:
            return batch
        found: list[Any] = []
        for tp, ranges in gaps.items():
            wanted = {offset for span in ranges for offset in span}
            records = await from_kafka(read_records, config, tp.topic, tp.partition, ranges[0].start, ranges[-1].stop)
            kept = {r.offset: r for r in records if r.offset in wanted}
            stats.passed_over += len(wanted)
            in_batch = [e.message.offset for e in batch if e.message.tp == tp]
            log.warning(
                "%s partition %d: %d offsets from %d never reached this worker's agent (passed over around a rebalance; "
                "the batch holds offsets %d to %d of it); processing the %d messages there, read straight from Kafka",
                tp.topic, tp.partition, len(wanted), ranges[0].start, min(in_batch), max(in_batch), len(kept),
            )  # fmt: skip
            for offset in sorted(wanted):
                if offset in kept:
                    found.append(Reread(faust_message(kept[offset])))
                else:  # no message there (a transaction marker): nothing to process
                    acknowledge_reread(app.consumer, Message(tp.topic, tp.partition, offset, 0.0, 0, None, None, None, None))
        return sorted([*batch, *found], key=lambda e: (e.message.tp, e.message.offset))

    async def from_kafka(read: Callable[..., T], *args: Any) -> T:
        """Run a blocking read of offsets or messages off the event loop, again while Kafka does not answer."""
        while True:
            try:
                return await asyncio.get_running_loop().run_in_executor(None, read, *args)
            except Exception as exc:  # noqa: BLE001 - the broker away or the group rebalancing: nothing to do but wait
                log.warning("could not read from Kafka (%s: %s); trying again in %.0f s", type(exc).__name__, exc, KAFKA_RETRY_S)
                await asyncio.sleep(KAFKA_RETRY_S)

    async def process_batch(events: Sequence[EventT]) -> None:
        async with clients_lock:
            await score_batch(events)

    async def score_batch(events: Sequence[EventT]) -> None:
        messages = [
            Incoming(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value, e.message.timestamp)
            for e in events
        ]
        decoded = processor.decode(messages)
        records: dict[str, ClientRecord] = {}
        for _, item in decoded:
            cid = getattr(item, "client_id", None)
            if cid is not None and cid not in records and (stored := clients.get(cid.encode())) is not None:
                records[cid] = processor.load_record(stored)
        admitted = processor.admit(decoded, records, partitions)
        stamps: dict[int, list[float]] = defaultdict(list)
        for m in messages:
            if m.timestamp:
                stamps[m.partition].append(m.timestamp)
        lag_s = time.time() - min(min(times) for times in stamps.values()) if stamps else None
        span_s = arrival_seconds(stamps.values())
        started = time.monotonic()
        result = await blocking.run(processor.score, admitted.events, records, lag_s, span_s)
        scored = time.monotonic()
        stats.not_embedded = processor.vectorizer.prompts_seen - processor.vectorizer.prompts_embedded
        stats.embed_seconds, stats.detect_seconds = processor.embed_seconds, processor.detect_seconds
        if lag_s is not None:
            stats.event_age_s = lag_s + (scored - started)
        await blocking.run(write_store, blocking, admitted.events, result, admitted.dead_letters, config.keep_prompts)
        await publish(decisions, [decision_message(d) for d in result.decisions])
        if lag_s is not None:
            log.debug("batch of %d events, the oldest %.2f s old; scored in %.2f s, stored and its decisions sent in %.2f s", len(events), lag_s, scored - started, time.monotonic() - scored)
        await publish(dead_letters, [(letter.source.encode(), encode(letter)) for letter in admitted.dead_letters])
        await publish(facts, [(f.event.client_id.encode(), encode_fact(f)) for f in result.facts])
        await know_changelog(app, clients)
        for cid in admitted.client_ids:
            clients[cid.encode()] = records[cid].to_bytes()
        expiry.seen({cid: records[cid].state.last_ts for cid in admitted.client_ids})
        await drain(app)
        stats.add(admitted, result)

    @app.agent(facts, supervisor_strategy=mode.CrashingSupervisor)
    async def track_campaigns(stream: StreamT) -> None:
        """The campaign stage: one worker at a time holds the facts' one partition."""
        await in_batches(stream, stage_batch, before=catch_up)

    async def catch_up(batch: Sequence[EventT]) -> None:
        """Read the stage from its table unless the one in hand is current, and let it learn
        again the facts before the batch that were acknowledged after its last save (their
        verdicts went out then)."""
        if held.current():
            return
        held.forget()
        stage = held.stage()
        offset = batch[0].message.offset
        start = held.saved_up_to
        if start is None or start >= offset:
            return
        records = await from_kafka(read_records, config, config.campaign_facts_topic, 0, start, offset)
        learned = await blocking.run(learn_again, stage, [record.value for record in records])
        log.info("the campaign stage learned again %d facts acknowledged after its last save", learned)

    async def stage_batch(events: Sequence[EventT]) -> None:
        """Facts in; campaigns to ClickHouse, verdicts to their members' partitions; the stage
        saved when its interval has passed."""
        stage = held.stage()
        decoded = [decode_fact(e.message.value) for e in events]
        result = await blocking.run(stage.process, decoded)
        await blocking.run(lambda: blocking.store().insert_campaigns(result.campaigns))
        await publish(verdicts, [(v.client_id.encode(), encode(v)) for _, v in result.verdicts])
        if held.due():
            await know_changelog(app, stage_table)
            started = time.monotonic()
            held.save(await blocking.run(stage.to_bytes), max(e.message.offset for e in events) + 1, started)
            stats.stage_save_s = held.save_seconds
        await drain(app)
        stats.facts += result.learned
        stats.verdicts += len(result.verdicts)

    @app.agent(verdicts, supervisor_strategy=mode.CrashingSupervisor)
    async def hear_verdicts(stream: StreamT) -> None:
        """Verdicts for the members whose state this worker holds (the topics are co-partitioned)."""
        await in_batches(stream, apply_verdicts)

    async def apply_verdicts(events: Sequence[EventT]) -> None:
        said = [decode_verdict(e.message.value) for e in events]
        async with clients_lock:
            records = {}
            for cid in {v.client_id for v in said}:
                if (stored := clients.get(cid.encode())) is not None:
                    records[cid] = processor.load_record(stored)
            changed = processor.detector.apply_verdicts(said, {cid: r.state for cid, r in records.items()})
            await blocking.run(lambda: blocking.store().insert_decisions(changed))
            await publish(decisions, [decision_message(d) for d in changed])
            await know_changelog(app, clients)
            for cid, record in records.items():
                clients[cid.encode()] = record.to_bytes()
            await drain(app)
        stats.decisions += len(changed)
        stats.actions.update((d.client_id, d.action.value) for d in changed)

    async def quarantine(failed: Sequence[tuple[EventT, BaseException]]) -> None:
        """Dead-letter events that fail on their own while the rest of their batch goes through."""
        letters = [poison_letter(e.message.topic, e.message.partition, e.message.offset, e.message.value, exc) for e, exc in failed]
        await publish(dead_letters, [(letter.source.encode(), encode(letter)) for letter in letters])
        try:
            await blocking.run(lambda: blocking.store().insert_dead_letters(letters))
        except Exception:
            log.warning("could not store %d dead letters in ClickHouse; they are on the dead-letter topic", len(letters))
        stats.poisoned += len(letters)
        for letter in letters:
            log.error("dead-lettered a poison event (%s offset %d): %s", letter.source, letter.line, letter.reason)

    async def healthy() -> bool:
        """Whether the store answers: when it does and an event still fails, the event is the problem."""
        try:
            await blocking.run(blocking.ping)
            return True
        except Exception:
            return False

    @app.on_rebalance_complete.connect
    async def resume_where_committed(sender: faust.App, **kwargs: Any) -> None:
        """After every rebalance, forget the trails of partitions gone elsewhere, and move each
        partition that no batch has come from yet to where the group resumes it (its committed
        offset, or its first offset where it has none), and start its trail there.

        Faust seeks to the committed offsets itself, but aiokafka 0.14 skips that seek for an
        offset of 0 or none, so what was fetched meanwhile would never be processed (seen
        when a worker took over from one killed before its first commit); and a trail that
        starts here notices messages passed over even when no batch comes after them.
        """
        assigned = [tp for tp in app.consumer.assignment() if tp.topic in consumed]
        trail.keep(assigned)
        if not assigned:
            return
        try:
            points = await asyncio.get_running_loop().run_in_executor(None, resume_points, config, [(tp.topic, tp.partition) for tp in assigned])
        except Exception as exc:  # noqa: BLE001 - the broker away: each trail starts with its partition's first batch
            log.warning("could not read where the group resumes its partitions (%s: %s)", type(exc).__name__, exc)
            return
        for tp in trail.unknown(assigned):
            offset = points[(tp.topic, tp.partition)]
            await app.consumer.seek(tp, offset)
            trail.start(tp, offset)

    @app.timer(TRAIL_CHECK_INTERVAL_S)
    async def seek_back_to_trails() -> None:
        """Fetch again from its trail a partition whose consumer moved past messages it never
        handed on, when none came after them (the agent then has nothing to notice the jump by)."""
        if watch.in_hand():
            return  # a batch is being processed: what is fetched waits for it
        for tp, due in trail.standing(TRAIL_PATIENCE_S).items():
            try:
                position = await app.consumer.position(tp)
            except Exception:  # noqa: BLE001 - no longer assigned, or the consumer rebalancing: the next check asks again
                continue
            if position is None or position <= due:
                continue
            try:
                records = await asyncio.get_running_loop().run_in_executor(None, read_records, config, tp.topic, tp.partition, due, position)
            except Exception:  # noqa: BLE001 - the broker away: the next check asks again
                continue
            if not records:  # only transaction markers there: nothing to hand on
                trail.start(tp, position)
            else:
                stats.passed_over += position - due
                log.warning(
                    "%s partition %d: offsets %d to %d were fetched and never reached this worker's agent (passed over around "
                    "a rebalance); fetching them again", tp.topic, tp.partition, due, position - 1,
                )  # fmt: skip
                await app.consumer.seek(tp, due)

    @app.task
    async def announce() -> None:
        log.info(
            "model %s; consuming %s (%d partitions) at %s as group %s; store %s",
            processor.detector.model.version, config.access_topic, partitions, config.bootstrap, config.app_id, redact(config.store_dsn),
        )  # fmt: skip
        if metrics is not None:
            log.info("metrics on http://%s:%d/metrics", *metrics.address)

    @app.timer(min(EXPIRY_SWEEP_S, config.client_ttl / 4))
    async def expire_quiet_clients() -> None:
        """Delete the table records of clients quiet for longer than the time to live."""
        held = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == config.access_topic}

        def mine(client: str) -> bool:
            return expected_partition(client.encode(), partitions) in held

        async with clients_lock:
            expiry.adopt(key.decode() for key in list(clients.keys()) if mine(key.decode()))
            due = expiry.due(mine)
            for client in due:
                clients.pop(client.encode(), None)
        stats.expired += len(due)
        if due:
            log.info("%d clients quiet for more than %.0f s left the table (%d held)", len(due), config.client_ttl, len(expiry))

    @app.timer(config.log_interval)
    async def report_progress() -> None:
        """A progress line when something happened (else once a minute) and the status file."""
        nonlocal last_line, last_misrouted
        snapshot = stats.snapshot()
        assigned = [tp for tp in app.assignor.assigned_actives() if tp.topic == config.access_topic]
        snapshot["partitions"] = len(assigned)
        if metrics is not None:
            metrics.publish(render_metrics(snapshot, consumer_lags(assigned), Counter(stats.actions.values())))
        now = time.monotonic()
        if snapshot["events_per_s"] or now - last_line >= IDLE_LOG_INTERVAL_S:
            last_line = now
            log.info(
                "%(events)d events (%(events_per_s).1f/s), %(clients)d clients, %(flagged)d flagged, "
                "%(decisions)d decisions, %(dead_letters)d dead letters, %(duplicates)d duplicates dropped, "
                "%(bounded)d too long to keep whole (scored bounded), "
                "%(not_embedded)d prompts not embedded while behind, %(partitions)d partitions",
                snapshot,
            )
        if stats.misrouted > last_misrouted:
            last_misrouted = stats.misrouted
            log.warning(
                "%d events so far were not keyed by client id with Kafka's default partitioner; "
                "their client state may not follow them when partitions move", stats.misrouted,
            )  # fmt: skip
        write_status(snapshot)

    @app.on_before_shutdown.connect
    async def final_status(sender: faust.App, **kwargs: Any) -> None:
        """The status file once more when the worker stops, after its consumer has: it
        accounts for every event this worker processed, not only those of the last timer."""
        watch.stop()
        write_status(stats.snapshot())
        if metrics is not None:
            metrics.close()

    def consumer_lags(assigned: Sequence[Any]) -> dict[tuple[str, int], int]:
        """Messages between the next offset due on each assigned partition and its end, where both are known."""
        due = trail.due()
        lags = {}
        for tp in assigned:
            end = app.consumer.highwater(tp)
            if end is not None and tp in due:
                lags[(tp.topic, tp.partition)] = max(0, end - due[tp])
        return lags

    def write_status(snapshot: dict[str, Any]) -> None:
        if config.status_file is not None:
            scratch = config.status_file.with_name(config.status_file.name + ".tmp")
            scratch.write_text(json.dumps(snapshot) + "\n")
            scratch.replace(config.status_file)

    return app


def serve_metrics(address: str | None) -> MetricsServer | None:
    """The metrics server at ``address`` (``[HOST:]PORT``), started; None without one."""
    if address is None:
        return None
    host, port = parse_address(address)
    try:
        server = MetricsServer(host, port).start()
    except OSError as exc:
        raise ValueError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return server


def learn_again(stage: CampaignStage, values: Sequence[bytes]) -> int:
    """Let ``stage`` learn facts it learned once already (their verdicts dropped); one that
    fails on its own was dead-lettered the first time and is skipped. Returns how many."""
    facts = []
    for value in values:
        try:
            facts.append(decode_fact(value))
        except Exception:
            continue
    try:
        stage.process(facts)
    except Exception:
        for fact in facts:  # those learned before the failure are dropped by their event count
            try:
                stage.process([fact])
            except Exception:
                continue
    return len(facts)


async def with_retries(
    process: Callable[[Sequence[EventT]], Awaitable[None]],
    events: Sequence[EventT],
    quarantine: Callable[[Sequence[tuple[EventT, BaseException]]], Awaitable[None]],
    healthy: Callable[[], Awaitable[bool]],
) -> None:
    """Process a batch, retrying transient failures with back-off; never loop on poison.

    A batch can be redone from the start: it reads client records from the table, which is
    written last. When it keeps failing, each event is tried on its own: events that still
    fail alone, tried once more while the store answers, are poison and go to the dead
    letters with the reason; the batch then counts as done. When everything fails and the
    store does not answer, it is an outage: the batch is tried again every
    :data:`OUTAGE_RETRY_S` until it goes through, and nothing is committed meanwhile.
    """
    for attempt, delay in enumerate(RETRY_DELAYS_S, start=1):
        try:
            await process(events)
            return
        except Exception:
            log.exception("a batch of %d events failed (attempt %d); retrying in %.0f s", len(events), attempt, delay)
            await asyncio.sleep(delay)
    while True:
        failed = await _each_alone(process, events)
        if not failed:
            return
        if await healthy():
            poison = await _each_alone(process, [event for event, _ in failed])  # the store answers: try them once more
            if poison:
                await quarantine(poison)
            return
        events = [event for event, _ in failed]
        log.error("%d events fail and the store does not answer: waiting %.0f s for it to come back", len(events), OUTAGE_RETRY_S)
        await asyncio.sleep(OUTAGE_RETRY_S)


async def _each_alone(
    process: Callable[[Sequence[EventT]], Awaitable[None]], events: Sequence[EventT]
) -> list[tuple[EventT, BaseException]]:
    """Process each event on its own; the ones that failed, with their errors."""
    failed = []
    for event in events:
        try:
            await process([event])
        except Exception as exc:  # noqa: BLE001 - sorted into poison or outage by the caller
            failed.append((event, exc))
    return failed


def poison_letter(topic: str, partition: int, offset: int, value: bytes | None, exc: BaseException) -> DeadLetter:
    reason = printable(f"failed after decoding ({type(exc).__name__}: {exc})")[:1000]
    return DeadLetter(source=f"{topic}/{partition}", line=offset, reason=reason, raw=dead_letter_raw(value or b""))


def write_store(
    blocking: Blocking, events: Sequence[AccessEvent], result: BatchResult, dead_letters: list[DeadLetter], keep_prompts: bool
) -> None:
    """Events, risk scores, decisions, campaigns and dead letters of one batch to ClickHouse (on the blocking thread)."""
    store = blocking.store()
    store.insert_access_events(events, keep_prompts)
    store.insert_risk_scores(result.scores)
    store.insert_decisions(result.decisions)
    store.insert_campaigns(result.campaigns)
    store.insert_dead_letters(dead_letters)


async def publish(topic: faust.types.TopicT, messages: Sequence[tuple[bytes, bytes]]) -> None:
    """Send keyed messages and wait until the broker has acknowledged all of them."""
    pending = [await topic.send(key=key, value=value) for key, value in messages]
    if pending:
        await asyncio.gather(*pending)


async def know_changelog(app: faust.App, table: faust.types.TableT) -> None:
    """Make sure the producer knows ``table``'s changelog partitions before a write to it."""
    await know_partitions(app.producer._ensure_producer(), table.changelog_topic.get_topic_name())


async def know_partitions(producer: Any, topic: str) -> None:
    """Fetch ``topic``'s metadata into an aiokafka ``producer`` unless it has it.

    A Faust table write picks its changelog partition from the producer's metadata without
    waiting for it, and once the producer has sent anything its metadata refreshes hold only
    the topics it was asked about: a changelog topic created after that is never learned,
    and every write to the table fails with "'NoneType' object is not iterable".
    """
    await producer.partitions_for(topic)


async def drain(app: faust.App) -> None:
    """Wait until everything the app produced so far (table changelog included) is acknowledged.

    Table writes go through the producer's buffer first; ``Producer.flush`` gives up on the
    buffer after 0.1 s without progress, so flush until the buffer is empty.
    """
    producer = app.producer
    while producer.buffer.size:
        await producer.buffer.flush()
    await producer.flush()


class Reread:
    """A message the stream passed over, read straight from Kafka: processed as the stream's
    events are (the agents read only ``message``) and acknowledged to the consumer directly."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message


def acknowledge_reread(consumer: Any, message: Message) -> None:
    """Make ``message``, read straight from Kafka, committable to Faust's ``consumer`` unless
    Faust counts its offset as done already: offsets its consumer jumped over are a "gap"
    that its commits pass (``Consumer._gap``, merged into ``_acked`` as it commits; faust-streaming
    0.15), and the same offset twice in ``_acked`` moves its commits on one offset at a time."""
    if consumer._gap[message.tp].overlaps(message.offset) or message.offset in consumer._acked[message.tp]:
        return
    consumer.ack(message)


def faust_message(record: Any) -> Message:
    """A Faust message from a kafka-python ``ConsumerRecord`` (its timestamp in ms)."""
    return Message(
        record.topic, record.partition, record.offset, record.timestamp / 1000, record.timestamp_type,
        record.headers, record.key, record.value, None,
    )  # fmt: skip
