"""Opening line sources: a file path or ``-`` for standard input."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class InputError(ValueError):
    """The input cannot be read; the message says why."""


@contextmanager
def open_lines(source: str) -> Iterator[BinaryIO]:
    """Yield a binary line iterator for ``source`` (``-`` is standard input)."""
    if source == "-":
        yield sys.stdin.buffer
        return
    path = Path(source)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if path.is_dir():
        raise InputError(f"input {path} is a directory; give a JSON-lines file (e.g. {path}/events.jsonl)")
    with path.open("rb") as handle:
        yield handle
