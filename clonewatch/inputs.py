"""Opening line sources: a file path (plain or gzip-compressed, as logrotate leaves them) or
``-`` for standard input."""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"


class InputError(ValueError):
    """The input cannot be read; the message says why."""


class Lines:
    """The lines of an input, and how far through its file the reading is.

    >>> import io
    >>> log = io.BytesIO(b"one\\ntwo\\n")
    >>> lines = Lines(log, log, size=8)
    >>> it = iter(lines)
    >>> next(it), lines.share_read()
    (b'one\\n', 0.5)
    """

    def __init__(self, lines: Iterable[bytes], handle: BinaryIO | None = None, size: int = 0) -> None:
        self._lines, self._handle, self._size = lines, handle, size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._lines)

    def share_read(self) -> float | None:
        """The share of the file's bytes read so far (of a compressed file, of its compressed
        bytes); None for a stream whose size is not known, such as a pipe."""
        if self._handle is None or self._size <= 0:
            return None
        return min(1.0, self._handle.tell() / self._size)


@contextmanager
def open_lines(source: str) -> Iterator[Lines]:
    """Yield the lines of ``source`` as bytes (``-`` is standard input). A gzip file is read
    uncompressed, whatever its name; one that ends early (a truncated or damaged file) yields
    the lines before the damage and says so on stderr."""
    if source == "-":
        yield Lines(sys.stdin.buffer)
        return
    path = Path(source)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a directory; give a JSON-lines file (e.g. {path}/events.jsonl)")
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if handle.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=handle) as unzipped:
                yield Lines(_until_damaged(unzipped, path), handle, size)
        else:
            yield Lines(handle, handle, size)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def _until_damaged(lines: Iterable[bytes], path: Path) -> Iterator[bytes]:
    count = 0
    try:
        for line in lines:
            count += 1
            yield line
    except (EOFError, OSError, zlib.error) as exc:
        print(f"clonewatch: warning: {path} is compressed and ends early after {count:,} lines ({exc}); the lines before were read", file=sys.stderr)
