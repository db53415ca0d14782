"""Timestamps at the edges: RFC 3339 strings or epoch seconds in, epoch seconds inside."""

from __future__ import annotations

import math
from datetime import datetime, timezone

# Epoch seconds outside this range are almost certainly milliseconds or garbage.
_MIN_EPOCH = 0.0
_MAX_EPOCH = 4102444800.0  # 2100-01-01


def to_epoch(value: str | int | float) -> float:
    """Parse an RFC 3339 string or epoch seconds into epoch seconds (UTC).

    >>> to_epoch("2026-11-23T10:00:00Z")
    1795428000.0
    >>> to_epoch(1795428000)
    1795428000.0
    >>> to_epoch("0999-01-01T00:00:00Z")
    Traceback (most recent call last):
    ...
    ValueError: ts '0999-01-01T00:00:00Z' is outside 1970-2100
    """
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"ts must be an RFC 3339 string or epoch seconds, not {type(value).__name__}")
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds) or not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
            raise ValueError(f"ts {value!r} is not plausible epoch seconds")
        return seconds
    if len(value) > 64:
        raise ValueError(f"ts {value[:64]!r}... is not an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts {value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    seconds = parsed.timestamp()
    if not _MIN_EPOCH <= seconds <= _MAX_EPOCH:
        raise ValueError(f"ts {value!r} is outside 1970-2100")
    return seconds


def to_rfc3339(epoch: float) -> str:
    """Format epoch seconds as an RFC 3339 UTC string with milliseconds.

    >>> to_rfc3339(1795428000.5)
    '2026-11-23T10:00:00.500Z'
    """
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
