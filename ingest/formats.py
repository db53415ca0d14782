"""Gateway log lines in common formats -> canonical AccessEvent dicts.

Each parser takes one decoded JSON log line (a dict) and returns canonical records
(dicts with the fields of :class:`schemas.AccessEvent`), or raises :class:`FormatError`
with a reason; :func:`parse_line` wraps JSON decoding, so a caller gets records or a
reason, never an exception it did not ask for. Validation of the canonical records
(types, timestamps, limits) stays with the worker's :class:`ingest.decode.EventDecoder`.

Client ids. A client is whoever holds an API key. Raw keys must not travel further than
the gateway's own log, so a key becomes ``key_`` + the first 16 hex digits of its SHA-256
(:func:`client_id_for_key`). LiteLLM logs that hash already (``hash_token`` is SHA-256),
so the same key gets the same client id from every format, and a gateway can compute the
id of the key it is looking at to consult the decisions (examples/gateway_decision_cache.py).

Formats (``--format`` of ``clonewatch ship``):

- ``canonical``: clonewatch's own JSON record, passed through.
- ``nginx``: nginx ``log_format ... escape=json`` (:data:`NGINX_LOG_FORMAT`).
- ``envoy``: Envoy file access log with ``json_format`` (:data:`ENVOY_JSON_FORMAT`).
- ``kong``: Kong's log serializer, as written by the file-log plugin or posted by http-log.
- ``litellm``: LiteLLM proxy ``StandardLoggingPayload`` (logging callbacks) or a SpendLogs row.
- ``kserve``: model-server predict requests: KServe v1/v2 and TF-Serving REST bodies
  (``instances``/``inputs``), bare or in a KServe payload-logger CloudEvent.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from schemas import to_epoch

Record = dict[str, Any]


class FormatError(ValueError):
    """A line that cannot be turned into canonical records; the message is the reason."""


def client_id_for_key(api_key: str) -> str:
    """The client id of an API key: ``key_`` + 16 hex digits of its SHA-256.

    >>> client_id_for_key("sk-test-123")
    'key_e0dbaa0c6455768b'
    """
    return client_id_for_key_hash(hashlib.sha256(api_key.encode()).hexdigest())


def client_id_for_key_hash(sha256_hex: str) -> str:
    """The client id of a key whose SHA-256 (hex) is already known, as LiteLLM logs it."""
    return "key_" + sha256_hex.lower()[:16]


# --- helpers shared by the parsers -------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or value == "" or value == "-"


def _first(*values: Any) -> Any:
    """The first value that is present (not None, empty or '-')."""
    for value in values:
        if not _missing(value):
            return value
    return None


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _number(value: Any, what: str) -> float | None:
    if _missing(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise FormatError(f"{what} {value!r} is not a finite number")
    return number


def _int(value: Any, what: str) -> int | None:
    number = _number(value, what)
    return None if number is None else int(number)


def _json_value(value: Any) -> Any:
    """A value logged as JSON text (nginx, Envoy metadata, SpendLogs columns) or as JSON itself."""
    if isinstance(value, str) and not _missing(value):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return None  # not JSON (form data, binary): nothing clonewatch can read in it
    return value


def _json_body(value: Any) -> Mapping | None:
    """A request body logged as a JSON object or as a string holding one."""
    decoded = _json_value(value)
    return decoded if isinstance(decoded, Mapping) else None


def _text(content: Any) -> str | None:
    """Text of an OpenAI message content: a string or a list of parts (``{"type": "text"}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def prompt_of(messages: Any = None, prompt: Any = None, input_: Any = None) -> str | None:
    """The prompt of an OpenAI-style request: the last user message, ``prompt`` or ``input``.

    >>> prompt_of([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}])
    'Hi?'
    """
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                text = _text(message.get("content"))
                if text:
                    return text
    for value in (prompt, input_):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return "\n".join(value)
    return None


_PARAMS = ("temperature", "max_tokens", "logprobs", "top_logprobs", "n")


def params_of(body: Mapping) -> dict | None:
    """The sampling parameters clonewatch uses, from an OpenAI-style body or LiteLLM's model_parameters."""
    params = {name: body[name] for name in _PARAMS if not _missing(body.get(name))}
    if "max_tokens" not in params and not _missing(body.get("max_completion_tokens")):
        params["max_tokens"] = body["max_completion_tokens"]
    return params or None


def from_openai_body(body: Mapping | None) -> Record:
    """Prompt, model and parameters of an OpenAI-compatible request body (or nothing)."""
    if not body:
        return {}
    out: Record = {"prompt": prompt_of(body.get("messages"), body.get("prompt"), body.get("input"))}
    if isinstance(body.get("model"), str):
        out["model"] = body["model"]
    out["params"] = params_of(body)
    return out


def _header(headers: Any, name: str) -> Any:
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) and value else value
    return None


