"""`clonewatch receive`: gateways that push their logs over HTTP, as an operator runs it."""

from __future__ import annotations

import gzip
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ingest.formats import client_id_for_key
from ingest.receiver import PushReceiver
from tests.streaming_support import Background, Names, read_topic, wait_until

DATA = Path(__file__).parent / "data"
TOKEN = "test-receive-token"


def post(url: str, body: bytes, token: str | None = TOKEN, **headers: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def kong_batch(n: int, key: str = "sk-live-kongbatch01") -> bytes:
    """Kong http-log's queue: a JSON array of records, one per request."""
    return json.dumps([
        {"started_at": 1795428000000 + i, "client_ip": "203.0.113.9", "request": {"method": "POST", "uri": "/v1/chat/completions",
         "headers": {"x-api-key": key}}, "response": {"status": 200}, "latencies": {"request": 40}}
        for i in range(n)
    ]).encode()  # fmt: skip


def start(args: list[str], env: dict[str, str], log: Path) -> tuple[Background, str]:
    server = Background(["receive", "--port", "0", *args], {**env, "CLONEWATCH_RECEIVE_TOKEN": TOKEN}, log)
    wait_until(lambda: "listening on" in server.log() or not server.alive(), 60, "the receiver to listen")
    match = re.search(r"listening on (http://\S+/v1/logs)", server.log())
    assert match, server.log()
    return server, match.group(1)


def test_pushed_logs_reach_the_spool_and_bad_requests_get_clear_answers(tmp_path: Path) -> None:
    spool = tmp_path / "received" / "events.jsonl"
    server, url = start(["--spool", str(spool), "--max-body", "200000"], dict(__import__("os").environ), tmp_path / "receive.log")
    try:
        nginx = (DATA / "nginx-json.log").read_bytes()  # a real nginx's log, gzip-encoded as Vector sends it
        status, answer, _ = post(url, gzip.compress(nginx), **{"Content-Encoding": "gzip"})
        lines = len([line for line in nginx.splitlines() if line.strip()])
        assert status == 200 and answer["lines"] == lines and answer["dead_letters"] == 0 and answer["records"] >= lines

        status, answer, _ = post(url, kong_batch(25))
        assert (status, answer["lines"], answer["records"]) == (200, 1, 25)
        # the same log as Fluent Bit's HTTP output sends it (tail input: a JSON array of {"date", "log"})
        fluent_bit = json.dumps([{"date": 1796050065.2 + i, "log": line.decode("utf-8", "replace")} for i, line in enumerate(nginx.splitlines()) if line.strip()])
        status, answer, _ = post(url, fluent_bit.encode())
        assert status == 200 and answer["lines"] == lines and answer["dead_letters"] == 0 and answer["records"] >= lines
        # nginx's text log as Vector's HTTP sink sends it (file source, JSON lines of {"message", ...})
        combined = [line.decode() for line in (DATA / "nginx-combined.log").read_bytes().splitlines() if line.strip()]
        vector = "".join(json.dumps({"file": "/var/log/nginx/access.log", "host": "gw-1", "message": line, "source_type": "file",
                                     "timestamp": "2026-12-04T12:00:00Z"}) + "\n" for line in combined)  # fmt: skip
        status, answer, _ = post(url, vector.encode())
        assert (status, answer["lines"], answer["records"], answer["dead_letters"]) == (200, len(combined), len(combined), 0)
        status, answer, _ = post(url, b'{"not a log": \n{oops\n')
        assert status == 200 and answer["dead_letters"] == answer["lines"] == 2  # dead letters, not an error

        assert post(url, kong_batch(1), token="wrong")[0] == 401
        assert post(url, kong_batch(1), token=None)[0] == 401
        assert post(url, b"x" * 300_000)[0] == 413
        assert post(url, gzip.compress(b"\n" * 1_000_000), **{"Content-Encoding": "gzip"})[0] == 413  # a zip bomb
        with urllib.request.urlopen(url.replace("/v1/logs", "/healthz"), timeout=10) as health:
            assert health.status == 200
        metrics = urllib.request.Request(url.replace("/v1/logs", "/metrics"), headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(metrics, timeout=10) as scraped:
            series = dict(line.rsplit(" ", 1) for line in scraped.read().decode().splitlines() if not line.startswith("#"))
        assert series["clonewatch_receive_batches_total"] == "5" and series["clonewatch_receive_dead_letters_total"] == "2"
        assert series['clonewatch_receive_refused_total{status="401"}'] == "2" and series['clonewatch_receive_refused_total{status="413"}'] == "2"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url.replace("/v1/logs", "/metrics"), timeout=10)  # the token is needed
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in spool.read_text().splitlines()]
    kong = [r for r in records if r["client_id"] == client_id_for_key("sk-live-kongbatch01")]
    assert len(kong) == 25 and all("sk-live" not in json.dumps(r) for r in records)
    assert sum(r["client_id"].startswith("ip_") for r in records) >= len(combined)  # combined lines name no key: their address
    assert len(spool.with_name("events.dead-letters.jsonl").read_text().splitlines()) == 2
    assert "refused {401: 2, 413: 2}" in server.log()


def test_busy_receiver_answers_429_and_a_failing_sink_503() -> None:
    release, entered = threading.Event(), threading.Event()
    failing = {"now": False}

    def deliver(source, lines):
        if failing["now"]:
            raise OSError("disk full")
        entered.set()
        release.wait(30)
        return len(lines), 0

    receiver = PushReceiver(deliver, TOKEN, port=0, max_inflight=1)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = "http://{}:{}/v1/logs".format(*receiver.address)
    try:
        first = threading.Thread(target=post, args=(url, kong_batch(1)))
        first.start()
        assert entered.wait(30)
        status, _, headers = post(url, kong_batch(1))
        assert status == 429 and headers["Retry-After"] == "1"
        release.set()
        first.join(30)
        failing["now"] = True
        status, _, headers = post(url, kong_batch(1))
        assert status == 503 and headers["Retry-After"] == "5"
        failing["now"] = False
        assert post(url, kong_batch(1))[0] == 200
    finally:
        receiver.shutdown()


@pytest.mark.kafka
def test_pushed_batches_reach_the_access_topic_and_a_resent_batch_keeps_its_ids(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = Names.fresh("receive")
    server, url = start([], names.env(kafka_bootstrap), tmp_path / "receive.log")
    try:
        batch = b"\n".join(json.dumps({"ts": 1795428000 + i, "client_id": f"key_{i % 3}", "prompt": f"q {i}"}).encode() for i in range(40))
        assert post(url, batch)[0] == 200
        assert post(url, batch)[0] == 200  # the gateway did not hear the first answer and sent it again
    finally:
        assert server.stop() == 0
    messages = [json.loads(value) for _, value in read_topic(kafka_bootstrap, names.access, timeout=60)]
    assert len(messages) == 80 and len({m["request_id"] for m in messages}) == 40
