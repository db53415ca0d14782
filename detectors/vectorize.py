"""Turn a batch of events into raw query vectors: prompt embeddings or numeric features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.embedding import PromptEmbedder
from detectors.sampling import fair_sample
from schemas import AccessEvent


class Vectorizer:
    """Embeds the prompts of a batch in one call; numeric ``features`` pass through as vectors.

    Events with neither get ``None`` (they still count for timing and request shape).
    With a ``budget``, at most that many prompts are embedded, a fair share per client
    (:func:`detectors.sampling.fair_sample`); the others get ``None`` too.
    """

    def __init__(self, embedder: PromptEmbedder | None = None) -> None:
        self.embedder = embedder or PromptEmbedder()
        self.prompts_seen = 0
        self.prompts_embedded = 0

    def vectors(self, events: Sequence[AccessEvent], budget: int | None = None) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(events)
        text_rows = [i for i, e in enumerate(events) if e.prompt]
        self.prompts_seen += len(text_rows)
        if budget is not None and len(text_rows) > budget:
            chosen = fair_sample([events[i].client_id for i in text_rows], budget)
            text_rows = [i for i, keep in zip(text_rows, chosen) if keep]
        self.prompts_embedded += len(text_rows)
        if text_rows:
            embedded = self.embedder.embed([events[i].prompt for i in text_rows])
            for k, i in enumerate(text_rows):
                out[i] = embedded[k]
        for i, event in enumerate(events):
            if out[i] is None and event.features:
                out[i] = np.asarray(event.features, dtype=np.float32)
        return out
