"""Requests too large to keep whole are scored on a bounded part of them, never dropped.

A gateway in front of an image classifier logs 150,528 numbers a request (224 x 224 x 3),
and a retrieval-augmented application sends prompts of 100,000 characters. Dead-lettering
them would hide whole APIs from detection (and let an attacker hide by padding), and
keeping them whole would let one client's requests fill a worker's memory and Kafka's
messages. So:

- a row of more than :data:`MAX_FEATURES` numbers (a tabular model's rows are shorter; a
  CIFAR image is 3,072) is replaced by its count sketch of :data:`SKETCH_DIM` numbers (each
  value added, with a random sign, into one of the buckets; buckets and signs are fixed by
  the row's length, so rows of one model's input are sketched alike). Inner products, and so distances, between rows of the same length
  are kept in expectation, within a few percent: near-duplicate probes, coverage and
  novelty still measure what they measure. The record keeps the row's length in
  ``features_dim``, so each input shape stays a vector space of its own;
- a prompt of more than :data:`MAX_PROMPT_CHARS` characters is cut to that many (the
  embedding model reads only its first few hundred tokens anyway); the record keeps its
  length in ``prompt_chars``, so prompt lengths still vary as the client's did.

>>> record = {"ts": 1795428000, "client_id": "k", "features": [0.5] * 150_528}
>>> bound_record(record), len(record["features"]), record["features_dim"]
(['feature rows over 1,024 values held as their 1,024-value sketch'], 1024, 150528)
"""

from __future__ import annotations

import functools
from collections.abc import MutableMapping
from typing import Any

import numpy as np

from schemas.access_event import SKETCH_DIM

MAX_PROMPT_CHARS = 32_000
MAX_FEATURES = SKETCH_DIM  # wider rows cost the reference's fit and every projection in proportion (4,096: 3.4x)


@functools.lru_cache(maxsize=8)
def _hashing(length: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([length, dim])
    return rng.integers(0, dim, length), rng.choice(np.array([-1.0, 1.0]), length)


def sketch(values: Any, dim: int = SKETCH_DIM) -> list[float]:
    """The count sketch of a row of numbers: ``dim`` numbers whose distances to the sketches of
    other rows of the same length are, in expectation, the rows' own.

    >>> rng = np.random.default_rng(0)
    >>> a = rng.uniform(size=150_528)
    >>> b = a + rng.normal(scale=0.01, size=a.size)  # a tiny perturbation of a
    >>> c = rng.uniform(size=a.size)  # another input
    >>> def ratio(x, y):
    ...     return float(np.linalg.norm(np.subtract(sketch(x), sketch(y))) / np.linalg.norm(x - y))
    >>> 0.9 < ratio(a, b) < 1.1, 0.9 < ratio(a, c) < 1.1
    (True, True)
    """
    row = np.asarray(values, dtype=np.float64)
    buckets, signs = _hashing(len(row), dim)
    total = np.bincount(buckets, weights=signs * row, minlength=dim)
    return np.nan_to_num(total, nan=0.0).tolist()  # sums of huge values stay finite, as every row must


def bounded_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> tuple[str, int | None, str | None]:
    """The prompt as it is scored, the length it stands for when that is its opening (else
    None), and what was done to it (None: nothing)."""
    if len(prompt) <= max_chars:
        return prompt, None, None
    return prompt[:max_chars], len(prompt), f"prompts over {max_chars:,} characters scored on their first {max_chars:,}"


def bounded_row(features: list, max_features: int = MAX_FEATURES) -> tuple[list, int | None, str | None]:
    """The row as it is scored, the length it stands for when that is its sketch (else None),
    and what was done to it (None: nothing)."""
    if len(features) <= max_features:
        return features, None, None
    return sketch(features), len(features), f"feature rows over {max_features:,} values held as their {SKETCH_DIM:,}-value sketch"


def bound_record(record: MutableMapping[str, Any], max_prompt_chars: int = MAX_PROMPT_CHARS, max_features: int = MAX_FEATURES) -> list[str]:
    """Bound a canonical record's prompt and feature row in place; say what was done (nothing: ``[]``)."""
    notes = []
    if isinstance(record.get("prompt"), str):
        prompt, length, note = bounded_prompt(record["prompt"], max_prompt_chars)
        if length is not None:
            before = record.get("prompt_chars")  # a record bounded before, by a tighter limit
            record["prompt"], record["prompt_chars"] = prompt, max(length, before) if type(before) is int else length
        notes.append(note)
    features = record.get("features")
    if (
        isinstance(features, list) and len(features) > max_features
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in features)
    ):  # a row of anything else: the decoder says what is wrong
        record["features"], record["features_dim"], note = bounded_row(features, max_features)
        notes.append(note)
    return [note for note in notes if note]