def _bearer(value: Any) -> str | None:
    if isinstance(value, str) and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def _key_client(api_key: Any) -> str | None:
    return client_id_for_key(api_key) if isinstance(api_key, str) and not _missing(api_key) else None


def _finish(record: Record) -> Record:
    """Drop empty fields; require the two fields every record needs."""
    out = {k: v for k, v in record.items() if not _missing(v)}
    if "client_id" not in out:
        raise FormatError("no client id in the line (no API key or consumer to identify the client)")
    if "ts" not in out:
        raise FormatError("no timestamp in the line")
    return out


def _ts(value: Any, what: str = "timestamp") -> float | None:
    if _missing(value):
        return None
    try:
        return to_epoch(value)
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{what}: {exc}") from None


# --- the parsers -------------------------------------------------------------------------


def parse_canonical(data: Mapping) -> list[Record]:
    """clonewatch's canonical record (see schemas/json/access_event.schema.json), passed through.

    >>> parse_canonical({"ts": "2026-11-23T10:00:00Z", "client_id": "key_1", "prompt": "hi"})
    [{'ts': '2026-11-23T10:00:00Z', 'client_id': 'key_1', 'prompt': 'hi'}]
    """
    if not isinstance(data.get("client_id"), str) or not data["client_id"].strip():
        raise FormatError("no client_id in the record")
    return [dict(data)]


NGINX_LOG_FORMAT = r"""
# nginx.conf, http {} block. escape=json writes every value as a JSON string.
# The API key header is read from $http_x_api_key (or $http_authorization: "Bearer ...");
# the shipper hashes it into the client id, nothing downstream sees the key.
# $request_body is only set where nginx reads the body (proxy_pass locations).
log_format clonewatch escape=json
  '{"time":"$time_iso8601","api_key":"$http_x_api_key","remote_addr":"$remote_addr",'
  '"x_forwarded_for":"$http_x_forwarded_for","method":"$request_method","uri":"$request_uri",'
  '"status":"$status","request_time":"$request_time","request_id":"$request_id",'
  '"user_agent":"$http_user_agent","request_body":"$request_body",'
  '"tokens_in":"$upstream_http_x_tokens_in","tokens_out":"$upstream_http_x_tokens_out"}';
access_log /var/log/nginx/clonewatch.log clonewatch;
""".strip()


def parse_nginx(data: Mapping) -> list[Record]:
    """nginx JSON access log written with :data:`NGINX_LOG_FORMAT`.

    Sample line::

        {"time":"2026-11-23T10:00:00+00:00","api_key":"sk-live-4f9a","remote_addr":"203.0.113.7",
         "x_forwarded_for":"","method":"POST","uri":"/v1/chat/completions","status":"200",
         "request_time":"0.812","request_id":"6f1c9e0b2a7d4e55","user_agent":"OpenAI/Python 1.54.3",
         "request_body":"{\\"model\\":\\"aurora-70b-chat\\",\\"temperature\\":0,
         \\"messages\\":[{\\"role\\":\\"user\\",\\"content\\":\\"What is a mortgage?\\"}]}",
         "tokens_in":"","tokens_out":""}
    """
    api_key = _first(data.get("api_key"), _bearer(data.get("authorization")))
    forwarded = data.get("x_forwarded_for")
    ip = forwarded.split(",")[0].strip() if isinstance(forwarded, str) and not _missing(forwarded) else None
    seconds = _number(data.get("request_time"), "request_time")
    return [_finish({
        "ts": _ts(_first(data.get("time"), data.get("time_iso8601"), data.get("msec")), "time"),
        "client_id": _first(data.get("client_id"), _key_client(api_key)),
        "ip": _first(ip, data.get("remote_addr")),
        "method": data.get("method"),
        "path": _first(data.get("uri"), data.get("request_uri")),
        "status": _int(data.get("status"), "status"),
        "latency_ms": None if seconds is None else round(seconds * 1000.0, 3),
        "user_agent": data.get("user_agent"),
        "request_id": data.get("request_id"),
        "tokens_in": _int(data.get("tokens_in"), "tokens_in"),
        "tokens_out": _int(data.get("tokens_out"), "tokens_out"),
        **from_openai_body(_json_body(data.get("request_body"))),
    })]  # fmt: skip


