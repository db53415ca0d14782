import pytest

from schemas import Action, DeadLetter, Decision, RiskScore
from sinks.clickhouse import ClickHouseStore, StoreError, normalize_dsn


def test_round_trip_through_the_real_clickhouse_engine(chdb_dsn):
    store = ClickHouseStore(chdb_dsn, database="roundtrip")
    store.ensure_tables()  # idempotent: a second call changes nothing
    store.insert_risk_scores([
        RiskScore(ts="2026-11-23T10:00:00.000Z", client_id="a", events_seen=5, window_events=5, risk=0.2, action="allow",
                  reasons=[], features={"rate_per_min": 1.5}, model_version="m1"),
        RiskScore(ts="2026-11-23T10:00:01.000Z", client_id="b", events_seen=40, window_events=40, risk=0.9999,
                  action="deny", reasons=["near-duplicate rate 0.9"], features={"near_dup_rate": 0.9}, model_version="m1",
                  campaign_id="camp-1"),
    ])  # fmt: skip
    store.insert_decisions([Decision(client_id="b", ts="2026-11-23T10:00:01.000Z", risk=0.9999, action=Action.DENY, events_seen=40, reasons=["r"])])
    store.insert_dead_letters([DeadLetter(source="f", line=3, reason="bad", raw="x")])

    _, rows = store.query("SELECT client_id, risk, action, features['near_dup_rate'], campaign_id FROM roundtrip.risk_scores ORDER BY client_id")
    assert rows == [("a", 0.2, "allow", 0.0, None), ("b", 0.9999, "deny", 0.9, "camp-1")]
    columns, rows = store.query("SELECT client_id, action, events_seen, reasons, toString(ts) FROM roundtrip.decisions")
    assert columns == ["client_id", "action", "events_seen", "reasons", "toString(ts)"]
    assert rows == [("b", "deny", 40, ["r"], "2026-11-23 10:00:01.000")]
    assert store.query("SELECT line, reason FROM roundtrip.dead_letters")[1] == [(3, "bad")]


def test_dsn_handling():
    assert normalize_dsn("chdb://./x").startswith("chdb:///")
    assert normalize_dsn("http://localhost:8123") == "http://localhost:8123"
    with pytest.raises(StoreError, match="unsupported"):
        normalize_dsn("mysql://x")
