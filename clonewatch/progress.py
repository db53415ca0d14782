"""Progress of long work: a tqdm bar on a terminal, and a plain line every few seconds in a log.

A bar redraws itself with carriage returns, which a log file (``make demo > demo.log``, a
CI job, ``nohup``) shows as one endless line or not at all; off a terminal each refresh is
written as a line of its own, at most one every :data:`LOG_INTERVAL_S` seconds, and the
last one when the work ends.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from clonewatch.inputs import Lines

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


def time_left(share_done: float | None, elapsed_s: float) -> str | None:
    """What is left of work of which ``share_done`` took ``elapsed_s``, as a reader says it.

    >>> time_left(0.25, 30.0), time_left(0.5, 600.0), time_left(0.001, 1.0), time_left(1.0, 5.0), time_left(None, 5.0)
    ('about 2 min left', 'about 10 min left', None, None, None)
    """
    if share_done is None or not 0.01 <= share_done < 1.0 or elapsed_s <= 0:
        return None
    left = elapsed_s * (1.0 - share_done) / share_done
    if left < 60:
        return "under a minute left"
    if left < 5400:
        return f"about {left / 60:.0f} min left"
    return f"about {left / 3600:.1f} h left"


def how_far(lines: Lines, started: float) -> list[str]:
    """How far through its input a reading of ``lines`` (:class:`clonewatch.inputs.Lines`)
    begun at ``started`` (``time.monotonic()``) is, and the time left: nothing for a pipe.

    >>> from clonewatch.inputs import Lines
    >>> import io
    >>> log = io.BytesIO(b"x" * 100)
    >>> _ = log.read(40)
    >>> how_far(Lines(log, log, size=100), time.monotonic() - 60)
    ['40% of the input', 'about 2 min left']
    """
    share = lines.share_read()
    if share is None:
        return []
    left = time_left(share, time.monotonic() - started)
    return [f"{share:.0%} of the input", *([left] if left else [])]


def progress_bar(quiet: bool = False, **options: Any) -> tqdm:
    """A tqdm bar on stderr (``options`` as tqdm's): drawn on a terminal, written as lines
    elsewhere (:class:`_Lines`), nothing when ``quiet``."""
    if quiet:
        return tqdm(disable=True, **options)
    if sys.stderr.isatty():
        return tqdm(**options)
    return tqdm(file=_Lines(sys.stderr), ascii=True, ncols=100, **options)
