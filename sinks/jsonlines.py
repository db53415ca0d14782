"""Append-only JSON-lines files for decisions and dead letters."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO

import msgspec


class JsonLinesWriter:
    """Appends msgspec records as one JSON object per line, flushed after every write.

    Opened lazily, so a run that has nothing to write leaves no empty file behind, unless
    ``create``: then the file exists from the start (empty means "nothing happened").
    """

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        self.count = 0
        self._file: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder()
        if create:
            self._open()

    def write(self, records: Iterable[msgspec.Struct]) -> int:
        lines = [self._encoder.encode(r) + b"\n" for r in records]
        if lines:
            if self._file is None:
                self._open()
            self._file.write(b"".join(lines))
            self._file.flush()
            self.count += len(lines)
        return len(lines)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
