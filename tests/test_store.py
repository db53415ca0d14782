import pytest

from schemas import AccessEvent, Action, CampaignScore, DeadLetter, Decision, Params, RiskScore
from sinks.clickhouse import ClickHouseStore, StoreError, migrations, normalize_dsn


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


def test_migrations_events_campaigns_and_the_latest_state_view(chdb_dsn):
    store = ClickHouseStore(chdb_dsn, database="schema")
    store.ensure_tables()  # a second pass applies nothing twice
    versions = store.query("SELECT version, count() FROM schema.schema_migrations FINAL GROUP BY version ORDER BY version")[1]
    assert [v for v, _ in versions] == [v for v, _, _ in migrations()] and all(n == 1 for _, n in versions)
    assert store.schema_version() == migrations()[-1][0]

    events = [
        AccessEvent(ts=1795428000.5, client_id="a", prompt="secret plans", params=Params(temperature=0.0, logprobs=True), tokens_out=7),
        AccessEvent(ts=1795428001, client_id="a", features=[1.0, 2.0], status=200),
    ]
    store.insert_access_events(events)
    store.insert_access_events(events, keep_prompts=True)  # the same events again: one row each under FINAL
    rows = store.query("SELECT client_id, prompt_chars, features_count, logprobs, temperature, prompt, tokens_out FROM schema.access_events FINAL ORDER BY ts")[1]
    assert [r[:6] for r in rows] == [("a", 12, 0, True, 0.0, "secret plans"), ("a", 0, 2, False, None, None)] and rows[0][6] == 7
    store.insert_access_events([AccessEvent(ts=1795428002, client_id="b", prompt="private")])
    assert store.query("SELECT prompt, length(prompt_hash) FROM schema.access_events WHERE client_id = 'b'")[1] == [(None, 32)]
    # A chat request's conversation depth comes back for retraining; unknown stays unknown.
    chats = [AccessEvent(ts=1795428003 + i, client_id="c", prompt=f"q{i}", turns=turns) for i, turns in enumerate([0, 2, None])]
    store.insert_access_events(chats, keep_prompts=True)
    # So does the number of tokens a request biased (logit_bias): none reads as none.
    biased = [AccessEvent(ts=1795428010 + i, client_id="d", prompt=f"p{i}", params=Params(temperature=0.0, logit_bias=bias)) for i, bias in enumerate([{"15": 100.0, "16": -5.0}, None])]
    store.insert_access_events(biased, keep_prompts=True)
    history, _ = store.history()
    assert [e.turns for e in history if e.client_id == "c"] == [0, 2, None]
    assert [e.params.logit_bias for e in history if e.client_id == "d"] == [2, None]

    store.insert_risk_scores([
        RiskScore(ts="2026-11-23T10:00:00Z", client_id="a", events_seen=1, window_events=1, risk=0.9, action="allow", reasons=[], features={}, model_version="m"),
        RiskScore(ts="2026-11-23T10:00:05Z", client_id="a", events_seen=2, window_events=2, risk=0.5, action="throttle", reasons=["why"], features={}, model_version="m"),
    ])  # fmt: skip
    assert store.query("SELECT events_seen, risk, action, reasons, peak_risk FROM schema.client_risk_latest")[1] == [(2, 0.5, "allow", ["why"], 0.9)]
    # The action is the latest decision's: a campaign's action reaches a member between its own scores.
    store.insert_decisions([
        Decision(client_id="a", ts="2026-11-23T10:00:05Z", risk=0.5, action=Action.THROTTLE, events_seen=2, reasons=["own"]),
        Decision(client_id="a", ts="2026-11-23T10:00:09Z", risk=0.99, action=Action.CHALLENGE, events_seen=2, reasons=["campaign camp-1"]),
    ])  # fmt: skip
    assert store.query("SELECT action, action_reasons, reasons FROM schema.client_risk_latest")[1] == [("challenge", ["campaign camp-1"], ["why"])]

    store.insert_campaigns([CampaignScore(ts="2026-11-23T10:00:05Z", campaign_id="camp-1", members=["a", "b"], ties=["net:x"], summary="2 keys", events_seen=9, risk=0.99, evidence=1e9, model_version="m")])
    assert store.query("SELECT campaign_id, members, evidence FROM schema.campaigns")[1] == [("camp-1", ["a", "b"], 1e9)]
