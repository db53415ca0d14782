"""Lines of any supported format in, validated events or dead letters out: the embedded runner's input."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from ingest.containers import UNFINISHED, ContainerLines
from ingest.decode import DecodeLimits, EventDecoder
from ingest.formats import CustomFormat, FormatError, LineParser, dead_letter_raw
from schemas import AccessEvent, DeadLetter
from schemas.text import printable


class EventReader:
    """Lines of one source in, events (a batched or multi-instance line gives several) or dead
    letters with the line number and the reason out. Raises on nothing.

    Canonical lines go straight to the decoder; other formats through their parser first
    (``auto``: the format the first lines show). Lines a container runtime wrapped are
    unwrapped first (:class:`ingest.containers.ContainerLines`). A record without a request id gets one
    from the source and line, the same on a rerun.

    >>> lines = [b'{"msec":"1795428000.125","http_x_api_key":"sk-live-4f9a8b7c","status":"200"}', b'{oops']
    >>> reader = EventReader("access.log")
    >>> [type(r).__name__ for r in reader.read(lines)], reader.format
    (['AccessEvent', 'DeadLetter'], 'nginx')
    """

    def __init__(self, source: str, fmt: str | CustomFormat = "auto", limits: DecodeLimits = DecodeLimits()) -> None:
        self.source = source
        self._decoder = EventDecoder(source=source, limits=limits)
        self._parser = LineParser(fmt)
        self._containers = ContainerLines()

    @property
    def format(self) -> str | None:
        return self._parser.format

    @property
    def bounded(self) -> dict[str, int]:
        """How many prompts and feature rows were too long to keep whole, by what was done (:mod:`ingest.oversize`)."""
        return self._decoder.bounded

    def read(self, lines: Iterable[bytes | str]) -> Iterator[AccessEvent | DeadLetter]:
        number = 0
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield from self.read_line(line, number)
        if self._containers.pending:
            yield DeadLetter(
                source=self.source, line=number, reason=UNFINISHED,
                raw=dead_letter_raw(self._containers.drop()),
            )  # fmt: skip

    def read_line(self, line: bytes | str, number: int) -> Iterator[AccessEvent | DeadLetter]:
        try:
            line = self._containers.unwrap(line)  # Kubernetes' or Docker's wrapper, partial lines joined
        except FormatError as exc:
            yield DeadLetter(source=self.source, line=number, reason=printable(str(exc)), raw=dead_letter_raw(line))
            return
        if line is None:
            return
        if self._parser.decided and self._parser.format == "canonical":  # nothing to convert: the decoder alone
            yield self._decoder.decode(line, number)
            return
        try:
            records = self._parser.parse(line, time=self._containers.time)
        except FormatError as exc:
            if self._parser.format == "canonical" or (self._parser.format is None and _opens_an_object(line)):
                yield self._decoder.decode(line, number)  # its reasons are the more precise
                return
            yield DeadLetter(source=self.source, line=number, reason=printable(str(exc)), raw=dead_letter_raw(line))
            return
        if self._parser.format == "canonical":  # validated by the decoder itself, with its own reasons
            yield self._decoder.decode(line, number)
            return
        for i, record in enumerate(records):
            if not record.get("request_id"):
                stable = hashlib.sha256(f"{self.source}:{number}".encode()).hexdigest()[:16]
                record["request_id"] = stable if len(records) == 1 else f"{stable}#{i}"
            yield self._decoder.decode_record(record, number)


def _opens_an_object(line: bytes | str) -> bool:
    return line.lstrip()[:1] in (b"{", "{")
