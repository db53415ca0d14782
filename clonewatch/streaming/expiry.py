"""Clients that went quiet leave the worker's table, so its memory follows the active clients.

Without it every client ever seen stays in the table (in memory, and in its changelog): a
public API whose clients are addresses meets millions in a month. A client idle for longer
than the time to live, counted in event time (the newest event the worker has scored, so a
worker catching up on a backlog expires nothing early), is deleted: a tombstone in the
changelog, which compaction then drops. A client that comes back starts a fresh state; its
decisions stay on the compacted decisions topic and in the store, where gateways and the
lookup API read them.

>>> expiry = ClientExpiry(ttl_s=3600.0)
>>> expiry.seen({"old": 1795428000.0, "busy": 1795428000.0})
>>> expiry.seen({"busy": 1795435000.0})
>>> expiry.due(lambda client: True)
['old']
>>> expiry.due(lambda client: True), len(expiry)
([], 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

DEFAULT_CLIENT_TTL_S = 7 * 86400.0  # as long as the campaign tracker remembers an idle client


class ClientExpiry:
    """The last event time of each client the worker holds; which of them are due to go."""

    def __init__(self, ttl_s: float = DEFAULT_CLIENT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError("a client's time to live must be positive")
        self.ttl_s = ttl_s
        self.newest = float("-inf")
        self._last: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._last)

    def seen(self, last_times: Mapping[str, float]) -> None:
        """Each client's latest event time (epoch seconds), after a batch."""
        for client, ts in last_times.items():
            self._last[client] = max(ts, self._last.get(client, ts))
            self.newest = max(self.newest, ts)

    def adopt(self, clients: Iterable[str]) -> None:
        """Clients held without a known last event (restored from the changelog): counted as
        seen at the newest event time, so they go a time to live from now if they stay quiet
        (before the first batch there is no event time yet: nothing is adopted)."""
        if self.newest == float("-inf"):
            return
        for client in clients:
            self._last.setdefault(client, self.newest)

    def due(self, held: Callable[[str], bool]) -> list[str]:
        """The clients idle for longer than the time to live, forgotten here; clients that
        ``held`` says this worker no longer holds (their partition moved) are forgotten too."""
        horizon = self.newest - self.ttl_s
        due, gone = [], []
        for client, ts in self._last.items():
            if not held(client):
                gone.append(client)
            elif ts < horizon:
                due.append(client)
        for client in gone + due:
            del self._last[client]
        return due
