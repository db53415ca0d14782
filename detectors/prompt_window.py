"""A client's recent prompts as words: small edits between queries and template reuse."""

from __future__ import annotations

import re
import zlib

import numpy as np

from detectors.ring import held, room_for, stored

_WORD = re.compile(r"\w+")
MAX_WORDS = 256  # long documents: their opening is enough to tell an edit from a new prompt


def words_of(prompt: str) -> list[str]:
    return _WORD.findall(prompt.lower())[:MAX_WORDS]


def word_distance(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard distance between two prompts' word sets: 0 the same words, 1 none shared."""
    union = len(a | b)
    return 1.0 - len(a & b) / union if union else 0.0


class PromptWindow:
    """Sliding window over one client's prompts, read as words.

    For each new prompt it records the word distance to the closest of the last
    ``lookback`` prompts, leaving out verbatim repeats (distance 0): perturbation chains
    change a few words at a time, conversations change most of them. It also keeps a hash
    of each prompt's first ``prefix_words`` words, for template reuse.

    >>> w = PromptWindow(size=10)
    >>> for p in ("is this spam: win a car now", "is this spam: win a cat now", "where is my parcel?"):
    ...     w.learn_one(p)
    >>> [round(float(d), 2) for d in w.edit_distances()], round(w.prefix_reuse(), 2)
    ([0.25, 0.9], 0.33)
    """

    def __init__(self, size: int = 200, lookback: int = 8, prefix_words: int = 4) -> None:
        self.size = size
        self.lookback = lookback
        self.prefix_words = prefix_words
        self.distance_ring = np.full(0, np.nan, dtype=np.float32)  # rings grow with the client's history (detectors.ring)
        self.prefix_ring = np.zeros(0, dtype=np.int64)
        self.recent: list[str] = []  # the last prompts' distinct words, space-separated (one string each: compact)
        self.head = 0
        self.count = 0

    def learn_one(self, prompt: str) -> None:
        words = words_of(prompt)
        current = frozenset(words)
        distances = [word_distance(current, frozenset(earlier.split())) for earlier in self.recent]
        edits = [d for d in distances if d > 0.0]
        if self.count < self.size:
            self.distance_ring = room_for(self.distance_ring, self.count + 1, self.size, np.nan)
            self.prefix_ring = room_for(self.prefix_ring, self.count + 1, self.size, 0)
        self.distance_ring[self.head] = min(edits) if edits else np.nan
        self.prefix_ring[self.head] = zlib.crc32(" ".join(words[: self.prefix_words]).encode())
        distinct = " ".join(sorted(current))
        self.recent = [*self.recent[-(self.lookback - 1) :], distinct] if self.lookback > 1 else [distinct]
        self.head = (self.head + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def edit_distances(self) -> np.ndarray:
        """Word distance of each windowed prompt to its closest recent one (repeats and firsts left out)."""
        held = self.distance_ring[: self.count]
        return held[~np.isnan(held)]

    def prefix_reuse(self) -> float:
        """Share of windowed prompts that open like an earlier prompt of the window."""
        if self.count == 0:
            return float("nan")
        return 1.0 - len(np.unique(self.prefix_ring[: self.count])) / self.count

    def to_state(self) -> dict:
        return {
            "size": self.size, "lookback": self.lookback, "prefix_words": self.prefix_words,
            "head": self.head, "count": self.count, "recent": self.recent,
            "distances": stored(self.distance_ring, self.count), "prefixes": stored(self.prefix_ring, self.count),
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> PromptWindow:
        w = cls(size=state["size"], lookback=state["lookback"], prefix_words=state["prefix_words"])
        w.head, w.count = state["head"], state["count"]
        w.distance_ring = held(state["distances"], np.float32, w.count, w.size)
        w.prefix_ring = held(state["prefixes"], np.int64, w.count, w.size)
        # earlier versions kept each prompt's words as a list
        w.recent = [r if isinstance(r, str) else " ".join(sorted(set(r))) for r in state["recent"]]
        return w
