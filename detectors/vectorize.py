"""Turn a batch of events into raw query vectors: prompt embeddings or numeric features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.embedding import PromptEmbedder
from schemas import AccessEvent


class Vectorizer:
    """Embeds the prompts of a batch in one call; numeric ``features`` pass through as vectors.

    Events with neither get ``None`` (they still count for timing and request shape).
    """

    def __init__(self, embedder: PromptEmbedder | None = None) -> None:
        self.embedder = embedder or PromptEmbedder()

    def vectors(self, events: Sequence[AccessEvent]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(events)
        text_rows = [i for i, e in enumerate(events) if e.prompt]
        if text_rows:
            embedded = self.embedder.embed([events[i].prompt for i in text_rows])
            for k, i in enumerate(text_rows):
                out[i] = embedded[k]
        for i, event in enumerate(events):
            if out[i] is None and event.features:
                out[i] = np.asarray(event.features, dtype=np.float32)
        return out
