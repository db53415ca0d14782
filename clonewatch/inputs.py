"""Opening line sources: a file path (plain or gzip-compressed, as logrotate leaves them) or
``-`` for standard input."""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"


class InputError(ValueError):
    """The input cannot be read; the message says why."""


@contextmanager
def open_lines(source: str) -> Iterator[Iterable[bytes]]:
    """Yield the lines of ``source`` as bytes (``-`` is standard input). A gzip file is read
    uncompressed, whatever its name; one that ends early (a truncated or damaged file) yields
    the lines before the damage and says so on stderr."""
    if source == "-":
        yield sys.stdin.buffer
        return
    path = Path(source)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a directory; give a JSON-lines file (e.g. {path}/events.jsonl)")
    with path.open("rb") as handle:
        if handle.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=handle) as unzipped:
                yield _until_damaged(unzipped, path)
        else:
            yield handle


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
