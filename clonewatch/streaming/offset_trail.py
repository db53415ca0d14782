"""Offsets the stream skipped: per partition, the next offset an agent should be handed.

Around a rebalance, Faust can pass over messages it fetched without handing them to an agent:
its streams drop messages fetched for an older generation or while flow is stopped, and its
consumer drops those below an offset it already read, or counts offsets it never handed
over as a gap that its commit passes. Seen in this project's suite: two workers, a rebalance,
76 of 1,468 events never scored (two partitions then committed at 16 for good), and, in
another run, 83 of 1,997 campaign facts never learned though the group committed them all.

An agent therefore follows each partition's offsets itself, from where the group resumed
it (its committed offset, or the partition's first offset when it has none): offsets that
a batch jumps over are read straight from Kafka and processed in front of it, in order, so a
client's events and facts stay in the order they were sent. Messages passed over with none
after them are noticed otherwise: the partition's trail stands still while the consumer's
position is past it (:meth:`OffsetTrail.standing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable


class OffsetTrail:
    """Per partition, the next offset due; :meth:`skipped` names what a batch jumps over.

    >>> now = [0.0]
    >>> trail = OffsetTrail(clock=lambda: now[0])
    >>> trail.unknown(["p0", "p1"])
    ['p0', 'p1']
    >>> trail.start("p0", 16)
    >>> trail.unknown(["p0", "p1"])
    ['p1']
    >>> trail.skipped([("p0", 20), ("p0", 21), ("p1", 5)])  # p1 has no start: nothing to say
    {'p0': [range(16, 20)]}
    >>> trail.skipped([("p0", 21), ("p0", 23), ("p0", 26)])  # 21 again (a replay); 22, 24 and 25 missing
    {'p0': [range(22, 23), range(24, 26)]}
    >>> now[0] = 40.0; trail.skipped([("p1", 5)]); trail.standing(patience_s=30.0)  # p0 stood still for 40 s
    {}
    {'p0': 27}
    >>> trail.start("p1", 5); trail.keep(["p1"]); trail.unknown(["p0", "p1"])  # a rebalance took p0 away
    ['p0']
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._next: dict[Hashable, int] = {}
        self._moved: dict[Hashable, float] = {}  # partition -> when its trail last moved

    def unknown(self, partitions: Iterable[Hashable]) -> list[Hashable]:
        """Those of ``partitions`` with no start yet (since the last rebalance), in order, once each."""
        return [p for p in dict.fromkeys(partitions) if p not in self._next]

    def start(self, partition: Hashable, offset: int) -> None:
        """The group resumed ``partition`` at ``offset``."""
        self._next[partition] = offset
        self._moved[partition] = self.clock()

    def skipped(self, offsets: Iterable[tuple[Hashable, int]]) -> dict[Hashable, list[range]]:
        """The offsets that a batch of (partition, offset), in the order handed over, jumps
        over; the trail moves past the batch."""
        gaps: dict[Hashable, list[range]] = {}
        for partition, offset in offsets:
            due = self._next.get(partition)
            if due is None:
                continue
            if offset > due:
                gaps.setdefault(partition, []).append(range(due, offset))
            if offset >= due:
                self._next[partition] = offset + 1
                self._moved[partition] = self.clock()
        return gaps

    def due(self) -> dict[Hashable, int]:
        """The next offset due on each partition followed."""
        return dict(self._next)

    def standing(self, patience_s: float) -> dict[Hashable, int]:
        """The partitions whose trail has not moved for ``patience_s`` seconds, with the next
        offset due on each: if the consumer is past it, what lies between will not come."""
        now = self.clock()
        return {p: self._next[p] for p, moved in self._moved.items() if now - moved >= patience_s}

    def keep(self, partitions: Iterable[Hashable]) -> None:
        """After a rebalance, forget the partitions not among those assigned now: where one
        resumes when it comes back is read again. A partition kept goes on where it was (what
        the group had not committed comes again, behind its trail)."""
        kept = set(partitions)
        for partition in set(self._next) - kept:
            del self._next[partition], self._moved[partition]