ENVOY_JSON_FORMAT = """
# Envoy listener / HCM access_log. Envoy does not log request bodies itself: a Lua or
# ext_proc filter can put the prompt (or the whole JSON body) into dynamic metadata.
access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: /var/log/envoy/clonewatch.log
    log_format:
      json_format:
        start_time: "%START_TIME%"
        method: "%REQ(:METHOD)%"
        path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
        response_code: "%RESPONSE_CODE%"
        duration: "%DURATION%"
        downstream_remote_address: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
        x_forwarded_for: "%REQ(X-FORWARDED-FOR)%"
        user_agent: "%REQ(USER-AGENT)%"
        request_id: "%REQ(X-REQUEST-ID)%"
        api_key: "%REQ(X-API-KEY)%"
        request_body: "%DYNAMIC_METADATA(clonewatch:request_body)%"
""".strip()


def parse_envoy(data: Mapping) -> list[Record]:
    """Envoy JSON access log written with :data:`ENVOY_JSON_FORMAT`.

    Sample line::

        {"start_time":"2026-11-23T10:00:00.125Z","method":"POST","path":"/v1/completions",
         "response_code":200,"duration":431,"downstream_remote_address":"198.51.100.23",
         "x_forwarded_for":null,"user_agent":"python-httpx/0.27.2",
         "request_id":"0d6c2f4e-8d7b-4b8e-9a51-3c1f0e2d9b77","api_key":"sk-live-77aa",
         "request_body":"{\\"model\\":\\"aurora-8b-instruct\\",\\"prompt\\":\\"Translate: good morning\\"}"}
    """
    forwarded = data.get("x_forwarded_for")
    ip = forwarded.split(",")[0].strip() if isinstance(forwarded, str) and not _missing(forwarded) else None
    body = from_openai_body(_json_body(data.get("request_body")))
    return [_finish({
        "ts": _ts(data.get("start_time"), "start_time"),
        "client_id": _first(data.get("client_id"), _key_client(_first(data.get("api_key"), _bearer(data.get("authorization"))))),
        "ip": _first(ip, data.get("downstream_remote_address")),
        "method": data.get("method"),
        "path": data.get("path"),
        "status": _int(data.get("response_code"), "response_code"),
        "latency_ms": _number(data.get("duration"), "duration"),
        "user_agent": data.get("user_agent"),
        "request_id": data.get("request_id"),
        **body,
        "prompt": _first(body.get("prompt"), data.get("prompt")),
    })]  # fmt: skip


def parse_kong(data: Mapping) -> list[Record]:
    """Kong's log serializer (file-log plugin lines, or http-log request bodies).

    The client is the authenticated consumer (its id), else the ``apikey``/``x-api-key``
    header. Kong does not log bodies; add the prompt with the plugin's
    ``custom_fields_by_lua = {request_body = "return kong.request.get_raw_body()"}``.
    Token counts come from the AI Proxy plugin's ``ai`` statistics when present.

    Sample line::

        {"started_at":1795428000125,"client_ip":"203.0.113.50",
         "request":{"method":"POST","uri":"/v1/chat/completions","id":"b3a8f4e0c91d4d7e",
                    "headers":{"user-agent":"OpenAI/Python 1.54.3","apikey":"sk-live-kong-1"}},
         "response":{"status":200,"size":1843},"latencies":{"request":640,"kong":4,"proxy":630},
         "consumer":{"id":"4a1e6f1c-0d52-4c1b-9d8e-2f0f3e9b5a11","username":"acme-prod"},
         "request_body":"{\\"model\\":\\"aurora-70b-chat\\",\\"messages\\":[{\\"role\\":\\"user\\",\\"content\\":\\"hello\\"}]}",
         "ai":{"proxy":{"usage":{"prompt_tokens":12,"completion_tokens":210},"meta":{"request_model":"aurora-70b-chat"}}}}
    """
    request = data.get("request") if isinstance(data.get("request"), Mapping) else {}
    headers = request.get("headers")
    api_key = _first(_header(headers, "apikey"), _header(headers, "x-api-key"), _bearer(_header(headers, "authorization")))
    consumer = _first(_dig(data, "consumer", "id"), _dig(data, "authenticated_entity", "consumer_id"))
    started = _number(data.get("started_at"), "started_at")
    usage, ai_model = _kong_ai(data.get("ai"))
    body = from_openai_body(_json_body(data.get("request_body")))
    return [_finish({
        "ts": None if started is None else _ts(started / 1000.0, "started_at"),
        "client_id": _first(data.get("client_id"), None if consumer is None else f"consumer_{consumer}", _key_client(api_key)),
        "ip": data.get("client_ip"),
        "method": request.get("method"),
        "path": _first(request.get("uri"), data.get("upstream_uri")),
        "status": _int(_dig(data, "response", "status"), "response.status"),
        "latency_ms": _number(_dig(data, "latencies", "request"), "latencies.request"),
        "user_agent": _header(headers, "user-agent"),
        "request_id": _first(request.get("id"), _header(headers, "x-request-id"), _header(_dig(data, "response", "headers"), "x-kong-request-id")),
        "tokens_in": _int(usage.get("prompt_tokens"), "ai usage prompt_tokens"),
        "tokens_out": _int(usage.get("completion_tokens"), "ai usage completion_tokens"),
        **body,
        "model": _first(body.get("model"), ai_model),
    })]  # fmt: skip


