"""Each client's current risk and action, held in memory and kept current from the store.

A lookup never waits on ClickHouse: the table is loaded at start and refreshed in the
background every few seconds with the rows newer than the last ones seen; with the
decisions topic followed as well, an action reaches lookups as soon as a worker publishes it.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import msgspec

from clonewatch.streaming.decision_feed import read_decisions
from clonewatch.streaming.config import StreamingConfig
from schemas import Decision, to_epoch
from sinks.clickhouse import ClickHouseStore, StoreError

log = logging.getLogger("clonewatch.api")
_decisions = msgspec.json.Decoder(Decision)

# The latest row of each client (by event time, then events seen), from ``since`` on.
LATEST = """
SELECT client_id,
       argMax(risk, (ts, events_seen)), argMax(action, (ts, events_seen)), argMax(reasons, (ts, events_seen)),
       max(events_seen), max(ts), argMax(model_version, (ts, events_seen)), argMax(campaign_id, (ts, events_seen))
FROM {db}.risk_scores
WHERE ts >= {{since:DateTime64(3, 'UTC')}}
GROUP BY client_id
"""


# The latest decision of each client from ``since`` on: a campaign's action reaches its members
# between their own scores, so a member's action may be newer than its latest score.
DECIDED = """
SELECT client_id,
       argMax((action, reasons, risk), (ts, events_seen, indexOf(['allow', 'throttle', 'challenge', 'deny'], action))), max(ts)
