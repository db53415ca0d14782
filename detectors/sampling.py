"""Which prompts to embed when there is no time to embed them all: a fair share per client.

The embedder is the pipeline's physical limit. When traffic outruns it, every event still
updates its client's rate, timing and request-shape signals (they cost next to nothing);
only the embedding is sampled. Taking a uniform sample would let the busiest clients (the
sweeps and probers) keep most of the budget and starve everyone else; taking the first
events would starve late clients. Here the budget goes round-robin over the batch's
clients in arrival order: every client's first prompt, then every client's second, and so
on, so a client's share of embedded prompts shrinks only when it sends more than its turn.

>>> fair_sample(["a", "a", "a", "a", "b", "c"], budget=4).tolist()
[True, True, False, False, True, True]
>>> fair_sample(["a", "b"], budget=10).tolist()
[True, True]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fair_sample(clients: Sequence[str], budget: int) -> np.ndarray:
    """A mask over ``clients`` (one per prompt, in arrival order) choosing at most ``budget``:
    each client's k-th prompt before anyone's (k+1)-th, earlier arrivals first within a turn."""
    if budget < 0:
        raise ValueError("the budget must not be negative")
    n = len(clients)
    if budget >= n:
        return np.ones(n, dtype=bool)
    turn = np.empty(n, dtype=np.int64)
    seen: dict[str, int] = {}
    for i, client in enumerate(clients):
        turn[i] = seen.get(client, 0)
        seen[client] = turn[i] + 1
    order = np.lexsort((np.arange(n), turn))  # by turn, then by arrival
    chosen = np.zeros(n, dtype=bool)
    chosen[order[:budget]] = True
    return chosen