def _kong_ai(ai: Any) -> tuple[Mapping, str | None]:
    """Usage and requested model from the AI plugins' ``ai`` log section (any plugin name)."""
    if isinstance(ai, Mapping):
        for section in ai.values():
            if isinstance(section, Mapping) and isinstance(section.get("usage"), Mapping):
                return section["usage"], _dig(section, "meta", "request_model")
    return {}, None


_LITELLM_PATHS = {
    "completion": "/v1/chat/completions", "acompletion": "/v1/chat/completions",
    "text_completion": "/v1/completions", "atext_completion": "/v1/completions",
    "embedding": "/v1/embeddings", "aembedding": "/v1/embeddings",
}  # fmt: skip


def parse_litellm(data: Mapping) -> list[Record]:
    """LiteLLM proxy logs: a ``StandardLoggingPayload`` or a ``LiteLLM_SpendLogs`` row.

    The client is the virtual key, by the SHA-256 hash LiteLLM logs (``metadata.user_api_key_hash``
    or the SpendLogs ``api_key`` column).

    Sample line (StandardLoggingPayload, abridged)::

        {"id":"chatcmpl-9f2d6c","call_type":"acompletion","status":"success",
         "startTime":1795428000.2,"endTime":1795428001.05,"model":"aurora-70b-chat",
         "prompt_tokens":18,"completion_tokens":240,
         "metadata":{"user_api_key_hash":"88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589",
                     "requester_ip_address":"192.0.2.10"},
         "model_parameters":{"temperature":0,"max_tokens":512,"logprobs":true},
         "messages":[{"role":"user","content":"List three uses of graphene."}]}
    """
    metadata = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
    key_hash = _first(metadata.get("user_api_key_hash"), data.get("api_key"), data.get("hashed_api_key"))
    start = _ts(data.get("startTime"), "startTime")
    end = _ts(data.get("endTime"), "endTime")
    messages = _json_value(data.get("messages"))
    parameters = data.get("model_parameters")
    status = data.get("status")
    return [_finish({
        "ts": start,
        "client_id": _first(data.get("client_id"), None if not isinstance(key_hash, str) else client_id_for_key_hash(key_hash)),
        "ip": _first(data.get("requester_ip_address"), metadata.get("requester_ip_address")),
        "path": _LITELLM_PATHS.get(data.get("call_type")),
        "status": {"success": 200, "failure": 500}.get(status) if isinstance(status, str) else None,
        "latency_ms": None if start is None or end is None else round((end - start) * 1000.0, 3),
        "model": _first(data.get("model_group"), data.get("model")),
        "prompt": prompt_of(messages, data.get("prompt")),
        "params": params_of(parameters) if isinstance(parameters, Mapping) else None,
        "tokens_in": _int(data.get("prompt_tokens"), "prompt_tokens"),
        "tokens_out": _int(data.get("completion_tokens"), "completion_tokens"),
        "request_id": _first(data.get("request_id"), data.get("id")),
    })]  # fmt: skip


