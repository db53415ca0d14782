"""k-nearest-neighbor distances, the one brute-force search the detectors share, and the sample of
reference rows it searches."""

from __future__ import annotations

import numpy as np
import torch


class NeighborIndex:
    """Reference rows ready for :func:`kth_nearest_distance`: as a float64 tensor with their
    squared norms, made once instead of on every search. Not saved with a model: owners
    make it on first use.

    >>> index = NeighborIndex(np.array([[0.0], [1.0], [3.0]]))
    >>> kth_nearest_distance(np.array([[0.0]]), index, 2).tolist()
    [1.0]
    """

    def __init__(self, reference: np.ndarray) -> None:
        self.source = reference
        self.rows = torch.from_numpy(np.array(reference, dtype=np.float64, order="C"))
        self.squared_norms = (self.rows * self.rows).sum(dim=1)[None, :]

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def kept_on(cls, owner: object, reference: np.ndarray) -> NeighborIndex:
        """The index of ``reference``, kept on ``owner`` as ``_neighbor_index`` (which the owner
        leaves out of what it saves) and made again when ``reference`` is another array (a refit)."""
        index = owner.__dict__.get("_neighbor_index")
        if index is None or index.source is not reference:
            index = owner.__dict__["_neighbor_index"] = cls(reference)
        return index


def kth_nearest_distance(
    queries: np.ndarray,
    reference: np.ndarray | NeighborIndex,
    k: int,
    query_groups: np.ndarray | None = None,
    reference_groups: np.ndarray | None = None,
    chunk: int = 512,
) -> np.ndarray:
    """Euclidean distance from each query row to its ``k``-th nearest reference row.

    With groups, reference rows of the query's own group are left out (a client is not
    its own neighbor; with ``np.arange`` as groups, a row is not its own). Exact and
    brute force, in chunks: references here hold a few thousand rows. The k smallest of
    each row come from ``torch.topk``: exact, and several times faster than ``np.partition``.
    A query's own squared norm is added to its k-th value only, not to its whole row: the
    order within a row is the same, and so is the sum. A row whose every reference row is
    of its own group gets ``inf``.

    >>> ref = np.array([[0.0], [1.0], [3.0]])
    >>> kth_nearest_distance(np.array([[0.0]]), ref, 2).tolist()
    [1.0]
    >>> kth_nearest_distance(ref, ref, 1, np.arange(3), np.arange(3)).tolist()
    [1.0, 1.0, 2.0]
    """
    index = reference if isinstance(reference, NeighborIndex) else NeighborIndex(reference)
    k = max(1, min(k, len(index)))
    if query_groups is not None:  # compare small integer codes, not (say) client id strings
        _, codes = np.unique(np.concatenate([np.asarray(query_groups), np.asarray(reference_groups)]), return_inverse=True)
        query_groups, reference_groups = torch.from_numpy(codes[: len(queries)]), torch.from_numpy(codes[len(queries) :])
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):  # in torch: its elementwise steps use every core, numpy's one
        q = torch.from_numpy(np.ascontiguousarray(queries[start : start + chunk], dtype=np.float64))
        d2 = torch.addmm(index.squared_norms, q, index.rows.T, alpha=-2.0)
        if query_groups is not None:
            d2.masked_fill_(query_groups[start : start + chunk, None] == reference_groups[None, :], float("inf"))
        kth = torch.topk(d2, k, dim=1, largest=False).values[:, k - 1] + (q * q).sum(dim=1)
        out[start : start + chunk] = kth.clamp_(min=0.0).sqrt_().numpy()
    return out


def sample_rows(n_rows: int, size: int, random_state: int | None) -> np.ndarray:
    """Sorted indices of at most ``size`` of ``n_rows`` rows, drawn at random without
    replacement; every row when there are no more than ``size``.

    >>> sample_rows(4, 10, 0).tolist()
    [0, 1, 2, 3]
    >>> len(sample_rows(1000, 10, 0)), sample_rows(1000, 10, 0).tolist() == sample_rows(1000, 10, 0).tolist()
    (10, True)
    """
    if n_rows <= size:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(random_state).choice(n_rows, size=size, replace=False))
