"""A robust per-column scale for "how far beyond the reference" a value lies."""

from __future__ import annotations

import numpy as np


def robust_spread(X: np.ndarray, fallback: np.ndarray | float = 1.0) -> np.ndarray:
    """Per column, the interquartile range, or a tenth of the range where that is wider
    (columns that are mostly one value); ``fallback`` where both are nil.

    >>> robust_spread(np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [100.0, 5.0]])).tolist()
    [10.0, 1.0]
    """
    q25, q75 = np.percentile(X, [25, 75], axis=0)
    spread = np.maximum(q75 - q25, (X.max(axis=0) - X.min(axis=0)) / 10)
    return np.where(spread > 1e-12, spread, fallback)