def parse_kserve(data: Mapping) -> list[Record]:
    """Predict requests of KServe (v1 ``instances``, v2 ``inputs``) and TF-Serving REST.

    One record per instance (a batch of 32 rows is 32 queries of the model), each with
    its row as ``features``. The line is the request body with the caller's identity and
    time added by whatever logs it, or a KServe payload-logger CloudEvent (``data`` =
    the body, ``time``, ``id``, ``inferenceservicename``). The payload logger does not
    know the caller: the line needs ``client_id``, ``api_key`` or ``headers``.

    Rows may be lists of numbers (nested lists are flattened), objects of named numbers
    (taken in sorted name order) or, for v2, tensors with ``shape`` and flat ``data``.

    Sample line::

        {"time":"2026-11-23T10:00:03.250Z","id":"5c1d8e2a","client_id":"acct-7781",
         "path":"/v1/models/fraud:predict","inferenceservicename":"fraud",
         "data":{"instances":[[204.11,9,7,1,0,1430,3,85.8],[12.5,2,1,0,0,80,1,20.1]]}}
    """
    body = data.get("data") if isinstance(data.get("data"), Mapping) else data.get("body", data)
    if not isinstance(body, Mapping):
        raise FormatError("no predict request body (data/body) in the line")
    rows = _predict_rows(body)
    headers = data.get("headers")
    api_key = _first(data.get("api_key"), _header(headers, "x-api-key"), _bearer(_header(headers, "authorization")))
    path = data.get("path")
    model = _first(data.get("model"), data.get("inferenceservicename"), body.get("model_name"))
    if model is None and isinstance(path, str) and path.startswith("/v1/models/"):
        model = path[len("/v1/models/"):].split(":")[0]
    request_id = _first(data.get("request_id"), data.get("id"), body.get("id"))
    base = {
        "ts": _ts(_first(data.get("time"), data.get("ts")), "time"),
        "client_id": _first(data.get("client_id"), _header(headers, "x-client-id"), _key_client(api_key)),
        "ip": data.get("ip"),
        "method": "POST",
        "path": _first(path, None if model is None else f"/v1/models/{model}:predict"),
        "status": _int(data.get("status"), "status"),
        "latency_ms": _number(data.get("latency_ms"), "latency_ms"),
        "model": model,
        "user_agent": _header(headers, "user-agent"),
    }
    records = []
    for i, row in enumerate(rows):
        rid = request_id if request_id is None or len(rows) == 1 else f"{request_id}#{i}"
        records.append(_finish({**base, "features": row, "request_id": rid}))
    return records


def _flat_numbers(value: Any, what: str) -> list[float]:
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        raise FormatError(f"{what} holds a non-number ({value!r})")
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, Mapping):
        return [x for key in sorted(value) for x in _flat_numbers(value[key], what)]
    if isinstance(value, list):
        return [x for item in value for x in _flat_numbers(item, what)]
    raise FormatError(f"{what} holds a non-number ({value!r})")


def _predict_rows(body: Mapping) -> list[list[float]]:
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise FormatError("instances must be a non-empty list")
        return [_flat_numbers(row, "instances") for row in instances]
    inputs = body.get("inputs")
    if isinstance(inputs, list) and inputs and all(isinstance(t, Mapping) and "data" in t for t in inputs):
        return _v2_rows(inputs)
    if isinstance(inputs, list) and inputs:  # TF-Serving columnar, one unnamed input
        return [_flat_numbers(row, "inputs") for row in inputs]
    if isinstance(inputs, Mapping) and inputs:  # TF-Serving columnar, named inputs
        columns = [inputs[name] for name in sorted(inputs)]
        if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
            raise FormatError("named inputs must be lists of the same length")
        return [[x for column in columns for x in _flat_numbers(column[i], "inputs")] for i in range(len(columns[0]))]
    raise FormatError("no instances or inputs in the predict request")


def _v2_rows(tensors: list[Mapping]) -> list[list[float]]:
    """KServe v2 (Open Inference Protocol) tensors -> one row per index of the first dimension."""
    columns = []
    for tensor in tensors:
        values = _flat_numbers(tensor["data"], f"input {tensor.get('name', '?')}")
        shape = tensor.get("shape") or [1, len(values)]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise FormatError(f"input {tensor.get('name', '?')} has an invalid shape {shape!r}")
        n_rows = shape[0]
        if len(values) != math.prod(shape):
            raise FormatError(f"input {tensor.get('name', '?')}: {len(values)} values do not fill shape {shape}")
        width = len(values) // n_rows
        columns.append([values[i * width : (i + 1) * width] for i in range(n_rows)])
    if len({len(c) for c in columns}) != 1:
        raise FormatError("inputs disagree on the batch size (first dimension)")
    return [[x for column in columns for x in column[i]] for i in range(len(columns[0]))]


PARSERS: dict[str, Callable[[Mapping], list[Record]]] = {
    "canonical": parse_canonical,
    "nginx": parse_nginx,
    "envoy": parse_envoy,
    "kong": parse_kong,
    "litellm": parse_litellm,
    "kserve": parse_kserve,
}


def parse_line(fmt: str, line: bytes | str) -> list[Record]:
    """Canonical records of one log line in format ``fmt``; raises FormatError with the reason."""
    try:
        parser = PARSERS[fmt]
    except KeyError:
        raise ValueError(f"unknown log format {fmt!r}; choose from {', '.join(PARSERS)}") from None
    try:
        data = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise FormatError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FormatError(f"a log line must be a JSON object, not {type(data).__name__}")
    return parser(data)
