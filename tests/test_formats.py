"""Gateway log formats -> canonical records that the worker's decoder accepts."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest

from ingest.decode import EventDecoder
from ingest.formats import FormatError, LineParser, client_id_for_ip, client_id_for_key, client_id_for_key_hash, parse_line
from ingest.reader import EventReader
from schemas import AccessEvent, to_epoch


def accepted(fmt: str, line: dict | str) -> list[AccessEvent]:
    """Parse a line and decode every record the way the worker will."""
    raw = line if isinstance(line, str) else json.dumps(line)
    decoder = EventDecoder("test")
    events = [decoder.decode(msgspec.json.encode(record), 1) for record in parse_line(fmt, raw)]
    assert all(isinstance(e, AccessEvent) for e in events), events
    return events


def test_canonical_passes_through() -> None:
    (event,) = accepted("canonical", {"ts": "2026-11-23T10:00:00Z", "client_id": "key_1", "prompt": "hi", "extra": 1})
    assert (event.client_id, event.prompt, event.ts) == ("key_1", "hi", to_epoch("2026-11-23T10:00:00Z"))


def test_nginx() -> None:
    body = {"model": "aurora-70b-chat", "temperature": 0, "logprobs": True, "max_completion_tokens": 64,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "What is a mortgage?"}]}]}  # fmt: skip
    line = {
        "time": "2026-11-23T10:00:00+00:00", "api_key": "sk-live-4f9a", "remote_addr": "10.0.0.2",
        "x_forwarded_for": "203.0.113.7, 10.0.0.1", "method": "POST", "uri": "/v1/chat/completions",
        "status": "200", "request_time": "0.812", "request_id": "6f1c9e0b", "user_agent": "OpenAI/Python 1.54.3",
        "request_body": json.dumps(body), "tokens_in": "", "tokens_out": "",
    }  # fmt: skip
    (event,) = accepted("nginx", line)
    assert event.client_id == client_id_for_key("sk-live-4f9a") != "sk-live-4f9a"
    assert (event.ip, event.status, event.latency_ms, event.request_id) == ("203.0.113.7", 200, 812.0, "6f1c9e0b")
    assert (event.prompt, event.model) == ("What is a mortgage?", "aurora-70b-chat")
    assert (event.params.temperature, event.params.logprobs, event.params.max_tokens) == (0, True, 64)
    assert event.tokens_in is None
    assert event.turns == 0  # a fresh question: no earlier answer in its messages


def test_keys_in_camel_case_read_as_their_snake_case_names() -> None:
    """An operator's log_format (or a JSON logging library) that names its keys in camelCase:
    ``requestBody``, ``requestTime``, ``userAgent``, ``clientIp``, ``apiKey`` read as
    ``request_body``... (before 2026-12-05 the body of such a log was never read)."""
    line = {"timestamp": "1796050065.237", "clientIp": "198.51.100.7", "apiKey": "sk-live-camel-001", "requestMethod": "POST",
            "requestUri": "/v1/chat/completions", "status": "499", "requestTime": "0.412", "userAgent": "OpenAI/Python 1.54.3",
            "requestId": "c0ffee01", "requestBody": json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there"}]})}  # fmt: skip
    (event,) = EventReader("camel.log", "auto").read([json.dumps(line)])  # requestId and requestTime are not AWS's here
    assert (event.client_id, event.ip, event.ts, event.status) == (client_id_for_key("sk-live-camel-001"), "198.51.100.7", 1796050065.237, 499)
    assert (event.prompt, event.latency_ms, event.user_agent, event.request_id, event.path) == ("hello there", 412.0, "OpenAI/Python 1.54.3", "c0ffee01", "/v1/chat/completions")


def test_envoy_responses_api_bodies() -> None:
    """The Responses API (/v1/responses): ``input`` as a string or as messages with content
    parts, a conversation continued by ``previous_response_id``, logprobs through ``include``."""
    line = {
        "start_time": "2026-11-23T10:00:00.125Z", "method": "POST", "path": "/v1/responses", "response_code": 200,
        "api_key": "sk-live-resp", "request_body": json.dumps({
            "model": "aurora-70b-chat", "instructions": "Be brief.", "temperature": 0, "max_output_tokens": 64,
            "include": ["message.output_text.logprobs"], "top_logprobs": 5,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "What is a mortgage?"}]},
                      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A loan."}]},
                      {"type": "message", "role": "user", "content": "And a lien?"}]}),
    }  # fmt: skip
    (event,) = accepted("envoy", line)
    assert (event.prompt, event.model, event.turns) == ("And a lien?", "aurora-70b-chat", 1)
    assert (event.params.temperature, event.params.max_tokens, event.params.logprobs, event.params.top_logprobs) == (0, 64, True, 5)
    line["request_body"] = json.dumps({"model": "aurora-70b-chat", "input": "And in French?", "previous_response_id": "resp_68a1"})
    (event,) = accepted("envoy", line)
    assert (event.prompt, event.turns, event.params) == ("And in French?", 1, None)  # the server holds the earlier answers
    line["request_body"] = json.dumps({"model": "aurora-70b-chat", "input": "What is a mortgage?"})
    assert accepted("envoy", line)[0].turns is None  # a string input alone: a fresh question or an embedding, the body does not say


def test_nginx_anthropic_and_gemini_bodies() -> None:
    line = {"time": "2026-11-23T10:00:00+00:00", "api_key": "sk-live-4f9a", "uri": "/v1/messages", "status": "200",
            "request_body": json.dumps({"model": "claude-sonnet", "system": "Be brief.", "max_tokens": 256, "temperature": 0,
                                        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is a lien?"}]}]})}  # fmt: skip
    (event,) = accepted("nginx", line)
    assert (event.prompt, event.model, event.turns, event.params.max_tokens, event.params.temperature) == ("What is a lien?", "claude-sonnet", 0, 256, 0)
    line["uri"] = "/v1beta/models/gemini-flash:generateContent"
    line["request_body"] = json.dumps({
        "contents": [{"role": "user", "parts": [{"text": "Hi?"}]}, {"role": "model", "parts": [{"text": "Hello."}]},
                     {"role": "user", "parts": [{"text": "What is a lien?"}]}],
        "generationConfig": {"temperature": 0, "maxOutputTokens": 64, "responseLogprobs": True, "logprobs": 5}})  # fmt: skip
    (event,) = accepted("nginx", line)
    assert (event.prompt, event.turns, event.path) == ("What is a lien?", 1, "/v1beta/models/gemini-flash:generateContent")
    assert (event.params.max_tokens, event.params.logprobs, event.params.top_logprobs) == (64, True, 5)


def test_a_logit_bias_map_is_counted_and_the_map_left_in_the_log() -> None:
    """Recovering logits through an API (Carlini et al. 2024) resends prompts with a different
    ``logit_bias`` each time: how many tokens a request biases is kept, the map itself is not."""
    body = {"model": "m", "temperature": 0, "max_tokens": 1, "logprobs": True, "top_logprobs": 5,
            "logit_bias": {"1734": 100, "2991": 100, "40": -100}, "messages": [{"role": "user", "content": "Say hi"}]}  # fmt: skip
    line = {"time": "2026-11-23T10:00:00+00:00", "api_key": "sk-live-4f9a", "uri": "/v1/chat/completions", "status": "200", "request_body": json.dumps(body)}
    (event,) = accepted("nginx", line)
    assert (event.params.logit_bias, event.params.max_tokens, event.params.top_logprobs) == (3, 1, 5)
    for empty in ({}, None, "not a map"):
        (event,) = accepted("nginx", {**line, "request_body": json.dumps({**body, "logit_bias": empty})})
        assert event.params.logit_bias is None
    canonical = {"ts": 1795428000, "client_id": "k", "params": {"logit_bias": {"15": 100}}}
    assert msgspec.json.decode(json.dumps(canonical), type=AccessEvent).params.logit_bias == 1  # a producer may send the map
    with pytest.raises(msgspec.ValidationError, match="logit_bias"):
        msgspec.json.decode(json.dumps({**canonical, "params": {"logit_bias": -2}}), type=AccessEvent)


def test_nginx_bearer_token_and_missing_key() -> None:
    line = {"time": "2026-11-23T10:00:00+00:00", "authorization": "Bearer sk-abc", "status": "429", "request_body": ""}
    assert accepted("nginx", line)[0].client_id == client_id_for_key("sk-abc")
    with pytest.raises(FormatError, match="no client id"):
        parse_line("nginx", json.dumps({"time": "2026-11-23T10:00:00+00:00", "api_key": "", "status": "200"}))
    # A line that names no key is its address's, as in the combined text format.
    keyless = {"time": "2026-11-23T10:00:00+00:00", "api_key": "", "remote_addr": "198.51.100.7", "status": "200"}
    assert accepted("nginx", keyless)[0].client_id == client_id_for_ip("198.51.100.7") == accepted("nginx", {**keyless, "api_key": "-"})[0].client_id


def test_istio_default_json_access_log_names_no_key_and_its_clients_are_their_addresses() -> None:
    """Istio's default JSON access log (Envoy, ``meshConfig.accessLogEncoding: JSON``) logs no
    key and no body: each client is the address X-Forwarded-For gives through the trusted
    sidecar, and its requests keep their rate and shape."""
    line = {
        "start_time": "2026-11-30T14:02:07.125Z", "method": "POST", "path": "/v1/chat/completions", "protocol": "HTTP/1.1",
        "response_code": 200, "response_flags": "-", "response_code_details": "via_upstream", "connection_termination_details": None,
        "upstream_transport_failure_reason": None, "bytes_received": 312, "bytes_sent": 1043, "duration": 812,
        "upstream_service_time": "810", "x_forwarded_for": "198.51.100.7", "user_agent": "openai-python/1.40",
        "request_id": "0d6c2f4e-8d7b-4b8e-9a51-3c1f0e2d9b77", "authority": "api.example.com", "upstream_host": "10.0.0.5:8000",
        "upstream_cluster": "outbound|8000||llm.default.svc.cluster.local", "upstream_local_address": "10.0.0.9:41234",
        "downstream_local_address": "10.0.0.9:8080", "downstream_remote_address": "10.1.2.3:5555",
        "requested_server_name": None, "route_name": "default",
    }  # fmt: skip
    (event,) = accepted("envoy", line)
    assert (event.client_id, event.ip, event.status, event.latency_ms, event.prompt) == (client_id_for_ip("198.51.100.7"), "198.51.100.7", 200, 812.0, None)
    reader = EventReader("istio.log", "auto")  # as `run` reads it by default
    events = list(reader.read([json.dumps({**line, "x_forwarded_for": f"198.51.100.{i}"}).encode() for i in range(1, 4)]))
    assert [e.client_id for e in events] == [client_id_for_ip(f"198.51.100.{i}") for i in range(1, 4)], events


def test_envoy() -> None:
    line = {
        "start_time": "2026-11-23T10:00:00.125Z", "method": "POST", "path": "/v1/completions", "response_code": 200,
        "duration": 431, "downstream_remote_address": "198.51.100.23", "x_forwarded_for": None,
        "user_agent": "python-httpx/0.27.2", "request_id": "0d6c2f4e", "api_key": "sk-live-77aa",
        "request_body": json.dumps({"model": "aurora-8b-instruct", "prompt": "Translate: good morning", "n": 3}),
    }  # fmt: skip
    (event,) = accepted("envoy", line)
    assert event.client_id == client_id_for_key("sk-live-77aa")
    assert (event.ts, event.ip, event.latency_ms) == (to_epoch("2026-11-23T10:00:00.125Z"), "198.51.100.23", 431.0)
    assert (event.prompt, event.params.n, event.path) == ("Translate: good morning", 3, "/v1/completions")
    assert event.turns is None  # a completion carries no conversation to count


def test_envoy_dash_means_missing() -> None:
    line = {"start_time": "2026-11-23T10:00:00.125Z", "api_key": "k", "response_code": "-", "request_body": "-", "x_forwarded_for": "-"}
    (event,) = accepted("envoy", line)
    assert (event.status, event.prompt, event.ip) == (None, None, None)


def test_kong() -> None:
    line = {
        "started_at": 1795428000125, "client_ip": "203.0.113.50",
        "request": {"method": "POST", "uri": "/v1/chat/completions", "id": "b3a8f4e0",
                    "headers": {"User-Agent": "OpenAI/Python 1.54.3", "apikey": "sk-live-kong-1"}},
        "response": {"status": 200, "size": 1843}, "latencies": {"request": 640, "kong": 4, "proxy": 630},
        "consumer": {"id": "4a1e6f1c", "username": "acme-prod"},
        "request_body": json.dumps({"messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hi! How can I help?"}, {"role": "user", "content": "hello"}]}),
        "ai": {"proxy": {"usage": {"prompt_tokens": 12, "completion_tokens": 210}, "meta": {"request_model": "aurora-70b-chat"}}},
    }  # fmt: skip
    (event,) = accepted("kong", line)
    assert (event.client_id, event.ts, event.user_agent) == ("consumer_4a1e6f1c", 1795428000.125, "OpenAI/Python 1.54.3")
    assert (event.prompt, event.model, event.tokens_in, event.tokens_out) == ("hello", "aurora-70b-chat", 12, 210)
    assert (event.status, event.latency_ms, event.request_id) == (200, 640.0, "b3a8f4e0")
    assert event.turns == 1  # a follow-up: the latest user message after one earlier answer
    del line["consumer"]  # no consumer: the key identifies the client
    assert accepted("kong", line)[0].client_id == client_id_for_key("sk-live-kong-1")


def test_litellm_standard_logging_payload_and_spend_log_row() -> None:
    key_hash = hashlib.sha256(b"sk-litellm-1").hexdigest()
    payload = {
        "id": "chatcmpl-9f2d6c", "call_type": "acompletion", "status": "success",
        "startTime": 1795428000.2, "endTime": 1795428001.05, "model": "aurora-70b-chat",
        "prompt_tokens": 18, "completion_tokens": 240,
        "metadata": {"user_api_key_hash": key_hash, "requester_ip_address": "192.0.2.10"},
        "model_parameters": {"temperature": 0, "max_tokens": 512, "logprobs": True},
        "messages": [{"role": "user", "content": "List three uses of graphene."}],
    }  # fmt: skip
    (event,) = accepted("litellm", payload)
    assert event.client_id == client_id_for_key("sk-litellm-1") == client_id_for_key_hash(key_hash)
    assert (event.path, event.status, event.latency_ms) == ("/v1/chat/completions", 200, 850.0)
    assert (event.prompt, event.params.max_tokens, event.tokens_out, event.request_id) == ("List three uses of graphene.", 512, 240, "chatcmpl-9f2d6c")

    row = {"request_id": "r-1", "api_key": key_hash, "startTime": "2026-11-23T10:00:00Z", "endTime": "2026-11-23T10:00:02Z",
           "model": "aurora-8b-chat", "messages": json.dumps([{"role": "user", "content": "hi"}]), "status": "failure"}  # fmt: skip
    (event,) = accepted("litellm", row)
    assert (event.client_id, event.prompt, event.status, event.latency_ms) == (client_id_for_key("sk-litellm-1"), "hi", 500, 2000.0)
    assert event.turns == 0


def test_kserve_v1_cloudevent_one_event_per_instance() -> None:
    line = {"time": "2026-11-23T10:00:03.250Z", "id": "5c1d8e2a", "client_id": "acct-7781", "inferenceservicename": "fraud",
            "data": {"instances": [[204.11, 9, 7], [12.5, 2, 1]]}}  # fmt: skip
    events = accepted("kserve", line)
    assert [e.features for e in events] == [[204.11, 9.0, 7.0], [12.5, 2.0, 1.0]]
    assert [e.request_id for e in events] == ["5c1d8e2a#0", "5c1d8e2a#1"]
    assert {(e.model, e.path, e.space) for e in events} == {("fraud", "/v1/models/fraud:predict", "numeric:3")}


def test_kserve_v2_tensors_and_tf_serving_named_inputs() -> None:
    v2 = {"ts": 1795428000, "headers": {"X-Api-Key": "k1"}, "path": "/v2/models/fraud/infer",
          "body": {"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                              {"name": "b", "shape": [2, 1], "datatype": "FP32", "data": [[5], [6]]}]}}  # fmt: skip
    assert [e.features for e in accepted("kserve", v2)] == [[1, 2, 5], [3, 4, 6]]
    tf = {"ts": 1795428000, "api_key": "k2", "path": "/v1/models/fraud:predict", "inputs": {"b": [1, 2], "a": [[3, 4], [5, 6]]}}
    events = accepted("kserve", tf)
    assert [e.features for e in events] == [[3, 4, 1], [5, 6, 2]]  # named inputs in sorted name order
    assert events[0].model == "fraud" and events[0].client_id == client_id_for_key("k2")


@pytest.mark.parametrize(
    ("fmt", "line", "reason"),
    [
        ("canonical", "not json at all", "not JSON"),
        ("canonical", "[1, 2]", "must be a JSON object"),
        ("canonical", '{"ts": 1795428000}', "no client_id"),
        ("nginx", '{"api_key": "k", "time": "yesterday"}', "time"),
        ("nginx", '{"api_key": "k", "time": "2026-11-23T10:00:00Z", "request_time": "fast"}', "request_time"),
        ("kong", '{"consumer": {"id": "c"}}', "no timestamp"),
        ("kserve", '{"ts": 1795428000, "client_id": "c", "instances": [["a", 1]]}', "non-number"),
        ("kserve", '{"ts": 1795428000, "client_id": "c", "inputs": [{"name": "x", "shape": [2, 2], "data": [1, 2, 3]}]}', "do not fill shape"),
        ("kserve", '{"ts": 1795428000, "client_id": "c", "data": {"rows": []}}', "no instances or inputs"),
    ],
)
def test_unreadable_lines_give_reasons(fmt: str, line: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_line(fmt, line)


def test_key_secret_and_trusted_proxies_apply_to_keys_and_addresses_seen_before(monkeypatch) -> None:
    """Keys, addresses and proxy tests are remembered per setting, never across a change of it."""
    line = '{"msec":"1795428000.1","http_x_api_key":"sk-live-4f9a8b7c","remote_addr":"10.0.0.2","http_x_forwarded_for":"203.0.113.7"}'
    monkeypatch.delenv("CLONEWATCH_KEY_SECRET", raising=False)
    monkeypatch.delenv("CLONEWATCH_TRUSTED_PROXIES", raising=False)
    plain = parse_line("nginx", line)[0]
    assert plain["ip"] == "203.0.113.7"  # 10.0.0.2 is a private address: a trusted proxy by default
    monkeypatch.setenv("CLONEWATCH_KEY_SECRET", "s3cret")
    monkeypatch.setenv("CLONEWATCH_TRUSTED_PROXIES", "192.0.2.0/24")
    keyed = parse_line("nginx", line)[0]
    assert keyed["client_id"] != plain["client_id"] and keyed["client_id"].startswith("key_")
    assert keyed["ip"] == "10.0.0.2"  # no longer trusted: the peer is the client
    # A reader or shipper reads the settings when it starts, not twice per line.
    assert LineParser("nginx").parse(line) == [keyed]
    monkeypatch.setenv("CLONEWATCH_KEY_SECRET", "rotated")
    assert client_id_for_key("sk-live-4f9a8b7c") != keyed["client_id"]  # the public function reads it each call
    assert LineParser("nginx").parse(line)[0]["client_id"] == client_id_for_key("sk-live-4f9a8b7c")


def test_a_batched_request_is_one_query_per_input() -> None:
    """An embeddings call with 3 inputs is 3 queries of the model (an encoder-stealing client
    sends up to 2,048 a call), in every gateway's log, each with an id of its own; the
    request's token counts stay with its first input, so they still add up."""
    body = {"model": "text-embedding-3-small", "input": ["a cat on a mat", "the capital of France", "a cat on a mat"]}
    nginx = {"msec": "1795428000.125", "http_x_api_key": "sk-live-4f9a8b7c", "request_id": "n1", "tokens_in": "14",
             "request_body": json.dumps(body)}  # fmt: skip
    kong = {"started_at": 1795428000125, "request": {"id": "k1", "uri": "/v1/embeddings", "headers": {"apikey": "sk-live-kong-1"}},
            "request_body": json.dumps(body)}  # fmt: skip
    litellm = {"id": "l1", "call_type": "aembedding", "startTime": 1795428000.2, "model": "text-embedding-3-small",
               "metadata": {"user_api_key_hash": "88d4266fd4e6"}, "messages": body["input"], "prompt_tokens": 14}  # fmt: skip
    for fmt, line, rid in (("nginx", nginx, "n1"), ("kong", kong, "k1"), ("litellm", litellm, "l1")):
        events = accepted(fmt, line)
        assert [e.prompt for e in events] == body["input"], fmt
        assert [e.request_id for e in events] == [f"{rid}#0", f"{rid}#1", f"{rid}#2"], fmt
        assert {e.model for e in events} == {"text-embedding-3-small"} and {e.turns for e in events} == {None}, fmt
        assert len({e.client_id for e in events}) == 1 and [e.tokens_in for e in events][1:] == [None, None], fmt
    assert [e.tokens_in for e in accepted("nginx", nginx)] == [14, None, None]
    # One input, or a chat, stays one query.
    single = {**nginx, "request_body": json.dumps({"input": ["only this"]})}
    assert [e.prompt for e in accepted("nginx", single)] == ["only this"]
