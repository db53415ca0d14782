"""`clonewatch api`: lookups and gateway decisions served from memory, kept current from the store."""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

from clonewatch.api.server import DecideConfig, RiskApi
from clonewatch.api.state import ClientTable
from ingest.formats import client_id_for_ip, client_id_for_key
from schemas import Action, Decision, RiskScore
from sinks.clickhouse import ClickHouseStore, insert_risk_scores_from_child
from tests.streaming_support import REPO_ROOT, Background, wait_until

TOKEN = "test-api-token"
KEYS = {"allow": "sk-live-allow000001", "throttle": "sk-live-throttle0001", "challenge": "sk-live-challenge001", "deny": "sk-live-deny00000001"}


def score(client_id: str, action: str, ts: str, seen: int, risk: float) -> RiskScore:
    return RiskScore(ts=ts, client_id=client_id, events_seen=seen, window_events=seen, risk=risk, action=action,
                     reasons=[f"{action} reason"], features={}, model_version="m1")  # fmt: skip


def fill_store(store: Path, rows: list[RiskScore]) -> None:
    """Write risk scores to an embedded store that the API will serve (from a child process)."""
    insert_risk_scores_from_child(f"chdb://{store}", rows, timeout_s=120)


def serve_api(store: Path, log_path: Path, *options: str) -> tuple[Background, str]:
    """`clonewatch api` on ``store`` in the background, once it listens, and its base URL."""
    server = Background(["api", "--store", f"chdb://{store}", "--port", "0", *options], {**os.environ, "CLONEWATCH_API_TOKEN": TOKEN}, log_path)
    try:
        wait_until(lambda: "listening on" in server.log() or not server.alive(), 60, "the API to listen")
        return server, re.search(r"listening on (https?://\S+)", server.log()).group(1)
    except BaseException:
        server.stop()
        raise


