"""A client's recent request timing and request shape (sampling parameters, errors, lengths)."""

from __future__ import annotations

import numpy as np

from detectors.ring import held, room_for, stored
from schemas import AccessEvent

# Columns of the per-event shape record, in order.
SHAPE_COLUMNS = ("temp0", "logprobs", "multi_n", "error", "prompt_chars", "max_tokens", "followup")


def shape_of(event: AccessEvent) -> tuple[float, ...]:
    """The request-shape values kept for one event (NaN where the event does not say)."""
    p = event.params
    temperature = p.temperature if p else None
    return (
        float(temperature == 0.0) if temperature is not None else np.nan,
        float(p.wants_logprobs()) if p else 0.0,
        float((p.n or 1) > 1) if p else 0.0,
        float(event.status >= 400) if event.status is not None else np.nan,
        float(event.prompt_length) if event.prompt else np.nan,
        float(p.max_tokens) if p and p.max_tokens is not None else np.nan,
        float(event.turns > 0) if event.turns is not None else np.nan,
    )


class ActivityWindow:
    """Sliding window over one client's last ``size`` request times and shapes.

    >>> w = ActivityWindow(size=4)
    >>> for t in (0.0, 1.0, 2.0, 3.0, 4.0):
    ...     w.learn_one(AccessEvent(ts=1795428000 + t, client_id="k"))
    >>> w.count, w.gaps().tolist()
    (4, [1.0, 1.0, 1.0])
    """

    def __init__(self, size: int = 200) -> None:
        self.size = size
        self.times = np.zeros(0, dtype=np.float64)  # rings grow with the client's history (detectors.ring)
        self.shapes = np.full((0, len(SHAPE_COLUMNS)), np.nan, dtype=np.float32)
        self.head = 0
        self.count = 0

    def learn_one(self, event: AccessEvent) -> None:
        if self.count < self.size:
            self.times = room_for(self.times, self.count + 1, self.size, 0.0)
            self.shapes = room_for(self.shapes, self.count + 1, self.size, np.nan)
        self.times[self.head] = event.ts
        self.shapes[self.head] = shape_of(event)
        self.head = (self.head + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def gaps(self) -> np.ndarray:
        """Seconds between successive requests (sorted, since logs may arrive slightly out of order)."""
        return np.diff(np.sort(self.times[: self.count]))  # sorted, the ring's order does not matter

    def to_state(self) -> dict:
        return {
            "size": self.size, "head": self.head, "count": self.count,
            "times": stored(self.times, self.count), "shapes": stored(self.shapes, self.count),
            "columns": len(SHAPE_COLUMNS),
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> ActivityWindow:
        w = cls(size=state["size"])
        w.head, w.count = state["head"], state["count"]
        w.times = held(state["times"], np.float64, w.count, w.size)
        width = state.get("columns", 6)  # states stored before a column was added hold the first ones
        shapes = held(state["shapes"], np.float32, w.count, w.size, width)
        w.shapes = np.full((len(shapes), len(SHAPE_COLUMNS)), np.nan, dtype=np.float32)
        w.shapes[:, :width] = shapes
        return w
