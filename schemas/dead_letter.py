"""A record that could not be accepted, kept with the reason instead of being lost."""

from __future__ import annotations

import msgspec


class DeadLetter(msgspec.Struct):
    """``source`` names where the line came from (a file, ``-`` or a topic/partition)."""

    source: str
    line: int
    reason: str
    raw: str