def get(url: str, token: str | None = TOKEN, **headers: str) -> tuple[int, dict | str, dict]:
    request = urllib.request.Request(url, headers=headers)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body, status, answer_headers = response.read().decode(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        body, status, answer_headers = error.read().decode(), error.code, dict(error.headers)
    try:
        return status, json.loads(body), answer_headers
    except ValueError:
        return status, body, answer_headers


def test_the_api_answers_lookups_and_gateways_from_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rows = [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.5 if action == "allow" else 0.9999) for action, key in KEYS.items()]
    rows.append(score(client_id_for_key(KEYS["deny"]), "allow", "2026-11-23T09:00:00Z", 10, 0.1))  # older: not the current state
    rows.append(score(client_id_for_ip("203.0.113.7"), "deny", "2026-11-23T10:00:00Z", 40, 0.99999))  # a client of a log without keys
    fill_store(store, rows)
    server, base = serve_api(store, tmp_path / "api.log")
    try:
        assert "5 clients" in server.log()
        assert get(f"{base}/healthz", token=None)[0] == 200
        assert get(f"{base}/v1/clients", token=None)[0] == 401
        assert get(f"{base}/v1/clients", token="wrong")[0] == 401

        deny_id = client_id_for_key(KEYS["deny"])
        status, view, _ = get(f"{base}/v1/clients/{deny_id}")
        assert status == 200 and view["known"] and view["action"] == "deny" and view["events_seen"] == 50 and view["reasons"] == ["deny reason"]
        status, unknown, _ = get(f"{base}/v1/clients/key_nobody")
        assert status == 200 and unknown["known"] is False and unknown["action"] == "allow"
        assert get(f"{base}/v1/clients/a%20b")[0] == 400
        status, listed, _ = get(f"{base}/v1/clients?action=deny&limit=10")
        assert sorted(c["client_id"] for c in listed["clients"]) == sorted([deny_id, client_id_for_ip("203.0.113.7")])
        assert len(get(f"{base}/v1/clients?limit=10")[1]["clients"]) == 4  # every non-allow client
        assert get(f"{base}/v1/clients?limit=0")[0] == 400
        status, history, _ = get(f"{base}/v1/clients/{deny_id}/history?since=2026-11-23T09:30:00Z")
        assert status == 200 and [(r["action"], r["events_seen"]) for r in history["risk"]] == [("deny", 50)]  # the 09:00 row is before since
        assert len(get(f"{base}/v1/clients/{deny_id}/history")[1]["risk"]) == 2
        assert get(f"{base}/v1/clients/{deny_id}/history?since=yesterday")[0] == 400
        status, document, _ = get(f"{base}/openapi.json", token=None)
        assert status == 200 and document == json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())

        expected = {"allow": 200, "throttle": 429, "challenge": 401, "deny": 403}
        for action, key in KEYS.items():
            status, answer, headers = get(f"{base}/v1/decide", **{"X-API-Key": key})
            assert (status, headers["X-Clonewatch-Action"]) == (expected[action], action)
            assert "sk-live" not in json.dumps(answer) + json.dumps(headers)  # the key never comes back
        assert get(f"{base}/v1/decide", **{"X-API-Key": KEYS["throttle"]})[2]["Retry-After"] == "30"
        assert get(f"{base}/v1/decide")[0] == 200  # no client in the request: the gateway's own rules apply
        # a key in the query string: Envoy's ext_authz appends the request's path, nginx passes X-Original-URI
        assert get(f"{base}/v1/decide/v1beta/models/m:generateContent?alt=sse&key={KEYS['deny']}")[0] == 403
        assert get(f"{base}/v1/decide", **{"X-Original-URI": f"/v1/chat/completions?api_key={KEYS['challenge']}"})[0] == 401
        # no key at all: the address, as a log without keys names its clients
        assert get(f"{base}/v1/decide", **{"X-Real-IP": "203.0.113.7"})[0] == 403
        assert get(f"{base}/v1/decide", **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})[0] == 403
        assert get(f"{base}/v1/decide", **{"X-Real-IP": "203.0.113.8"})[0] == 200
        # the token in X-Clonewatch-Token (Traefik's forwardAuth sends the client's own headers): Authorization is the client's
        assert get(f"{base}/v1/decide", token=KEYS["deny"], **{"X-Clonewatch-Token": TOKEN})[0] == 403
        assert get(f"{base}/v1/decide", token=KEYS["deny"], **{"X-Clonewatch-Token": "wrong"})[0] == 401
        assert get(f"{base}/v1/clients?limit=1", token=None, **{"X-Clonewatch-Token": TOKEN})[0] == 200
        status, metrics, _ = get(f"{base}/metrics")
        assert status == 200 and 'clonewatch_decide_total{action="throttle"} 2' in metrics and 'clonewatch_clients{action="deny"} 2' in metrics
    finally:
        assert server.stop() == 0


def test_the_checked_in_openapi_document_names_every_route() -> None:
    from clonewatch.api.openapi import OPENAPI

    assert json.loads((REPO_ROOT / "docs" / "openapi.json").read_text()) == OPENAPI, "run: python -m clonewatch.api.openapi > docs/openapi.json"
    served = set(re.findall(r'"(/(?:v1/[a-z/{}_]+|healthz|metrics|openapi\.json))"', (REPO_ROOT / "clonewatch" / "api" / "server.py").read_text()))
    assert served <= set(OPENAPI["paths"]) | {"/v1/decide/", "/v1/clients/"}, served - set(OPENAPI["paths"])


def test_degrade_answers_200_with_headers_that_tell_the_gateway_to_serve_less() -> None:
    table = ClientTable(store=None)
    key = "sk-live-degrade00001"
    table.clients[client_id_for_key(key)] = type("V", (), {"action": "throttle"})()
    api = RiskApi(table, TOKEN, DecideConfig(throttle_mode="degrade", degrade_max_tokens=128), port=0)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        status, answer, headers = get("http://{}:{}/v1/decide".format(*api.address), **{"X-API-Key": key})
        assert status == 200 and answer["action"] == "degrade"
        assert headers["X-Clonewatch-Strip"] == "logprobs,top_logprobs" and headers["X-Clonewatch-Max-Tokens"] == "128"
    finally:
        api.shutdown()


