"""Turn raw anomaly scores into "more anomalous than this share of benign clients"."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class TailCalibrator:
    """Empirical CDF of reference scores with an exponential upper tail.

    Inside the bulk, ``transform`` is the share of reference scores below the score.
    Above the ``1 - tail_fraction`` quantile it follows a peaks-over-threshold
    exponential fit of the reference tail, so scores beyond anything seen in the
    reference still rank (0.999, 0.9999, ...) instead of all saturating at 1 - 1/n.

    >>> scores = np.random.default_rng(0).exponential(size=10_000)
    >>> cal = TailCalibrator().fit(scores)
    >>> [round(float(r), 3) for r in cal.transform(np.log([2, 100, 10_000]))]
    [0.507, 0.99, 1.0]
    """

    def __init__(self, tail_fraction: float = 0.1) -> None:
        self.tail_fraction = tail_fraction

    def fit(self, scores: np.ndarray) -> TailCalibrator:
        s = np.sort(np.asarray(scores, dtype=np.float64))
        if len(s) < 2:
            raise ValueError("need at least 2 reference scores to calibrate")
        self.reference_ = s
        self.threshold_ = float(np.quantile(s, 1.0 - self.tail_fraction))
        excess = s[s > self.threshold_] - self.threshold_
        spread = float(s[-1] - s[0]) or 1.0
        self.tail_scale_ = float(excess.mean()) if len(excess) and excess.mean() > 0 else spread / len(s)
        self.tail_mass_ = float((s > self.threshold_).mean()) or 1.0 / len(s)
        return self

    def transform(self, scores) -> np.ndarray:
        x = np.asarray(scores, dtype=np.float64)
        below = np.searchsorted(self.reference_, x, side="left")
        equal = np.searchsorted(self.reference_, x, side="right") - below
        ecdf = (below + 0.5 * equal) / len(self.reference_)
        tail = 1.0 - self.tail_mass_ * np.exp(-(x - self.threshold_) / self.tail_scale_)
        return np.clip(np.where(x > self.threshold_, tail, ecdf), 0.0, 1.0)


def sustained_peaks(
    scores: np.ndarray, clients: Sequence[str], events_seen: np.ndarray, min_events: int = 1, sustain: int = 1
) -> dict[str, float]:
    """Per client, the highest score it held for ``sustain`` successive events, counting from ``min_events``.

    A client is scored after every event, so a threshold is tried many times over a
    client's life; this is the statistic a threshold is really compared with, once a
    policy waits for ``min_events`` and needs ``sustain`` confirming events. Rows are in
    arrival order. Clients that never reach ``min_events + sustain - 1`` events are left out.

    >>> peaks = sustained_peaks(np.array([5.0, 1, 2, 3, 9, 1]), ["a", "a", "a", "a", "a", "b"], np.array([1, 2, 3, 4, 5, 1]), 2, 2)
    >>> peaks
    {'a': 3.0}
    """
    scores = np.asarray(scores, dtype=np.float64)
    by_client: dict[str, list[int]] = {}
    for i, client in enumerate(clients):
        by_client.setdefault(client, []).append(i)
    peaks = {}
    for client, rows in by_client.items():
        rows = [i for i in rows if events_seen[i] >= min_events]
        if len(rows) < sustain:
            continue
        held = np.lib.stride_tricks.sliding_window_view(scores[rows], sustain).min(axis=1)
        peaks[client] = float(held.max())
    return peaks