FROM {db}.decisions
WHERE ts >= {{since:DateTime64(3, 'UTC')}}
GROUP BY client_id
"""


@dataclass(frozen=True)
class ClientView:
    client_id: str
    risk: float
    action: str
    reasons: list[str]
    events_seen: int
    updated_at: datetime
    model_version: str
    campaign_id: str | None

    def to_json(self) -> dict:
        return {
            "client_id": self.client_id, "risk": self.risk, "action": self.action, "reasons": self.reasons,
            "events_seen": self.events_seen, "updated_at": self.updated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "model_version": self.model_version, "campaign_id": self.campaign_id,
        }  # fmt: skip


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class ClientTable:
    """Client id -> :class:`ClientView`, refreshed from the store by :meth:`refresh`."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.clients: dict[str, ClientView] = {}
        self.refreshed_at = 0.0
        self.since = datetime(1970, 1, 1, tzinfo=timezone.utc)
        self._lock = threading.Lock()
        self.store_lock = threading.Lock()  # one query at a time: the embedded engine is one per process
        self.closed = False

    @contextmanager
    def _open_store(self):
        """The store, to one query at a time, while the table is open."""
        with self.store_lock:
            if self.closed:
                raise StoreError("the API is shutting down")
            yield self.store

    def close(self) -> None:
        """Wait for the query in flight, then close the store: an embedded engine torn down
        at exit under a running query crashes the process."""
        with self.store_lock:
            self.closed = True
            self.store.close()

    def get(self, client_id: str) -> ClientView | None:
        return self.clients.get(client_id)

    def flagged(self, action: str | None, limit: int) -> list[ClientView]:
        views = [v for v in list(self.clients.values()) if v.action != "allow" and (action is None or v.action == action)]
        return sorted(views, key=lambda v: -v.risk)[:limit]

    def refresh(self) -> int:
        """Read the rows newer than the newest seen (a second's overlap); returns the clients changed."""
        params = {"since": self.since.replace(tzinfo=None)}
        with self._open_store() as store:
            _, rows = store.query(LATEST.format(db=store.database), params)
            _, decided = store.query(DECIDED.format(db=store.database), params)
        changed = 0
        newest = self.since.timestamp()
        with self._lock:
            for client_id, risk, action, reasons, seen, ts, version, campaign in rows:
                ts = _utc(ts)
                old = self.clients.get(client_id)
                if old is None or (ts, seen) >= (old.updated_at, old.events_seen):
                    self.clients[client_id] = ClientView(client_id, float(risk), action, list(reasons), int(seen), ts, version, campaign)
                    changed += 1
                newest = max(newest, ts.timestamp() - 1.0)
            for client_id, (action, reasons, risk), ts in decided:
                changed += self._decided(client_id, action, list(reasons), float(risk), _utc(ts), events_seen=None)
            self.since = datetime.fromtimestamp(newest, tz=timezone.utc)
        self.refreshed_at = time.time()
        return changed

    def apply(self, decision: Decision) -> bool:
        """A decision as it is published (the decisions topic): the client's action changes at
        once, before its scores reach the store. Returns whether anything changed."""
        ts = datetime.fromtimestamp(to_epoch(decision.ts), tz=timezone.utc)
        with self._lock:
            return bool(self._decided(decision.client_id, decision.action.value, list(decision.reasons), decision.risk, ts, decision.events_seen))

    def _decided(self, client_id: str, action: str, reasons: list[str], risk: float, ts: datetime, events_seen: int | None) -> int:
        """Apply one decision (under the lock); a decision older than the client's latest state changes nothing."""
        old = self.clients.get(client_id)
        if old is None:
            if events_seen is None:
                return 0
            self.clients[client_id] = ClientView(client_id, risk, action, reasons, events_seen, ts, "", None)
            return 1
        if ts < old.updated_at or action == old.action:
            return 0
        # Stamped with the decision's time, so that re-reading the older score cannot undo it.
        self.clients[client_id] = replace(old, action=action, reasons=reasons, risk=max(old.risk, risk), updated_at=ts)
        return 1

    def follow_decisions(self, config: StreamingConfig, stop: threading.Event) -> None:
        """Apply the decisions topic as it grows, from its start (it is compacted: the latest
        decision of every client); a broker that is away is waited for."""
        while not stop.is_set():
            try:
                for raw in read_decisions(config, follow=True, from_beginning=True, timeout_s=30.0):
                    try:
                        self.apply(_decisions.decode(raw))
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        log.warning("skipped an unreadable decision on %s: %s", config.decisions_topic, exc)
                    if stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - lookups go on from the store while Kafka is away
                log.warning("cannot follow %s at %s (%s); trying again in 5 s", config.decisions_topic, config.bootstrap, exc)
                stop.wait(5.0)

    def history(self, client_id: str, since: datetime, limit: int) -> dict[str, list[dict]]:
        """A client's risk scores and decisions from ``since`` on, oldest first (from the store)."""
        db = self.store.database
        params = {"client": client_id, "since": since.replace(tzinfo=None), "limit": limit}
        with self._open_store() as store:
            _, scores = store.query(
                f"SELECT ts, events_seen, risk, action, campaign_id FROM {db}.risk_scores FINAL"
                " WHERE client_id = {client:String} AND ts >= {since:DateTime64(3, 'UTC')} ORDER BY ts, events_seen LIMIT {limit:UInt32}",
                params,
            )
            _, decisions = store.query(
                f"SELECT ts, events_seen, risk, action, reasons FROM {db}.decisions FINAL"
                " WHERE client_id = {client:String} AND ts >= {since:DateTime64(3, 'UTC')} ORDER BY ts LIMIT {limit:UInt32}",
                params,
            )
        iso = lambda ts: (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: E731
        return {
            "risk": [{"ts": iso(t), "events_seen": n, "risk": r, "action": a, "campaign_id": c} for t, n, r, a, c in scores],
            "decisions": [{"ts": iso(t), "events_seen": n, "risk": r, "action": a, "reasons": list(why)} for t, n, r, a, why in decisions],
        }

    def keep_current(self, every_s: float, stop: threading.Event) -> None:
        """Refresh every ``every_s`` seconds until ``stop`` is set; a failed refresh is logged and retried."""
        while not stop.wait(every_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - lookups go on from memory while the store is away
                log.warning("could not refresh from the store (%s); serving the last state", exc)
