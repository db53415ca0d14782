"""Progress of long work: a tqdm bar on a terminal, and a plain line every few seconds in a log.

A bar redraws itself with carriage returns, which a log file (``make demo > demo.log``, a
CI job, ``nohup``) shows as one endless line or not at all; off a terminal each refresh is
written as a line of its own, at most one every :data:`LOG_INTERVAL_S` seconds, and the
last one when the work ends.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL_S = 15.0


class _Lines:
    """A file for tqdm that writes its refreshes as lines: the first at once, then at most one
    every ``interval`` seconds, and the latest when the bar ends (tqdm's closing newline).

    >>> import io
    >>> out = io.StringIO()
    >>> lines = _Lines(out, interval=3600)
    >>> for text in ("\\rembedding: 0 ev", "\\rembedding: 256 ev", "\\rembedding: 512 ev   ", "\\n"):
    ...     lines.write(text)
    >>> out.getvalue().splitlines()
    ['embedding: 0 ev', 'embedding: 512 ev']
    """

    def __init__(self, stream: TextIO, interval: float = LOG_INTERVAL_S) -> None:
        self.stream = stream
        self.interval = interval
        self._written_at = -float("inf")
        self._pending = ""

    def write(self, text: str) -> None:
        ends = "\n" in text
        text = text.replace("\r", "").strip()
        if text:
            self._pending = text
        now = time.monotonic()
        if self._pending and (ends or now - self._written_at >= self.interval):
            self.stream.write(self._pending + "\n")
            self._pending, self._written_at = "", now

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(quiet: bool = False, **options: Any) -> tqdm:
    """A tqdm bar on stderr (``options`` as tqdm's): drawn on a terminal, written as lines
    elsewhere (:class:`_Lines`), nothing when ``quiet``."""
    if quiet:
        return tqdm(disable=True, **options)
    if sys.stderr.isatty():
        return tqdm(**options)
    return tqdm(file=_Lines(sys.stderr), ascii=True, ncols=100, **options)
