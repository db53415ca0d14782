"""Turn raw JSON lines into AccessEvents, or dead letters that say exactly what was wrong."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from schemas import AccessEvent, DeadLetter
from ingest.formats import client_id_for_key, dead_letter_raw, key_in_query, looks_like_key, without_bom
from ingest.oversize import MAX_FEATURES as DEFAULT_MAX_FEATURES
from ingest.oversize import MAX_PROMPT_CHARS as DEFAULT_MAX_PROMPT_CHARS
from ingest.oversize import SKETCH_DIM, bounded_prompt, bounded_row
from schemas.text import printable

DEFAULT_MAX_CLIENT_ID_CHARS = 256
_NON_JSON_NUMBER = re.compile(r"[\[,:]\s*-?(NaN|Infinity)\b")  # a dead letter keeps this much of the offending line


_encoder = msgspec.json.Encoder()


def _as_line(record: Mapping[str, Any]) -> bytes | str:
    """A parser's record as the JSON line a dead letter keeps (its repr, should it hold what JSON cannot)."""
    try:
        return _encoder.encode(record)
    except Exception:  # noqa: BLE001 - a dead letter must be written whatever the record holds
        return repr(record)


def _absent_if_not_finite(event: AccessEvent) -> None:
    """Optional numbers that came out infinite or NaN (a request time of 1e308 s, in ms) are
    left out, as they are when the record travels as a JSON line, which cannot hold them."""
    if event.latency_ms is not None and not math.isfinite(event.latency_ms):
        event.latency_ms = None
    if event.params is not None and event.params.temperature is not None and not math.isfinite(event.params.temperature):
        event.params.temperature = None


@dataclass(frozen=True)
class DecodeLimits:
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    max_features: int = DEFAULT_MAX_FEATURES
    max_client_id_chars: int = DEFAULT_MAX_CLIENT_ID_CHARS

    def __post_init__(self) -> None:
        if self.max_features < SKETCH_DIM:
            raise ValueError(f"max_features must be at least the sketch's {SKETCH_DIM} values")


class EventDecoder:
    """Decode canonical JSON lines; never raises on bad input.

    A prompt or feature row over the limits is bounded, not rejected (:mod:`ingest.oversize`);
    ``bounded`` counts how often, by what was done.

    >>> decoder = EventDecoder(source="example")
    >>> decoder.decode(b'{"ts": 1795428000, "client_id": "k1", "prompt": "hi"}', 1).client_id
    'k1'
    >>> decoder.decode(b'{"ts": 1795428000}', 2).reason
    'Object missing required field `client_id`'
    """

    def __init__(self, source: str, limits: DecodeLimits = DecodeLimits()) -> None:
        self.source = source
        self.limits = limits
        self._decoder = msgspec.json.Decoder(AccessEvent)
        self.bounded: dict[str, int] = {}

    def decode(self, line: bytes | str, line_no: int) -> AccessEvent | DeadLetter:
        """The event of one line, or a dead letter with the reason; raises on nothing.

        Bytes that are not UTF-8 (nginx logs request bytes as they came) are read with
        U+FFFD in their place, so one odd byte in a prompt does not lose the request.
        """
        try:
            event = self._decode(line)
        except msgspec.ValidationError as exc:
            return self._reject(line, line_no, printable(str(exc)))
        except msgspec.DecodeError as exc:
            return self._reject(line, line_no, self._explain_malformed(line, printable(str(exc))))
        except RecursionError:
            return self._reject(line, line_no, "JSON nested too deeply")
        except Exception as exc:  # noqa: BLE001 - whatever the bytes, a dead letter, never a crash
            return self._reject(line, line_no, printable(f"undecodable line ({type(exc).__name__}: {exc})"))
        return self._accepted(event, line, line_no)

    def decode_record(self, record: Mapping[str, Any], line_no: int) -> AccessEvent | DeadLetter:
        """:meth:`decode` of a record a log parser made (JSON values in a dict), the same
        checks and reasons without writing it out as JSON and reading it back; a dead letter
        keeps the record as a JSON line."""
        try:
            event = msgspec.convert(record, AccessEvent)
        except msgspec.ValidationError as exc:
            return self._reject(_as_line(record), line_no, printable(str(exc)))
        except Exception as exc:  # noqa: BLE001 - whatever the values, a dead letter, never a crash
            return self._reject(_as_line(record), line_no, printable(f"unreadable record ({type(exc).__name__}: {exc})"))
        _absent_if_not_finite(event)
        return self._accepted(event, record, line_no)

    def _accepted(self, event: AccessEvent, source: bytes | str | Mapping[str, Any], line_no: int) -> AccessEvent | DeadLetter:
        """``event`` bounded and its key hashed, or a dead letter keeping ``source`` (its line or record)."""
        problem = self._bound(event)
        if problem:
            return self._reject(source if not isinstance(source, Mapping) else _as_line(source), line_no, problem)
        if looks_like_key(event.client_id):
            event.client_id = client_id_for_key(event.client_id)
        if event.path is not None:
            event.path, _ = key_in_query(event.path)  # a key in a query string is never kept
        return event

    def _decode(self, line: bytes | str) -> AccessEvent:
        line = without_bom(line)
        try:
            return self._decoder.decode(line)
        except UnicodeDecodeError:
            return self._decoder.decode(line.decode("utf-8", errors="replace"))

    def decode_lines(self, lines: Iterable[bytes | str], first_line: int = 1) -> Iterator[AccessEvent | DeadLetter]:
        """Decode each non-blank line, numbering lines from ``first_line``."""
        for line_no, line in enumerate(lines, start=first_line):
            if line.strip():
                yield self.decode(line, line_no)

    @staticmethod
    def _explain_malformed(line: bytes | str, reason: str) -> str:
        text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        if _NON_JSON_NUMBER.search(text):
            return f"{reason}: NaN and Infinity are not JSON numbers (features must be finite)"
        return reason

    def _bound(self, event: AccessEvent) -> str | None:
        """Why the event cannot be taken (an overlong client id), or None once its prompt and row are bounded."""
        limits = self.limits
        if len(event.client_id) > limits.max_client_id_chars:
            return f"client_id has {len(event.client_id)} characters, over the limit of {limits.max_client_id_chars}"
        if event.prompt is not None:
            prompt, length, note = bounded_prompt(event.prompt, limits.max_prompt_chars)
            if length is not None:
                event.prompt, event.prompt_chars = prompt, max(length, event.prompt_chars or 0)
            self._count(note)
        if event.features is not None:
            row, dim, note = bounded_row(event.features, limits.max_features)
            if dim is not None:
                event.features, event.features_dim = row, dim
            self._count(note)
        return None

    def _count(self, what: str | None) -> None:
        if what is not None:
            self.bounded[what] = self.bounded.get(what, 0) + 1

    def _reject(self, line: bytes | str, line_no: int, reason: str) -> DeadLetter:
        return DeadLetter(source=self.source, line=line_no, reason=reason, raw=dead_letter_raw(line))
