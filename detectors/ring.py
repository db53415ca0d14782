"""Ring buffers that grow with a client's history instead of being allocated whole.

Most clients send a handful of requests; a window of 200 vectors allocated up front would
cost every one of them as much as the busiest. A window's rings start small and double as
its first ``size`` events arrive. Until a ring is full its next slot is its count, so
growing is a copy into a longer array; once full it wraps as before.

>>> ring = np.zeros(0, dtype=np.float32)
>>> for count in range(5):
...     ring = room_for(ring, count + 1, size=6, fill=np.nan)
...     ring[count] = count
>>> ring.tolist()
[0.0, 1.0, 2.0, 3.0, 4.0, nan]
"""

from __future__ import annotations

import numpy as np


def room_for(ring: np.ndarray, rows: int, size: int, fill: float) -> np.ndarray:
    """``ring`` if it has ``rows`` rows, else a copy with twice as many (at most ``size``), new rows ``fill``."""
    if len(ring) >= rows:
        return ring
    grown = np.full((min(size, max(rows, 2 * len(ring), 8)), *ring.shape[1:]), fill, dtype=ring.dtype)
    grown[: len(ring)] = ring
    return grown


def held(data: bytes, dtype: type, count: int, size: int, width: int | None = None) -> np.ndarray:
    """A stored ring's rows in use, as a writable array.

    Rings are stored with their ``count`` rows, or whole once full; rings stored whole by
    earlier versions (rows past ``count`` unused) read the same.
    """
    rows = np.frombuffer(data, dtype=dtype)
    if width is not None:
        rows = rows.reshape(-1, width)
    return rows[: count if count < size else size].copy()


def stored(ring: np.ndarray, count: int) -> bytes:
    """The rows of a ring in use, for storage."""
    return ring[:count].tobytes()
