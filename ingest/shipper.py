"""Ship gateway log lines to the access topic: tail a file (or read stdin), convert, produce.

At-least-once, with back-pressure: lines are read in bounded batches; each batch is
produced (``acks=all``, key = client id) and flushed, and only when the broker has
acknowledged all of it is the file offset after it checkpointed (an atomic write of a
small JSON file). A shipper killed at any point and restarted on the same file resumes
at the checkpoint, so it may send the lines of one batch again but loses none; the
workers drop the repeats by ``request_id``. A line without a request_id gets a stable one
from the file's identity and the line's byte offset, the same on every re-send.

File identity is a fingerprint of its first line (as Filebeat does), so a rotated or
truncated file is recognised as new even when the file system reuses inodes. While
following, the shipper notices rotation (the path now names another inode: it finishes
the old file, then starts the new one at offset 0) and truncation (the file is shorter
than the offset: it starts again at 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import select
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

import msgspec
from kafka import KafkaProducer
from kafka.errors import KafkaError

from ingest.containers import UNFINISHED, ContainerLines
from ingest.formats import CustomFormat, FormatError, LineParser, dead_letter_raw
from ingest.oversize import bound_record
from schemas.text import printable
from schemas import DeadLetter

log = logging.getLogger("clonewatch.ship")

_FINGERPRINT_BYTES = 1024
_encoder = msgspec.json.Encoder()


class Line(NamedTuple):
    offset: int  # byte offset of the line's first byte in its source
    number: int  # 1-based line number in its source
    data: bytes


class LineSource(Protocol):
    """Where lines come from: a followed file or standard input."""

    name: str

    def read_lines(self, limit: int, *, final: bool = False) -> list[Line]:
        """Up to ``limit`` complete lines available now (never blocks long); with ``final``,
        an unterminated last line too."""

    def request_id(self, line: Line) -> str:
        """A request id for a line that has none, the same every time this line is read."""


class _Buffer:
    """Splits bytes into lines, tracking the byte offset and number of the next line."""

    def __init__(self, offset: int = 0, number: int = 0) -> None:
        self.data = bytearray()
        self.offset = offset  # offset of data[0] in the source
        self.number = number  # lines taken so far

    def take_lines(self, limit: int, final: bool) -> list[Line]:
        lines: list[Line] = []
        start = 0
        while len(lines) < limit:
            end = self.data.find(b"\n", start)
            if end < 0:
                if final and start < len(self.data):
                    end = len(self.data) - 1
                else:
                    break
            self.number += 1
            lines.append(Line(self.offset + start, self.number, bytes(self.data[start : end + 1])))
            start = end + 1
        del self.data[:start]
        self.offset += start
        return lines


@dataclass(frozen=True)
class Checkpoint:
    """Where shipping a file stands: everything before ``offset`` is acknowledged by Kafka."""

    fingerprint: str
    offset: int
    line: int

    def save(self, path: Path) -> None:
        """Atomic: write a temporary file next to ``path``, fsync, rename over it."""
        scratch = path.with_name(path.name + ".tmp")
        with scratch.open("w") as handle:
            json.dump({"fingerprint": self.fingerprint, "offset": self.offset, "line": self.line}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        scratch.replace(path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            raw = json.loads(path.read_text())
            return cls(str(raw["fingerprint"]), int(raw["offset"]), int(raw["line"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"checkpoint {path} is damaged ({exc}); delete it to ship {path.name} from the start") from None


def default_checkpoint_path(path: Path) -> Path:
    return path.with_name(path.name + ".clonewatch-offset")


class FileSource:
    """A log file followed across rotation and truncation, resumed from a checkpoint."""

    def __init__(self, path: Path, checkpoint: Checkpoint | None = None, chunk_size: int = 1 << 20) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.chunk_size = chunk_size
        self._file: BinaryIO = self.path.open("rb")
        self._fingerprint: str | None = None
        self._buffer = _Buffer()
        if checkpoint is not None:
            size = os.fstat(self._file.fileno()).st_size
            if self.fingerprint() == checkpoint.fingerprint and size >= checkpoint.offset:
                self._file.seek(checkpoint.offset)
                self._buffer = _Buffer(checkpoint.offset, checkpoint.line)
            else:
                log.warning("%s is not the file of the checkpoint (rotated or truncated meanwhile); shipping it from the start", self.path)

    def fingerprint(self) -> str:
        """Hash of the file's first line (or of its first bytes while that line is longer)."""
        if self._fingerprint is None:
            head = os.pread(self._file.fileno(), _FINGERPRINT_BYTES, 0)
            newline = head.find(b"\n")
            complete = newline >= 0 or len(head) == _FINGERPRINT_BYTES
            head = head[: newline + 1] if newline >= 0 else head
            digest = hashlib.blake2b(head, digest_size=8).hexdigest()
            if not complete:  # the first line is still being written: do not remember yet
                return digest
            self._fingerprint = digest
        return self._fingerprint

    def checkpoint(self) -> Checkpoint:
        """Position after the lines returned so far."""
        return Checkpoint(self.fingerprint(), self._buffer.offset, self._buffer.number)

    def read_lines(self, limit: int, *, final: bool = False) -> list[Line]:
        while self._buffer.data.count(b"\n") < limit:
            chunk = self._file.read(self.chunk_size)
            if not chunk:
                break
            self._buffer.data += chunk
        return self._buffer.take_lines(limit, final)

    def request_id(self, line: Line) -> str:
        return f"{self.fingerprint()}-{line.offset}"

    def replaced(self) -> str | None:
        """``"rotated"`` or ``"truncated"`` if the path no longer holds what is being read."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return None  # rotated away, the new file is not there yet: keep reading the old one
        current = os.fstat(self._file.fileno())
        if (on_disk.st_dev, on_disk.st_ino) != (current.st_dev, current.st_ino):
            return "rotated"
        if on_disk.st_size < self._buffer.offset + len(self._buffer.data):
            return "truncated"
        return None

    def reopen(self) -> None:
        """Start over at offset 0 of whatever the path names now."""
        self._file.close()
        self._file = self.path.open("rb")
        self._fingerprint = None
        self._buffer = _Buffer()

    def close(self) -> None:
        self._file.close()


class StreamSource:
    """Standard input (or any pipe): read what is available, never resumable.

    Request ids are unique to this run (``stdin-<run>-<offset>``): a stream has no identity
    that a later run could recognise.
    """

    def __init__(self, stream: BinaryIO, name: str = "-", chunk_size: int = 1 << 16) -> None:
        self.name = name
        self._fd = stream.fileno()
        self._run = uuid.uuid4().hex[:12]
        self._buffer = _Buffer()
        self.chunk_size = chunk_size
        self.eof = False

    def read_lines(self, limit: int, *, final: bool = False) -> list[Line]:
        while not self.eof and self._buffer.data.count(b"\n") < limit:
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if not ready:
                break
            chunk = os.read(self._fd, self.chunk_size)
            if not chunk:
                self.eof = True
            self._buffer.data += chunk
        return self._buffer.take_lines(limit, final or self.eof)

    def request_id(self, line: Line) -> str:
        return f"stdin-{self._run}-{line.offset}"


@dataclass
class ShipStats:
    lines: int = 0
    records: int = 0
    dead_letters: int = 0
    retries: int = 0
    bounded: int = 0  # records whose prompt or feature row was too long to ship whole (ingest.oversize)


class Shipper:
    """Converts lines with a format's parser and produces them in acknowledged batches."""

    def __init__(
        self,
        producer: KafkaProducer,
        fmt: str | CustomFormat,
        access_topic: str,
        dead_letter_topic: str,
        flush_timeout_s: float = 120.0,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        self.producer = producer
        self.fmt = fmt
        self._parsers: dict[str, LineParser] = {}  # per source: --format auto decides per file
        self._containers: dict[str, ContainerLines] = {}  # per source: a split line's parts so far
        self._split_from: dict[str, Line] = {}  # per source: the first part of a split line not yet whole
        self.access_topic = access_topic
        self.dead_letter_topic = dead_letter_topic
        self.flush_timeout_s = flush_timeout_s
        self.max_message_bytes = max_message_bytes
        self.stats = ShipStats()

    def end(self, source: LineSource, last: int) -> list[tuple[str, bytes, bytes]]:
        """End a source's input after its line number ``last``: a line the container runtime
        split whose last part never came is a dead letter, and --format auto guesses again for
        the source's next lines (each pushed batch is read on its own: one receiver may hear
        several kinds of gateway)."""
        self._parsers.pop(source.name, None)
        self._split_from.pop(source.name, None)
        containers = self._containers.pop(source.name, None)
        if containers is None or not containers.pending:
            return []
        return [self._dead_letter(source, Line(0, last, containers.drop()), UNFINISHED)]

    def messages(self, source: LineSource, line: Line) -> Iterator[tuple[str, bytes, bytes]]:
        """(topic, key, value) of each record of a line, or of its dead letter."""
        if not line.data.strip():
            return
        try:
            if source.name not in self._parsers:  # made once per source: a parser reads the environment's settings
                self._parsers[source.name], self._containers[source.name] = LineParser(self.fmt), ContainerLines()
            try:
                data = self._containers[source.name].unwrap(line.data)
            finally:
                if self._containers[source.name].pending:
                    self._split_from.setdefault(source.name, line)
                else:
                    self._split_from.pop(source.name, None)
            if data is None:
                return  # the first parts of a line the container runtime split: shipped with its last
            records = self._parsers[source.name].parse(data, time=self._containers[source.name].time)
        except FormatError as exc:
            yield self._dead_letter(source, line, str(exc))
            return
        base_id = source.request_id(line)
        out = []
        for i, record in enumerate(records):
            if not record.get("request_id"):
                record["request_id"] = base_id if len(records) == 1 else f"{base_id}#{i}"
            self.stats.bounded += bool(bound_record(record))
            value = _encoder.encode(record)
            if len(value) > self.max_message_bytes:
                yield self._dead_letter(source, line, f"record of {len(value)} bytes exceeds the {self.max_message_bytes}-byte message limit")
                return
            out.append((self.access_topic, str(record["client_id"]).encode(), value))
        yield from out

    def resume_point(self, source: FileSource) -> Checkpoint:
        """Where a restart must read ``source`` again from: after the lines shipped, or at the
        first part of a line the container runtime split whose last part has not come yet (its
        parts are held in memory, and a restart would otherwise lose them)."""
        shipped = source.checkpoint()
        first = self._split_from.get(source.name)
        return shipped if first is None else Checkpoint(shipped.fingerprint, first.offset, first.number - 1)

    def restart(self, source: LineSource) -> None:
        """Read ``source`` from its start again (a rotated or truncated file): its parts of a split line continue there."""
        self._split_from.pop(source.name, None)

    def ship_batch(self, source: LineSource, lines: list[Line], end_after: int | None = None) -> None:
        """Produce every record of ``lines`` and return once the broker acknowledged all of them;
        ``end_after``: the source's input ends after that line number (:meth:`end`), as a pushed
        batch does, or a file or standard input at its end.

        Failed sends (broker away longer than the producer's own retries) are re-sent with
        the whole batch after a pause, until they succeed: repeats carry the same request ids.
        """
        messages = [m for line in lines for m in self.messages(source, line)]
        if end_after is not None:
            messages += self.end(source, end_after)
        delay = 0.5
        while True:
            try:
                futures = [self.producer.send(topic, key=key, value=value) for topic, key, value in messages]
                self.producer.flush(timeout=self.flush_timeout_s)
                for future in futures:
                    future.get(timeout=0)  # raises the send's error, if any
                break
            except KafkaError as exc:
                self.stats.retries += 1
                log.warning("Kafka did not acknowledge a batch of %d messages (%s); sending it again in %.1f s", len(messages), exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.stats.lines += len(lines)
        for topic, _, _ in messages:
            if topic == self.access_topic:
                self.stats.records += 1
            else:
                self.stats.dead_letters += 1

    def _dead_letter(self, source: LineSource, line: Line, reason: str) -> tuple[str, bytes, bytes]:
        letter = DeadLetter(source=source.name, line=line.number, reason=printable(reason), raw=dead_letter_raw(line.data))
        return self.dead_letter_topic, source.name.encode(), _encoder.encode(letter)


def make_producer(bootstrap: str, **security: Any) -> KafkaProducer:
    """A producer for at-least-once shipping: acks from all replicas, idempotent, small linger.
    ``security``: kafka-python's authentication settings (``KafkaAuth.client_kwargs()``)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        **security,
        client_id="clonewatch-shipper",
        acks="all",
        linger_ms=5,
        batch_size=128 * 1024,
        max_in_flight_requests_per_connection=5,
        reconnect_backoff_max_ms=2000,
    )


def follow(
    shipper: Shipper,
    source: LineSource,
    *,
    batch_lines: int = 2000,
    once: bool = False,
    poll_s: float = 0.25,
    on_acked: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
    log_interval_s: float = 10.0,
) -> ShipStats:
    """Ship until the source ends (stdin EOF, or file EOF with ``once``) or ``should_stop()``.

    ``on_acked`` runs after every acknowledged batch (the file shipper checkpoints there).
    """
    last_log, last_line = time.monotonic(), 0
    while not should_stop():
        at_end = isinstance(source, StreamSource) and source.eof
        lines = source.read_lines(batch_lines, final=once or at_end)
        if lines:
            shipper.ship_batch(source, lines)
            last_line = lines[-1].number
            on_acked()
        elif at_end or (once and isinstance(source, FileSource)):
            shipper.ship_batch(source, [], end_after=last_line)  # a split line whose last part never came: a dead letter
            on_acked()
            break
        elif isinstance(source, FileSource):
            change = source.replaced()
            if change is not None:
                while change == "rotated" and (rest := source.read_lines(batch_lines, final=True)):
                    shipper.ship_batch(source, rest)  # the old file's last lines
                    on_acked()
                log.info("%s was %s; shipping the new file from the start", source.name, change)
                source.reopen()
                shipper.restart(source)
                on_acked()
            else:
                time.sleep(poll_s)
        if time.monotonic() - last_log >= log_interval_s:
            last_log = time.monotonic()
            stats = shipper.stats
            log.info("%d lines shipped: %d records, %d dead letters", stats.lines, stats.records, stats.dead_letters)
    return shipper.stats


def ship_file(
    shipper: Shipper,
    path: Path,
    checkpoint_path: Path | None = None,
    *,
    once: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    poll_s: float = 0.25,
    **options,
) -> ShipStats:
    """Ship a file from its checkpoint, checkpointing after every acknowledged batch.

    Following (not ``once``), a file that does not exist yet is waited for.
    """
    checkpoint_path = checkpoint_path or default_checkpoint_path(path)
    if not path.exists():
        if once:
            raise FileNotFoundError(f"log file {path} does not exist")
        log.info("waiting for %s to appear", path)
        while not path.exists():
            if should_stop():
                return shipper.stats
            time.sleep(poll_s)
    source = FileSource(path, Checkpoint.load(checkpoint_path))
    try:
        return follow(
            shipper, source, once=once, should_stop=should_stop, poll_s=poll_s,
            on_acked=lambda: shipper.resume_point(source).save(checkpoint_path), **options,
        )  # fmt: skip
    finally:
        source.close()


def ship_stream(shipper: Shipper, stream: BinaryIO, **options) -> ShipStats:
    """Ship standard input (or a pipe) until it ends."""
    return follow(shipper, StreamSource(stream), **options)