def test_the_state_follows_newer_rows_of_the_store(chdb_dsn: str) -> None:
    store = ClickHouseStore(chdb_dsn, database="apistate")
    store.insert_risk_scores([score("key_a", "allow", "2026-11-23T10:00:00Z", 10, 0.2)])
    table = ClientTable(store)
    assert table.refresh() == 1 and table.get("key_a").action == "allow"
    store.insert_risk_scores([score("key_a", "throttle", "2026-11-23T10:05:00Z", 60, 0.9996), score("key_b", "deny", "2026-11-23T10:06:00Z", 80, 1.0)])
    table.refresh()
    assert (table.get("key_a").action, table.get("key_a").events_seen, table.get("key_b").action) == ("throttle", 60, "deny")
    # A campaign's action reaches key_a between its own scores: the decision is newer than the score.
    store.insert_decisions([Decision(client_id="key_a", ts="2026-11-23T10:07:00Z", risk=0.99999, action=Action.CHALLENGE, events_seen=60, reasons=["campaign camp-1"])])
    table.refresh()
    assert (table.get("key_a").action, table.get("key_a").reasons, table.get("key_a").events_seen) == ("challenge", ["campaign camp-1"], 60)
    store.insert_decisions([Decision(client_id="key_b", ts="2026-11-23T10:05:30Z", risk=0.9996, action=Action.THROTTLE, events_seen=70, reasons=[])])
    table.refresh()
    assert table.get("key_b").action == "deny"  # an older decision than the latest score changes nothing


def test_decisions_reach_lookups_from_the_topic_before_the_store(chdb_dsn: str, kafka_bootstrap: str) -> None:
    """A worker's decision is on the compacted decisions topic before its rows are in the store:
    followed, it reaches lookups at once, and a restarted API replays it from the topic."""
    import threading
    import time
    import uuid

    from kafka import KafkaProducer

    from clonewatch.streaming.config import StreamingConfig
    from clonewatch.streaming.processing import decision_message
    from clonewatch.streaming.topics import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    config = StreamingConfig(bootstrap=kafka_bootstrap, access_topic=f"a-{suffix}", decisions_topic=f"d-{suffix}", dead_letter_topic=f"x-{suffix}", partitions=2)
    ensure_topics(config)
    store = ClickHouseStore(chdb_dsn, database="apifollow")
    store.insert_risk_scores([score("key_known", "allow", "2026-11-23T10:00:00Z", 30, 0.4)])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for decision in (
        Decision(client_id="key_known", ts="2026-11-23T10:01:00Z", risk=0.99999, action=Action.CHALLENGE, events_seen=31, reasons=["campaign camp-1"]),
        Decision(client_id="key_new", ts="2026-11-23T10:02:00Z", risk=0.9996, action=Action.THROTTLE, events_seen=12, reasons=["evidence"]),
    ):
        key, value = decision_message(decision)
        producer.send(config.decisions_topic, key=key, value=value)
    producer.send(config.decisions_topic, key=b"key_bad", value=b"not a decision")
    producer.flush()
    producer.close()

    def follow() -> ClientTable:
        table, stop = ClientTable(store), threading.Event()
        table.refresh()
        threading.Thread(target=table.follow_decisions, args=(config, stop), daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (table.get("key_new") is None or table.get("key_known").action != "challenge"):
            time.sleep(0.2)
        stop.set()
        return table

    for table in (follow(), follow()):  # the second stands for the API after a restart
        assert (table.get("key_known").action, table.get("key_known").reasons) == ("challenge", ["campaign camp-1"])
        assert (table.get("key_new").action, table.get("key_new").events_seen) == ("throttle", 12)
        table.refresh()  # the store's older score does not undo the newer decision
        assert table.get("key_known").action == "challenge"
