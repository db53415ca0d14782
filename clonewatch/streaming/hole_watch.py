"""Offsets a worker never got: a partition whose committed offset stays behind what its agent processed.

Faust commits a partition only up to its first offset not acknowledged. Around a rebalance,
messages can be lost between the consumer and the agent while the consumer's position moves
past them (which path drops them is not pinned down: Faust's streams skip messages fetched for
an older generation, and something then keeps them from being fetched again). Seen in the
suite: two workers, a rebalance as the second joined, 76 of 1,468 events never scored, two
partitions committed at 16 for good while the agent went on to their ends, 500 and 636.
Nothing would deliver them again: the events are lost to detection and the group's lag never
closes. The watch notices the committed offset standing still behind offsets the agent has
processed, and the worker then reads the partition again from its committed offset; what the
agent already applied is dropped by the client table's replay guard, the missing events are
scored, and the commit moves on.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


class HoleWatch:
    """Which partitions to read again: those whose committed offset has stood still for
    ``patience_s`` seconds behind the offsets processed on them. Once read again, a
    partition gets the same patience before it is named again.

    >>> watch = HoleWatch(patience_s=30.0)
    >>> watch.processed("p2", 600)
    >>> watch.check({"p2": 16}, now=0.0), watch.check({"p2": 16}, now=29.0), watch.check({"p2": 16}, now=31.0)
    ([], [], ['p2'])
    >>> watch.check({"p2": 16}, now=40.0), watch.check({"p2": 601}, now=100.0)
    ([], [])
    """

    def __init__(self, patience_s: float) -> None:
        if patience_s <= 0:
            raise ValueError("patience must be above 0 s")
        self.patience_s = patience_s
        self._processed: dict[Hashable, int] = {}  # partition -> the offset after the highest processed
        self._standing: dict[Hashable, tuple[int, float]] = {}  # partition -> (committed offset, since when)

    def processed(self, partition: Hashable, offset: int) -> None:
        """The agent is done with ``offset`` of ``partition``."""
        self._processed[partition] = max(self._processed.get(partition, 0), offset + 1)

    def check(self, committed: Mapping[Hashable, int], now: float) -> list[Hashable]:
        """The partitions to read again from their committed offset (``committed``: the
        group's committed offset of each partition this worker holds, 0 for none)."""
        holes = []
        for partition, offset in committed.items():
            if self._processed.get(partition, 0) <= offset:
                self._standing.pop(partition, None)  # caught up: nothing missing
                continue
            was, since = self._standing.get(partition, (offset, now))
            if was != offset:
                was, since = offset, now
            if now - since >= self.patience_s:
                holes.append(partition)
                since = now
            self._standing[partition] = (was, since)
        return holes

    def forget(self) -> None:
        """After a rebalance: the partitions, and where they stood, may have changed."""
        self._processed.clear()
        self._standing.clear()
