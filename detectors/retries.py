"""Fresh keys that carry on where a refused key stopped: the new-key move, tied back.

An attacker that watches the gateway's answers (OARS, CCS '23) learns when a key is
refused and moves to a fresh key, address and network; every fact the campaign tracker
ties keys by is new, and the fresh key starts without evidence. What it cannot help is to
send again the query that was refused, since that is the answer it still wants: a new
key whose first queries include, verbatim, the last query refused on another key shortly
before is that key's successor.

A benign key meets this rule only by chance: it must be new, and among its first
``first_queries`` send exactly the query a refused key was refused last, within
``horizon_s``, and that no other client had ever sent (a common prompt, a canned request
many clients send, ties nothing). Only each key's last refused query counts: an attacker
sweeping a pool of common questions is refused on hundreds of them, and customers ask some
of the same questions. :class:`RetryTracker` remembers, per query fingerprint, its first
sender and whether a second client has sent it, and each refused key's last refused query.

>>> tracker = RetryTracker(horizon_s=3600.0)
>>> tracker.learn_one("old-key", 0.0, b"q1", events_seen=40, refused=False)
>>> tracker.learn_one("old-key", 5.0, b"q2", events_seen=41, refused=True)   # refused: the key is throttled
>>> tracker.learn_one("old-key", 6.0, b"q3", events_seen=42, refused=True)   # and refused again
>>> tracker.learn_one("new-key", 605.0, b"q3", events_seen=1, refused=False)  # ten minutes later, from a fresh key
'old-key'
>>> tracker.learn_one("other-new-key", 610.0, b"q2", events_seen=1, refused=False) is None  # not its last refusal
True
>>> tracker.learn_one("someone", 700.0, b"q3", events_seen=1, refused=False) is None  # sent by two keys already
True
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import msgspec

from schemas import AccessEvent

POPULAR = -1  # a fingerprint's first sender once a second client has sent it too


def query_fingerprint(event: AccessEvent) -> bytes | None:
    """16 bytes that are the same for the same query (prompt, or numeric features) in the same space; None without either."""
    if event.prompt:
        payload = event.prompt.encode("utf-8", "surrogatepass")
    elif event.features:
        payload = msgspec.msgpack.encode(event.features)
    else:
        return None
    return hashlib.blake2b(payload, digest_size=16, person=(event.space or "").encode()[:16]).digest()


class RetryTracker:
    """Ties a new key to the refused key whose refused query it sends again (River style ``learn_one``).

    Parameters
    ----------
    horizon_s : a refused query counts for this long after it was sent.
    first_queries : a key is new for this many of its first events.
    max_queries : fingerprints remembered (least recently sent first out), refused ones apart.
    """

    def __init__(self, horizon_s: float = 6 * 3600.0, first_queries: int = 3, max_queries: int = 200_000) -> None:
        if horizon_s <= 0 or first_queries < 1 or max_queries < 1:
            raise ValueError("need horizon_s > 0, first_queries >= 1 and max_queries >= 1")
        self.horizon_s = horizon_s
        self.first_queries = first_queries
        self.max_queries = max_queries
        self._senders: OrderedDict[bytes, str | int] = OrderedDict()  # fingerprint -> first sender, or POPULAR
        self._refused: OrderedDict[bytes, tuple[str, float]] = OrderedDict()  # fingerprint -> (refused key, when)
        self._last_refused: OrderedDict[str, bytes] = OrderedDict()  # refused key -> the fingerprint it was refused last

    def learn_one(self, client_id: str, ts: float, fingerprint: bytes | None, events_seen: int, refused: bool) -> str | None:
        """Learn one query; return the refused key this one continues, if it does."""
        if fingerprint is None:
            return None
        first = self._senders.get(fingerprint)  # None once forgotten: its refusal, kept apart, still counts
        hit = self._refused.get(fingerprint)
        successor_of = None
        if hit is not None and hit[0] != client_id and first in (None, hit[0]) and events_seen <= self.first_queries:
            if 0.0 <= ts - hit[1] <= self.horizon_s:
                successor_of = hit[0]
        self._remember(fingerprint, client_id if first is None or first == client_id else POPULAR)
        if refused and self._senders[fingerprint] == client_id:
            self._refused.pop(self._last_refused.pop(client_id, b""), None)
            self._refused[fingerprint] = (client_id, ts)
            self._last_refused[client_id] = fingerprint
            while len(self._last_refused) > self.max_queries:
                self._last_refused.popitem(last=False)
        self._expire(ts)
        return successor_of

    def __len__(self) -> int:
        return len(self._senders)

    def _remember(self, fingerprint: bytes, sender: str | int) -> None:
        self._senders[fingerprint] = sender
        self._senders.move_to_end(fingerprint)
        while len(self._senders) > self.max_queries:
            self._senders.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._refused:
            fingerprint, (_, ts) = next(iter(self._refused.items()))
            if ts >= now - self.horizon_s and len(self._refused) <= self.max_queries:
                return
            del self._refused[fingerprint]

    def to_bytes(self) -> bytes:
        """The refused queries and their senders: what a tie needs, a few bytes per refused key.
        Other queries' senders are not kept (the stage is saved after every batch): after a
        restart, popularity is learned again."""
        return msgspec.msgpack.encode({
            "params": [self.horizon_s, self.first_queries, self.max_queries],
            "senders": [(f, self._senders[f]) for f in self._refused if f in self._senders],
            "refused": [(f, c, t) for f, (c, t) in self._refused.items()],
            "last_refused": [(c, f) for c, f in self._last_refused.items() if f in self._refused],
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> RetryTracker:
        raw = msgspec.msgpack.decode(data)
        tracker = cls(*raw["params"])
        tracker._senders.update((f, s) for f, s in raw["senders"])
        tracker._refused.update((f, (c, t)) for f, c, t in raw["refused"])
        tracker._last_refused.update(raw["last_refused"])
        return tracker
