"""A client's recent query vectors and how each new one relates to the earlier ones."""

from __future__ import annotations

import numpy as np

from detectors.ring import held, room_for, stored


HALF_MAX = float(np.finfo(np.float16).max)


def widened(rows: np.ndarray) -> np.ndarray:
    """float16 ``rows`` as float32, exactly (torch converts with the CPU's half-precision
    instructions, about six times as fast as numpy's ``astype``; imported here, so that what
    reads a state without scoring it, the shipper among them, does not start torch)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rows)).float().numpy()


def half_precision(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to float16 values (clipped to its range), as float32."""
    return np.clip(x, -HALF_MAX, HALF_MAX).astype(np.float16).astype(np.float32)


class GeometryWindow:
    """Sliding window over one client's projected query vectors in one space.

    For every new vector it records the distance to the nearest earlier vector in the
    window (boundary probing, PRADA) and to the previous vector (perturbation chains),
    and keeps running sums so that the mean pairwise squared distance is O(dim).

    Vectors are kept at half precision, in memory and at rest (float16; each distance is
    computed in float32, into which every float16 value converts exactly): they are most of
    a client's state, and a relative error of 5e-4 is far below any distance the
    features tell apart (the near-duplicate radius is a few percent of the reference's
    spread); a verbatim repeat is still at distance 0, since both copies round alike.
    Values beyond half precision's range (a numeric query millions of spreads past the
    reference's edge) are held at its largest value: still far beyond any customer's.

    >>> w = GeometryWindow(dim=2, size=3)
    >>> for v in ([0, 0], [1, 0], [1, 0.1], [5, 5]):
    ...     w.learn_one(np.array(v, dtype=np.float32), region=0)
    >>> w.count, round(float(w.nearest[-1]), 2), round(float(w.steps[-1]), 2)
    (3, 6.33, 6.33)
    """

    def __init__(self, dim: int, size: int = 200) -> None:
        self.dim = dim
        self.size = size
        self.vectors = np.zeros((0, dim), dtype=np.float16)  # rings grow with the client's history (detectors.ring)
        self.regions = np.zeros(0, dtype=np.int16)
        self.nearest_ring = np.full(0, np.nan, dtype=np.float32)
        self.step_ring = np.full(0, np.nan, dtype=np.float32)
        self.novelty_ring = np.zeros(0, dtype=np.float32)
        self.head = 0  # next slot to write
        self.count = 0  # vectors in the window
        self.total = 0  # vectors ever learned
        self.sum = np.zeros(dim, dtype=np.float64)
        self.sum_sq = 0.0

    def learn_one(self, vector: np.ndarray, region: int, novelty: float = 0.0) -> None:
        if self.count < self.size:
            rows = self.count + 1
            self.vectors = room_for(self.vectors, rows, self.size, 0.0)
            self.regions = room_for(self.regions, rows, self.size, 0)
            self.nearest_ring = room_for(self.nearest_ring, rows, self.size, np.nan)
            self.step_ring = room_for(self.step_ring, rows, self.size, np.nan)
            self.novelty_ring = room_for(self.novelty_ring, rows, self.size, 0.0)
        vector = half_precision(vector)
        if self.count:
            earlier = widened(self.vectors[: self.count])
            d = np.sqrt(np.maximum(((earlier - vector) ** 2).sum(axis=1), 0.0))
            if self.count == self.size:
                d[self.head] = np.inf  # the oldest vector, about to leave the window
            self.nearest_ring[self.head] = d.min()
            self.step_ring[self.head] = d[(self.head - 1) % self.size]
        else:
            self.nearest_ring[self.head] = np.nan
            self.step_ring[self.head] = np.nan
        if self.count == self.size:
            old = self.vectors[self.head].astype(np.float64)
            self.sum -= old
            self.sum_sq -= float(old @ old)
        v64 = vector.astype(np.float64)
        self.sum += v64
        self.sum_sq += float(v64 @ v64)
        self.vectors[self.head] = vector
        self.regions[self.head] = region
        self.novelty_ring[self.head] = novelty
        self.head = (self.head + 1) % self.size
        self.count = min(self.count + 1, self.size)
        self.total += 1

    def _in_order(self, ring: np.ndarray) -> np.ndarray:
        if self.count < self.size:
            return ring[: self.count]
        return np.concatenate([ring[self.head :], ring[: self.head]])

    @property
    def nearest(self) -> np.ndarray:
        """Distance of each windowed vector to the nearest one before it (oldest first; NaN for the first)."""
        return self._in_order(self.nearest_ring)

    @property
    def steps(self) -> np.ndarray:
        """Distance of each windowed vector to the one just before it."""
        return self._in_order(self.step_ring)

    @property
    def window_regions(self) -> np.ndarray:
        return self.regions[: self.count]

    @property
    def novelties(self) -> np.ndarray:
        """Novelty of each windowed vector against the reference (see SpaceReference.novelty)."""
        return self.novelty_ring[: self.count]

    def mean_pairwise_sq_distance(self) -> float:
        """Mean squared distance between two distinct vectors of the window."""
        n = self.count
        if n < 2:
            return float("nan")
        spread = self.sum_sq / n - float(self.sum @ self.sum) / n**2
        return max(0.0, 2.0 * spread * n / (n - 1))

    def to_state(self) -> dict:
        return {
            "dim": self.dim, "size": self.size, "head": self.head, "count": self.count, "total": self.total,
            "vectors16": stored(self.vectors, self.count), "regions": stored(self.regions, self.count),
            "nearest": stored(self.nearest_ring, self.count), "steps": stored(self.step_ring, self.count),
            "novelty": stored(self.novelty_ring, self.count), "sum": self.sum.tobytes(), "sum_sq": self.sum_sq,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> GeometryWindow:
        w = cls(dim=state["dim"], size=state["size"])
        w.head, w.count, w.total, w.sum_sq = state["head"], state["count"], state["total"], state["sum_sq"]
        if "vectors16" in state:
            w.vectors = held(state["vectors16"], np.float16, w.count, w.size, w.dim)
        else:  # stored at full precision by earlier versions: rounded as this one learns them
            w.vectors = half_precision(held(state["vectors"], np.float32, w.count, w.size, w.dim)).astype(np.float16)
        w.regions = held(state["regions"], np.int16, w.count, w.size)
        w.nearest_ring = held(state["nearest"], np.float32, w.count, w.size)
        w.step_ring = held(state["steps"], np.float32, w.count, w.size)
        w.novelty_ring = held(state["novelty"], np.float32, w.count, w.size)
        w.sum[:] = np.frombuffer(state["sum"], dtype=np.float64)
        return w
