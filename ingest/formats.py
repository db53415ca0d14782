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
- ``nginx``: nginx ``log_format ... escape=json`` (:data:`NGINX_LOG_FORMAT`), the same
  without ``escape=json``, or the default ``combined`` text format.
- ``envoy``: Envoy file access log with ``json_format`` (:data:`ENVOY_JSON_FORMAT`), or its
  default text format.
- ``kong``: Kong's log serializer, as written by the file-log plugin or posted by http-log.
- ``litellm``: LiteLLM proxy ``StandardLoggingPayload`` (logging callbacks) or a SpendLogs row.
- ``kserve``: model-server predict requests: KServe v1/v2 and TF-Serving REST bodies
  (``instances``/``inputs``), bare or in a KServe payload-logger CloudEvent.
- ``aws``: AWS API Gateway JSON access logs (no body: rate and shape).
- ``caddy``: Caddy's JSON access log (no body: rate and shape).
- ``haproxy``: HAProxy's HTTP log (``option httplog``; no body: rate and shape).
"""

from __future__ import annotations

import codecs
import contextvars
import functools
import hashlib
import hmac
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec

from schemas import to_epoch

Record = dict[str, Any]


class FormatError(ValueError):
    """A line that cannot be turned into canonical records; the message is the reason."""


KEY_SECRET_ENV = "CLONEWATCH_KEY_SECRET"
TRUSTED_PROXIES_ENV = "CLONEWATCH_TRUSTED_PROXIES"
_DEFAULT_TRUSTED = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


def _key_secret() -> bytes:
    return os.environ.get(KEY_SECRET_ENV, "").encode()


def _trusted_spec() -> str:
    return os.environ.get(TRUSTED_PROXIES_ENV, _DEFAULT_TRUSTED)


@dataclass(frozen=True)
class _Settings:
    """The environment's settings as the parsers use them: looked up when a parser is made (a
    reader, a shipper's source, a pushed batch) and by :func:`parse_line`, not twice per line,
    which cost a fifth of the gateway formats' throughput. Public functions such as
    :func:`client_id_for_key` read the environment on each call."""

    secret: bytes
    trusted: str


_settings = _Settings(_key_secret(), _trusted_spec())


def refresh_settings() -> None:
    """Read ``$CLONEWATCH_KEY_SECRET`` and ``$CLONEWATCH_TRUSTED_PROXIES`` again for the parsers."""
    global _settings
    _settings = _Settings(_key_secret(), _trusted_spec())


def client_id_for_key(api_key: str) -> str:
    """The client id of an API key: ``key_`` + 16 hex digits of an HMAC of its SHA-256.

    The HMAC's secret is ``$CLONEWATCH_KEY_SECRET`` (set it in production: without it the
    id is a plain hash, which anyone holding a candidate key can recompute). The key itself
    goes no further than this function.

    >>> client_id_for_key("sk-test-123") == client_id_for_key("sk-test-123") != client_id_for_key("sk-test-124")
    True
    """
    return _client_id_for_key(api_key, _key_secret())


@functools.lru_cache(maxsize=16384)
def _client_id_for_key(api_key: str, secret: bytes) -> str:  # a log's keys repeat: hashed once each
    return client_id_for_key_hash(hashlib.sha256(api_key.encode()).hexdigest(), secret)


def client_id_for_key_hash(sha256_hex: str, secret: bytes | None = None) -> str:
    """The client id of a key whose SHA-256 (hex) is already known, as LiteLLM logs it."""
    digest = sha256_hex.lower().encode()
    secret = _key_secret() if secret is None else secret
    if secret:
        return "key_" + hmac.new(secret, digest, hashlib.sha256).hexdigest()[:16]
    return "key_" + digest.decode()[:16]


def client_id_for_ip(ip: str) -> str:
    """The client id of a log line that names no key (nginx's combined format): its address, hashed."""
    return _client_id_for_ip(ip, _key_secret())


@functools.lru_cache(maxsize=16384)
def _client_id_for_ip(ip: str, secret: bytes) -> str:
    return "ip_" + hmac.new(secret, ip.encode(), hashlib.sha256).hexdigest()[:16]


@functools.cache
def _trusted_networks(spec: str) -> tuple:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


@functools.lru_cache(maxsize=65536)
def _is_trusted_in(address: str, spec: str) -> bool:  # a log's addresses repeat: parsed once each
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _trusted_networks(spec))


def client_ip(remote: Any, forwarded: Any) -> str | None:
    """The client's address: the peer, unless it is a trusted proxy; then the nearest untrusted
    address in ``X-Forwarded-For``, read from the right (entries left of it are the client's
    own word). Trusted proxies: ``$CLONEWATCH_TRUSTED_PROXIES`` (CIDRs, comma-separated;
    default loopback and private networks).

    >>> client_ip("10.0.0.2", "198.51.100.9, 203.0.113.7, 10.0.0.1")
    '203.0.113.7'
    >>> client_ip("203.0.113.50", "1.2.3.4")
    '203.0.113.50'
    """
    return _client_ip(remote, forwarded, _trusted_spec())


def _address(remote: Any, forwarded: Any) -> str | None:
    """:func:`client_ip` with the parsers' settings."""
    return _client_ip(remote, forwarded, _settings.trusted)


def _client_ip(remote: Any, forwarded: Any, trusted: str) -> str | None:
    peer = _strip_port(remote) if isinstance(remote, str) and not _missing(remote) else None
    if peer is not None and not _is_trusted_in(peer, trusted):
        return peer
    if isinstance(forwarded, str) and not _missing(forwarded):
        hops = [_strip_port(h.strip()) for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not _is_trusted_in(hop, trusted):
                return hop
        if hops:
            return hops[0]
    return peer


@functools.lru_cache(maxsize=65536)
def _is_address(value: str) -> bool:  # a log's addresses repeat: parsed once each
    """Whether ``value`` is an IP address, with or without a port."""
    try:
        ipaddress.ip_address(_strip_port(value))
    except ValueError:
        return False
    return True


def _strip_port(address: str) -> str:
    """'203.0.113.7:52431' -> '203.0.113.7'; '[2001:db8::1]:443' -> '2001:db8::1'."""
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address
    if address.count(":") == 1:
        return address.split(":")[0]
    return address


# --- helpers shared by the parsers -------------------------------------------------------


_ABSENT = (None, "", "-")  # how logs write a value they do not have


def _missing(value: Any) -> bool:
    return value in _ABSENT


def _first(*values: Any) -> Any:
    """The first value that is present (not None, empty or '-')."""
    for value in values:
        if not _missing(value):
            return value
    return None


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@functools.lru_cache(maxsize=8192)
def _names_of(key: str) -> tuple[str, ...]:
    """The comparable names of one key (a log's keys repeat on every line: computed once),
    camelCase keys also as snake_case (``requestBody``: ``request_body``).

    >>> _names_of("http_x_api_key"), _names_of("requestBody"), _names_of("X-API-Key")
    (('x_api_key', 'http_x_api_key'), ('requestbody', 'request_body'), ('x_api_key',))
    """
    names: list[str] = []
    for spelling in dict.fromkeys((key, _CAMEL_HUMP.sub("_", key))):
        name = spelling.lower().replace("-", "_").replace(".", "_").lstrip(":@")
        stripped = [name[len(p) :] for p in ("http_", "req_", "request_header_") if name.startswith(p) and len(name) > len(p)]
        names += [n for n in (*stripped, name) if n not in names]
    return tuple(names)


@functools.lru_cache(maxsize=1024)
def _layout(keys: tuple) -> tuple[tuple[str, Any], ...]:
    """(comparable name, original key) pairs of one key layout, the first key of a name winning
    (a log writes the same keys on every line: worked out once per layout)."""
    plan: dict[str, Any] = {}
    for key in keys:
        if isinstance(key, str) and len(key) <= 256:
            for name in _names_of(key):
                plan.setdefault(name, key)
    return tuple(plan.items())


def _normalized(data: Mapping, keys: tuple | None = None) -> dict[str, Any]:
    """Keys as operators spell them, made comparable: 'X-API-Key', ':method', '@timestamp',
    'http_x_api_key' -> 'x_api_key', 'method', 'timestamp'. ``keys``: ``tuple(data)``, if known."""
    keys = tuple(data) if keys is None else keys
    if len(keys) > 512:  # no gateway writes this many: not worth remembering
        return {name: data[key] for name, key in _layout.__wrapped__(keys)}
    return {name: data[key] for name, key in _layout(keys)}


_HEADER_MAPS = ("request_headers", "headers", "req_headers")


def _proxy_fields(data: Mapping) -> dict[str, Any]:
    """:func:`_normalized` keys of a proxy log line, with the fields of a request it logs as an
    object (Caddy's ``"request": {"remote_ip": ..., "method": ..., "uri": ..., "headers": ...}``),
    the request headers of a line that nests them (``"headers": {"X-API-Key": ...}``, as Caddy writes them or a log pipeline
    rebuilds them; a header logged as a list of values counts its first) and the fields of
    metadata logged as an object (:func:`_is_metadata`) where the line's own keys do not say;
    and the method and path of nginx's ``$request`` line
    (``"POST /v1/chat/completions HTTP/1.1"``) where the line names them nowhere else.

    >>> d = _proxy_fields({"request": "POST /v1/chat/completions HTTP/1.1", "headers": {"X-API-Key": ["sk-1"]}})
    >>> d["method"], d["path"], d["x_api_key"]
    ('POST', '/v1/chat/completions', 'sk-1')
    """
    keys = tuple(data)
    d = _normalized(data, keys)
    nested_names = () if len(keys) > 512 else _nested_names(keys)
    if not nested_names:
        return d
    for name in nested_names:
        nested = d.get(name)
        if isinstance(nested, Mapping) and len(nested) <= 512:
            for field, value in _normalized(nested).items():
                if isinstance(value, list):
                    value = value[0] if value else None
                d.setdefault(field, value)
    line = d.get("request")
    if isinstance(line, str) and (match := _request_line(line)):
        method, path = match
        d.setdefault("method", method)  # the first of the method and path names the parsers read
        d.setdefault("path", path)
    return d


def _is_metadata(name: str) -> bool:
    """Whether a key names metadata a proxy logs as an object: Envoy's ``%DYNAMIC_METADATA(ns)%``
    of a whole namespace (``{"request_body": ...}``, as a Lua filter sets it)."""
    return "metadata" in name or "lua" in name


@functools.lru_cache(maxsize=1024)
def _nested_names(keys: tuple) -> tuple[str, ...]:  # a log writes the same keys on every line: worked out once per layout
    """The names of a layout that may hold fields of their own (or nginx's request line), in
    the order they are read: the request first, since it may hold the headers."""
    names = [name for name, _ in _layout(keys)]
    headers = _HEADER_MAPS if "request" in names else tuple(n for n in _HEADER_MAPS if n in names)  # a request object may hold them
    requests = tuple(n for n in ("request", "httprequest") if n in names)  # Caddy's; Google Cloud's LogEntry (load balancers, Cloud Run, Knative)
    return requests + headers + tuple(n for n in names if _is_metadata(n))


_REQUEST_LINE = re.compile(r"^([A-Z]{3,10}) (\S+)(?: HTTP/[\d.]+)?$")


@functools.lru_cache(maxsize=4096)
def _request_line(line: str) -> tuple[str, str] | None:  # a client repeats its requests: parsed once each
    match = _REQUEST_LINE.match(line) if len(line) <= 8192 else None
    return (match[1], match[2]) if match else None
# Names a proxy log line gives its fields under, besides each gateway's own (normalized:
# lower case, '-' and '.' as '_', 'http_' and a leading '@' or ':' dropped).
_TIME_NAMES = ("time_iso8601", "time", "timestamp", "ts", "time_local", "start_time", "datetime", "date")
_ADDRESS_NAMES = ("remote_addr", "client_ip", "realip_remote_addr", "remote_ip", "real_ip", "x_real_ip", "source_ip",
                  "src_ip", "client_addr", "client_address", "clientip", "downstream_remote_address", "remoteip")  # fmt: skip
_METHOD_NAMES = ("method", "request_method", "http_method", "verb", "requestmethod")
_PATH_NAMES = ("uri", "request_uri", "path", "request_path", "url", "url_path", "x_envoy_origin_path", "requesturl")  # Envoy Gateway's, Google Cloud's
_STATUS_NAMES = ("status", "status_code", "response_code", "response_status")


def _pick(data: Mapping, *names: str) -> Any:
    """The first present value (not None, empty or '-') among ``names`` in a :func:`_normalized` dict."""
    for name in names:
        value = data.get(name)
        if value not in _ABSENT:
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
        except (msgspec.DecodeError, RecursionError):
            return None  # not JSON (form data, binary) or nested past reading: nothing clonewatch can read in it
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


def batch_inputs(body: Mapping | None) -> list[str] | None:
    """The inputs of a batched request, each a query of the model: an embeddings call's
    ``input`` or a completions call's ``prompt`` given as a list of two strings or more
    (OpenAI takes up to 2,048 in one embeddings call); None for anything else.

    >>> batch_inputs({"model": "text-embedding-3-small", "input": ["cat", "dog", "a cat on a mat"]})
    ['cat', 'dog', 'a cat on a mat']
    >>> batch_inputs({"input": ["just one"]}), batch_inputs({"messages": [{"role": "user", "content": "hi"}]})
    (None, None)
    """
    if not body or isinstance(body.get("messages"), list):
        return None
    for value in (body.get("input"), body.get("prompt")):
        if isinstance(value, list) and len(value) > 1 and all(isinstance(v, str) for v in value):
            return value
    return None


def _nth_id(request_id: str | None, i: int, n: int) -> str | None:
    """The id of the ``i``-th of ``n`` queries one request holds (instances, batched inputs)."""
    return request_id if request_id is None or n == 1 else f"{request_id}#{i}"


def one_per_input(record: Record, inputs: list[str] | None) -> list[Record]:
    """One record per input of a batched request (``inputs``: :func:`batch_inputs`), else
    ``record`` alone. Each gets its input as the prompt and a request id of its own; the
    request's token counts go with the first, so their sum is still the request's.
    """
    if not inputs:
        return [record]
    return [
        {**record, "prompt": text, "request_id": _nth_id(record.get("request_id"), i, len(inputs)),
         **({} if i == 0 else {"tokens_in": None, "tokens_out": None})}
        for i, text in enumerate(inputs)
    ]  # fmt: skip


def turns_of(messages: Any = None, previous_response_id: Any = None) -> int | None:
    """How many earlier answers a chat request carries (its assistant messages): 0 for a
    fresh question; None when the request has no ``messages`` list (a completion, an embedding).
    A Responses API request that continues a stored conversation (``previous_response_id``)
    counts one more: its earlier answers are held by the server, not resent.

    >>> turns_of([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
    ...           {"role": "user", "content": "And in French?"}])
    1
    >>> turns_of(None, previous_response_id="resp_6805"), turns_of(None)
    (1, None)
    """
    continues = 1 if isinstance(previous_response_id, str) and previous_response_id else 0
    if not isinstance(messages, list) or not any(isinstance(m, Mapping) for m in messages):
        return continues or None  # no messages, or an embeddings call's inputs logged as messages
    return continues + sum(1 for m in messages if isinstance(m, Mapping) and m.get("role") == "assistant")


def _input_messages(input_: Any) -> list | None:
    """The messages of a Responses API ``input`` given as a list of items (``{"role": ...,
    "content": ...}``, with or without ``"type": "message"``); None for a string or anything else."""
    if isinstance(input_, list) and any(isinstance(item, Mapping) and "role" in item for item in input_):
        return input_
    return None


_PARAMS = ("temperature", "max_tokens", "logprobs", "top_logprobs", "n")


def params_of(body: Mapping) -> dict | None:
    """The sampling parameters clonewatch uses, from an OpenAI-style body or LiteLLM's model_parameters."""
    params = {name: body[name] for name in _PARAMS if not _missing(body.get(name))}
    if isinstance(options := body.get("options"), Mapping):  # Ollama's
        for name, ours in (("temperature", "temperature"), ("num_predict", "max_tokens")):
            if not _missing(options.get(name)) and ours not in params:
                params[ours] = options[name]
    if isinstance(bias := body.get("logit_bias"), Mapping) and bias:
        params["logit_bias"] = len(bias)  # the map itself stays in the gateway's log
    for alias in ("max_completion_tokens", "max_output_tokens"):  # chat's newer name, the Responses API's
        if "max_tokens" not in params and not _missing(body.get(alias)):
            params["max_tokens"] = body[alias]
    include = body.get("include")
    if "logprobs" not in params and isinstance(include, list) and "message.output_text.logprobs" in include:
        params["logprobs"] = True  # how the Responses API asks for them
    return params or None


def from_openai_body(body: Mapping | None) -> Record:
    """Prompt, model and parameters of an OpenAI-compatible request body (or nothing): chat
    completions, completions, embeddings, and the Responses API (``input`` as a string or as
    a list of messages, ``previous_response_id``, ``max_output_tokens``, logprobs asked for
    through ``include``); Anthropic's Messages API has the same shape, and Gemini's
    ``generateContent`` is read by :func:`_from_gemini_body`.

    >>> record = from_openai_body({"model": "m", "input": [{"role": "user", "content": [
    ...     {"type": "input_text", "text": "Summarise this."}]}], "previous_response_id": "resp_1",
    ...     "max_output_tokens": 64, "include": ["message.output_text.logprobs"], "top_logprobs": 5})
    >>> record["prompt"], record["turns"], record["params"]
    ('Summarise this.', 1, {'top_logprobs': 5, 'max_tokens': 64, 'logprobs': True})
    """
    if not body:
        return {}
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = _input_messages(body.get("input"))  # the Responses API's conversation
    if messages is None and isinstance(body.get("contents"), list):
        return _from_gemini_body(body)
    out: Record = {"prompt": prompt_of(messages, body.get("prompt"), body.get("input"))}
    out["turns"] = turns_of(messages, body.get("previous_response_id"))
    if isinstance(body.get("model"), str):
        out["model"] = body["model"]
    out["params"] = params_of(body)
    return out


def _from_gemini_body(body: Mapping) -> Record:
    """A Gemini ``generateContent`` body: ``contents`` of ``user`` and ``model`` turns made of
    ``parts``, sampling in ``generationConfig`` (the model is in the URL path, not the body).

    >>> _from_gemini_body({"contents": [{"role": "user", "parts": [{"text": "Hi?"}]}, {"role": "model", "parts": [{"text": "Hello."}]},
    ...     {"role": "user", "parts": [{"text": "And in French?"}]}], "generationConfig": {"temperature": 0, "maxOutputTokens": 64,
    ...     "responseLogprobs": True, "logprobs": 5, "candidateCount": 2}})
    {'prompt': 'And in French?', 'turns': 1, 'params': {'temperature': 0, 'max_tokens': 64, 'logprobs': True, 'top_logprobs': 5, 'n': 2}}
    """
    turns = [c for c in body["contents"] if isinstance(c, Mapping)]
    messages = [
        {"role": "assistant" if c.get("role") == "model" else "user", "content": c.get("parts")} for c in turns
    ]  # a turn without a role is the user's
    config = body.get("generationConfig")
    config = config if isinstance(config, Mapping) else {}
    named = {"temperature": "temperature", "maxOutputTokens": "max_tokens", "responseLogprobs": "logprobs", "logprobs": "top_logprobs", "candidateCount": "n"}
    params = {ours: config[theirs] for theirs, ours in named.items() if not _missing(config.get(theirs))}
    return {"prompt": prompt_of(messages), "turns": turns_of(messages), "params": params or None}


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
    return _client_id_for_key(api_key, _settings.secret) if isinstance(api_key, str) and not _missing(api_key) else None


def _address_client(ip: str | None) -> str | None:
    """The client of a line that names no key: its address (hashed like a key)."""
    return _client_id_for_ip(ip, _settings.secret) if ip else None


def _text_line_client(key: str | None, ip: str | None) -> str | None:
    """The client of a text log line (nginx combined, Envoy's default): its key if a field
    appended to the format holds one, else its address."""
    if key:
        return _key_client(_first(_bearer(key), key))
    return _address_client(ip)


def _finish(record: Record) -> Record:
    """Drop empty fields; require the two fields every record needs. A key in the path's
    query string is masked there, and names a client the line knew only by its address."""
    out = {k: v for k, v in record.items() if v not in _ABSENT}
    if isinstance(path := out.get("path"), str):
        out["path"], key = key_in_query(path)
        if key is not None and str(out.get("client_id", "ip_")).startswith("ip_"):
            out["client_id"] = _key_client(key)
    if "client_id" not in out:
        raise FormatError("no client id in the line (no API key, consumer or client address to identify the client)")
    if "ts" not in out:
        wrapper_time = _WRAPPER_TIME.get()
        if wrapper_time is None:
            raise FormatError("no timestamp in the line")
        out["ts"] = _ts(wrapper_time, "the container runtime's or log shipper's time")
    return out


# The time a container runtime or log shipper gave the line being parsed (LineParser.parse's
# ``time``): the time of a record whose gateway writes none (Knative's request log).
_WRAPPER_TIME: contextvars.ContextVar[str | float | None] = contextvars.ContextVar("wrapper_time", default=None)


_EPOCH_TEXT = re.compile(r"^\d{9,19}(?:\.\d+)?$")  # epoch seconds (or ms, us, ns) written as text


def _ts(value: Any, what: str = "timestamp") -> float | None:
    """Epoch seconds of an RFC 3339 time or an epoch number, also one written as text
    (Envoy's ``%START_TIME(%s.%3f)%``) or counted in milliseconds, microseconds or
    nanoseconds (a number past the year 5000 in seconds is taken as the finer unit).

    >>> _ts("1796050065.237"), _ts(1796050065237), _ts("1796050065237000000"), _ts("2026-11-30T14:47:45.237Z")
    (1796050065.237, 1796050065.237, 1796050065.237, 1796050065.237)
    """
    if _missing(value):
        return None
    if isinstance(value, str) and _EPOCH_TEXT.match(value):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for _ in range(3):
            if not value > 1e11:
                break
            value = value / 1000.0
    try:
        return _epoch_of_text(value) if isinstance(value, str) else to_epoch(value)
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{what}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _epoch_of_text(value: str) -> float:  # one-second times repeat from line to line: parsed once each
    return to_epoch(value)


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
    """nginx JSON access log (``log_format ... escape=json``), keys named as the operator likes.

    Keys are matched after the nginx variable they hold (``msec``, ``time_iso8601``,
    ``time_local``, ``remote_addr``, ``http_x_forwarded_for``, ``http_x_api_key``,
    ``http_authorization``, ``request_method``, ``request_uri``, ``status``,
    ``request_time``, ``http_user_agent``, ``request_id``, ``request_body``) or the short
    names of :data:`NGINX_LOG_FORMAT` (``time``, ``api_key``, ``uri``, ...). Time is taken
    from ``msec`` (milliseconds) when the line has it.

    Sample line::

        {"time":"2026-11-23T10:00:00+00:00","api_key":"sk-live-4f9a","remote_addr":"203.0.113.7",
         "x_forwarded_for":"","method":"POST","uri":"/v1/chat/completions","status":"200",
         "request_time":"0.812","request_id":"6f1c9e0b2a7d4e55","user_agent":"OpenAI/Python 1.54.3",
         "request_body":"{\\"model\\":\\"aurora-70b-chat\\",\\"temperature\\":0,
         \\"messages\\":[{\\"role\\":\\"user\\",\\"content\\":\\"What is a mortgage?\\"}]}",
         "tokens_in":"","tokens_out":""}
    """
    d = _proxy_fields(data)
    seconds = _number(_first(_pick(d, "request_time", "duration"), _seconds_text(d.get("latency"))), "request_time")
    return _gateway_records(d, {
        "ts": _proxy_time(d),
        "ip": _address(_pick(d, *_ADDRESS_NAMES), _pick(d, "x_forwarded_for", "forwarded_for")),
        "method": _pick(d, *_METHOD_NAMES),
        "path": _path_of(_pick(d, *_PATH_NAMES)),
        "status": _int(_pick(d, *_STATUS_NAMES), "status"),
        "latency_ms": None if seconds is None else round(seconds * 1000.0, 3),
        "user_agent": _pick(d, "user_agent", "useragent"),
        "request_id": _pick(d, "request_id", "x_request_id"),
        "tokens_in": _int(_pick(d, "tokens_in", "upstream_http_x_tokens_in"), "tokens_in"),
        "tokens_out": _int(_pick(d, "tokens_out", "upstream_http_x_tokens_out"), "tokens_out"),
    })  # fmt: skip


def _seconds_text(value: Any) -> str | None:
    """Seconds written with their unit, as Google Cloud logs a latency (``"0.431s"``); None for
    anything else (a bare ``latency`` number says nothing of its unit)."""
    if isinstance(value, str) and value.endswith("s") and value[:-1].replace(".", "", 1).isdigit():
        return value[:-1]
    return None


def _path_of(value: Any) -> Any:
    """A path as the parsers keep it: a whole URL (Google Cloud's ``requestUrl``) without its scheme and host.

    >>> _path_of("https://api.example.com/v1/chat/completions?alt=sse"), _path_of("/v1/models")
    ('/v1/chat/completions?alt=sse', '/v1/models')
    """
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return value


_NGINX_LOCAL_TIME = "%d/%b/%Y:%H:%M:%S %z"
_TIME_LOCAL = re.compile(r"\d{2}/\w{3}/\d{4}:")


def _proxy_time(d: Mapping, *first: str) -> float | None:
    """Epoch seconds of a proxy line: ``msec`` (nginx's, to the millisecond) if present, else
    the first of its time fields (``first``, then the common names)."""
    msec = d.get("msec")
    if msec not in _ABSENT:
        return _number(msec, "msec")
    return _nginx_time(_pick(d, *first, *_TIME_NAMES))


def _nginx_time(value: Any) -> float | None:
    """Epoch seconds of ``msec`` (a number), an ISO 8601 time or nginx's ``time_local``."""
    if isinstance(value, str) and _TIME_LOCAL.match(value):
        return _ts(_time_local(value), "time_local")
    return _ts(value, "time")


@functools.lru_cache(maxsize=4096)
def _time_local(value: str) -> float:  # one-second resolution: successive lines share it
    try:
        return datetime.strptime(value, _NGINX_LOCAL_TIME).timestamp()
    except ValueError:
        raise FormatError(f"time_local {value!r} is not nginx's dd/Mon/yyyy:hh:mm:ss +zzzz") from None


_API_KEY_NAMES = ("api_key", "x_api_key", "apikey", "x_goog_api_key", "api_key_header")


def _gateway_records(d: Mapping, record: Record) -> list[Record]:
    """The records of one proxy log line (nginx, Envoy) whose normalized keys are ``d``: the
    client from an explicit id or the API key, else (a log that names no key, such as Istio's
    default JSON access log) its address, as for the text formats; and the request body, an
    OpenAI-style call (one record) or a model-server predict request (one record per instance)."""
    api_key = _first(_pick(d, *_API_KEY_NAMES), _bearer(_pick(d, "authorization")))
    # A user that the gateway authenticated (Caddy sets user_id only then). Not nginx's
    # $remote_user: nginx logs whatever Basic credentials a client sent, checked or not, so a
    # client could split itself into as many "users" as it likes.
    user = _pick(d, "user_id")
    record["client_id"] = _first(_pick(d, "client_id", "consumer"), _key_client(api_key), _key_client(user), _address_client(record.get("ip")))
    return _records_with_body(record, _json_body(_pick(d, "request_body", "body", "req_body")))


def _records_with_body(record: Record, body: Mapping | None) -> list[Record]:
    """A proxy line's record with what its request body says: an OpenAI-style call (one
    record per input) or a model-server predict request (one record per instance)."""
    if (texts := text_inputs(body)) is not None:
        base = {**record, "params": _generation_params(body), "model": _first(record.get("model"), body.get("model"), body.get("model_name"))}
        return [_finish(r) for r in one_per_input({**base, "prompt": texts[0]}, texts if len(texts) > 1 else None)]
    if body is not None and ("instances" in body or "inputs" in body):
        rows = _predict_rows(body)
        rid = record.get("request_id")
        return [_finish({**record, "features": row, "request_id": _nth_id(rid, i, len(rows))}) for i, row in enumerate(rows)]
    return [_finish(r) for r in one_per_input({**record, **from_openai_body(body)}, batch_inputs(body))]


_COMBINED = re.compile(
    r'^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S*) \[(?P<time_local>[^\]]+)\] '  # escape=json logs no user as ""
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+|-)'
    r'(?: "(?P<http_referer>(?:[^"\\]|\\.)*)" "(?P<http_user_agent>(?:[^"\\]|\\.)*)")?'
    r'(?P<extra>(?:\s*(?:"(?:[^"\\]|\\.)*"|[^\s"]+(?=["\s]|$)))*)\s*$'  # fields appended: quoted or bare
)
_APPENDED_QUOTED = re.compile(r'(?:^|\s)"((?:[^"\\]|\\.)*)"')  # a quoted field of its own, not a name="value"'s value
_APPENDED_TIME = re.compile(r'(?:^|\s)(?:rt=|request_time=)?(\d+\.\d{3})(?=\s|$)')  # $request_time: seconds, to the ms
_TOKEN_SHAPED = re.compile(r"^(?:[Bb]earer +)?[\x21-\x7e]{1,512}$")  # a key or bearer token: no spaces, no JSON
_ADDRESSES_SHAPED = re.compile(r"[0-9a-fA-F:.\[\]]+(?:\s*,\s*[0-9a-fA-F:.\[\]]+)*")


def _text_field(raw: str) -> str:
    r"""A quoted field of an nginx text line as it was sent: nginx's default escaping writes
    quotes, backslashes, control characters and bytes above 0x7E as ``\xHH``; a
    ``log_format`` with ``escape=json`` writes them the JSON way.

    >>> _text_field(r'{\x22prompt\x22:\x22caf\xC3\xA9\x22}'), _text_field(r'{\"prompt\":\"caf\u00e9\"}')
    ('{"prompt":"café"}', '{"prompt":"café"}')
    """
    if "\\x" in raw:
        raw_bytes = raw.encode("utf-8", "surrogateescape")
        if raw_bytes.count(b"\\") == raw_bytes.count(b"\\x"):  # as nginx writes it (a backslash is \x5C)
            try:
                return codecs.escape_decode(raw_bytes)[0].decode("utf-8", "replace")
            except ValueError:
                pass  # an \x without two hex digits
        return _NGINX_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), raw_bytes).decode("utf-8", "replace")
    if "\\" in raw:
        try:
            return msgspec.json.decode(f'"{raw}"'.encode("utf-8", "surrogateescape"))
        except (msgspec.DecodeError, UnicodeError):
            return raw.replace('\\"', '"')
    return raw


def _method_and_path(request: str) -> tuple[str | None, str | None]:
    """Method and path of a text log's request line (``POST /v1/completions HTTP/1.1``), or
    None for both when the line holds less (nginx logs a malformed request as it came)."""
    parts = request.split(" ")
    return (parts[0], parts[1]) if len(parts) >= 2 else (None, None)


def parse_nginx_text(line: str) -> list[Record]:
    """nginx's ``combined`` text format (or ``common``), with the fields operators append to it.

    Alone it names no key and holds no body: the client is its address (hashed: ``ip_...``),
    so only rate and request shape count. Fields appended after the user agent are read
    when they look like one: ``"$http_x_api_key"`` or ``"$http_authorization"`` (a key or
    bearer token), ``"$http_x_forwarded_for"`` (addresses), ``"$request_body"`` (a JSON
    body: the prompt and its parameters, or a predict request's instances), and
    ``$request_time`` bare or as ``rt=`` (nginx's ``timed_combined`` and ``upstream_time``
    formats); other appended fields are passed over. Quoted fields are unescaped as nginx
    wrote them, by default (``\\xHH``) or with ``escape=json``.

    >>> r = parse_nginx_text('203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] "POST /v1/chat/completions HTTP/1.1" 200 512 "-" "curl/8.5.0"')[0]
    >>> (r["ts"], r["method"], r["path"], r["status"], r["user_agent"])
    (1795428000.0, 'POST', '/v1/chat/completions', 200, 'curl/8.5.0')
    >>> parse_nginx_text('203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"rt=0.120 uct="0.000" urt="0.118"')[0]["latency_ms"]
    120.0
    """
    match = _COMBINED.match(line)
    if match is None:
        raise FormatError("not nginx combined/common text format (nor JSON)")
    method, path = _method_and_path(match["request"])
    appended = match["extra"] or ""
    extras = [_text_field(x) for x in _APPENDED_QUOTED.findall(appended)]
    body = next((x for x in extras if x.startswith(("{", "["))), None)
    forwarded = next((x for x in extras if _ADDRESSES_SHAPED.fullmatch(x)), None)
    key = next((x for x in extras if x not in ("", "-") and x is not forwarded and x is not body and _TOKEN_SHAPED.match(x)), None)
    ip = _address(match["remote_addr"], forwarded)
    took = _APPENDED_TIME.search(appended) if appended else None
    record = {
        "latency_ms": None if took is None else float(took[1]) * 1000.0,
        "ts": _nginx_time(match["time_local"]),
        "client_id": _text_line_client(key, ip),
        "ip": ip,
        "method": method,
        "path": path,
        "status": int(match["status"]),
        "user_agent": _text_field(match["http_user_agent"] or ""),
    }  # fmt: skip
    return _records_with_body(record, _json_body(body))


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


_ENVOY_DEFAULT = re.compile(
    r'^\[(?P<start_time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]*)" (?P<response_code>\d+) \S+ '
    r'(?:\d+|-) (?:\d+|-) (?P<duration>\d+|-) (?:\d+|-) "(?P<x_forwarded_for>[^"]*)" "(?P<user_agent>(?:[^"]|"(?! "))*)" '  # Envoy writes quotes in a value as they came
    r'"(?P<request_id>[^"]*)" "[^"]*" "[^"]*"(?P<extra>(?: "[^"]*")*)\s*$'
)


# Istio's default (``meshConfig.accessLogFile`` with no format): Envoy's fields with the response
# code details, termination details and upstream failure after the flags, and the upstream
# cluster, upstream and downstream addresses, server name and route appended bare.
_ISTIO_DEFAULT = re.compile(
    r'^\[(?P<start_time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]*)" (?P<response_code>\d+) \S+ \S+ \S+ '
    r'"[^"]*" (?:\d+|-) (?:\d+|-) (?P<duration>\d+|-) (?:\d+|-) "(?P<x_forwarded_for>[^"]*)" "(?P<user_agent>(?:[^"]|"(?! "))*)" '
    r'"(?P<request_id>[^"]*)" "[^"]*" "[^"]*" \S+ \S+ \S+ (?P<downstream_remote_address>\S+) \S+ \S+(?P<extra>(?: "[^"]*")*)\s*$'
)


def parse_envoy_text(line: str) -> list[Record]:
    """Envoy's default access log format (a file access log without ``json_format``), or
    Istio's (:data:`_ISTIO_DEFAULT`): no key and no body; Envoy's logs no peer address either.

    The client is its address (hashed: ``ip_...``), so only rate and request shape count:
    the ``X-Forwarded-For`` one, or the peer address (Istio's downstream address, or one
    appended to Envoy's format as ``"%DOWNSTREAM_REMOTE_ADDRESS%"``), read through the trusted
    proxies as everywhere.
    Another field appended (``"%REQ(X-API-KEY)%"``) names the client by its key.

    >>> r = parse_envoy_text('[2026-11-23T10:00:00.125Z] "POST /v1/chat/completions HTTP/1.1" 200 - 45 11 7 6 '
    ...                      '"203.0.113.7" "curl/8.5.0" "cf76552e-b9ee" "api.example.com" "10.0.0.5:8000"')[0]
    >>> (r["ts"], r["method"], r["path"], r["status"], r["latency_ms"], r["ip"], r["client_id"].startswith("ip_"))
    (1795428000.125, 'POST', '/v1/chat/completions', 200, 7.0, '203.0.113.7', True)
    """
    match = _ENVOY_DEFAULT.match(line) or _ISTIO_DEFAULT.match(line)
    if match is None:
        raise FormatError("not Envoy's (or Istio's) default text access log format (nor JSON)")
    extras = [x for x in re.findall(r'"([^"]*)"', match["extra"] or "") if not _missing(x)]
    istio_peer = match.groupdict().get("downstream_remote_address")
    peer = istio_peer if istio_peer and _is_address(istio_peer) else next((x for x in extras if _is_address(x)), None)
    key = next((x for x in extras if x is not peer and _TOKEN_SHAPED.match(x)), None)
    ip = _address(peer, match["x_forwarded_for"])
    if ip is None and key is None:
        raise FormatError(
            "no client in the line: Envoy's default format logs neither a key nor the peer address; append "
            '"%DOWNSTREAM_REMOTE_ADDRESS%" "%REQ(X-API-KEY)%" to it, or use json_format (docs/gateways.md)'
        )
    duration = match["duration"]
    return [_finish({
        "ts": _ts(match["start_time"], "start_time"),
        "client_id": _text_line_client(key, ip),
        "ip": ip,
        "method": match["method"],
        "path": match["path"],
        "status": int(match["response_code"]) or None,
        "latency_ms": None if duration == "-" else float(duration),
        "user_agent": match["user_agent"],
        "request_id": match["request_id"],
    })]  # fmt: skip


_HAPROXY = re.compile(
    r'^(?:\w{3} +\d+ [\d:]+ \S+ [^:\s]+: )?'  # the syslog prefix, when the log went through syslog
    r'(?P<client>\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+?):\d+ \[(?P<accept_date>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d+)?)\] '
    r'\S+ \S+ (?:-?\d+|-)/(?:-?\d+|-)/(?:-?\d+|-)/(?:-?\d+|-)/\+?(?P<ta>-?\d+) (?P<status>-?\d+) \+?\d+ \S+ \S+ \S+ '
    r'\S+ \S+ (?:\{(?P<request_headers>[^}]*)\} )?(?:\{[^}]*\} )?"(?P<request>[^"]*)"\s*$'
)
_USER_AGENT_SHAPED = re.compile(r"^[\w.-]+/[\w.]+")


def parse_haproxy_text(line: str) -> list[Record]:
    """HAProxy's HTTP log (``option httplog``), written to a file, stdout or through syslog.

    HAProxy logs no body and no key unless the frontend captures request headers
    (``http-request capture req.hdr(x-api-key) len 128``); captured values are logged as
    ``{value|value}`` in the order captured, and the one shaped like a key (or a bearer
    token) names the client, one shaped like ``product/version`` is the user agent; else the
    client is its address. The accept date carries no zone: it is read as UTC (run HAProxy
    with ``TZ=UTC``). The latency is ``Ta``, the request's total active time.

    >>> r = parse_haproxy_text('203.0.113.7:48836 [04/Dec/2026:13:35:14.553] api model/m1 0/0/0/1/2 200 135 - - ---- '
    ...     '1/1/0/0/0 0/0 {sk-live-haproxy-a1|OpenAI/Python 1.54.3} "POST /v1/chat/completions HTTP/1.1"')[0]
    >>> r["client_id"] == client_id_for_key("sk-live-haproxy-a1"), r["ts"], r["path"], r["latency_ms"], r["user_agent"]
    (True, 1796391314.553, '/v1/chat/completions', 2.0, 'OpenAI/Python 1.54.3')
    """
    match = _HAPROXY.match(line)
    if match is None:
        raise FormatError("not HAProxy's HTTP log format (option httplog)")
    captured = [value.replace("#22", '"') for value in (match["request_headers"] or "").split("|") if value.strip()]
    key = next((value for value in captured if _bearer(value) or looks_like_key(value)), None)  # a bearer token: the client strips it
    agent = next((value for value in captured if _USER_AGENT_SHAPED.match(value) and value is not key), None)
    method, path = _method_and_path(match["request"])
    ip = _address(match["client"].strip("[]"), None)
    status, took = int(match["status"]), int(match["ta"])
    return [_finish({
        "ts": _ts(_haproxy_time(match["accept_date"]), "accept_date"),
        "client_id": _text_line_client(key, ip),
        "ip": ip,
        "method": method,
        "path": path,
        "status": status if status > 0 else None,
        "latency_ms": float(took) if took >= 0 else None,
        "user_agent": agent,
    })]  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _haproxy_time(value: str) -> float:  # successive lines share their second
    try:
        when = datetime.strptime(value, "%d/%b/%Y:%H:%M:%S.%f" if "." in value else "%d/%b/%Y:%H:%M:%S")
    except ValueError:
        raise FormatError(f"accept date {value!r} is not HAProxy's dd/Mon/yyyy:hh:mm:ss.ms") from None
    return when.replace(tzinfo=timezone.utc).timestamp()


# AWS Application Load Balancer access log entries (space-separated, as delivered to S3):
# type, time, load balancer, client:port, target:port, the three processing times, the two
# status codes, bytes, "request", "user agent", TLS cipher and protocol, target group, "trace
# id", "domain", "certificate", rule priority, request creation time, then fields ALB adds over
# time.
_ALB = re.compile(
    r'^(?:https?|h2|grpcs?|wss?) (?P<time>\S+) \S+ (?P<client>\S+) \S+ (?P<request_time>-?[\d.]+) (?P<target_time>-?[\d.]+) '
    r'(?P<response_time>-?[\d.]+) (?P<status>\d{3}|-) \S+ \d+ \d+ "(?P<request>[^"]*)" "(?P<user_agent>(?:[^"\\]|\\.)*)" '
    r'\S+ \S+ \S+ "(?P<trace_id>[^"]*)" "[^"]*" "[^"]*" \S+ (?P<created>\S+)(?: .*)?$'
)


def parse_alb_text(line: str) -> list[Record]:
    """An AWS Application Load Balancer access log entry (the files ALB writes to S3, gzipped:
    ``run`` and ``train`` read them as they are). ALB logs no header but the user agent and no
    body, so the client is its address and only rate and request shape count. The time is the
    request's creation time, the latency the three processing times added (``-1``, a request
    that never reached a target, has none).

    >>> r = parse_alb_text('https 2026-11-23T10:00:00.512000Z app/api-lb/50dc6c495c0c9188 203.0.113.7:2817 10.0.0.5:8080 '
    ...     '0.001 0.430 0.000 200 200 812 1024 "POST https://api.example.com:443/v1/chat/completions HTTP/1.1" '
    ...     '"OpenAI/Python 1.54.3" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-1:123456789012:'
    ...     'targetgroup/model/73e2d6bc24d8a067 "Root=1-58337262-36d228ad5d99923122bbe354" "api.example.com" "-" 1 '
    ...     '2026-11-23T10:00:00.080000Z "forward" "-" "-" "10.0.0.5:8080" "200" "-" "-"')[0]
    >>> r["ts"], r["ip"], r["method"], r["path"], r["status"], r["latency_ms"], r["client_id"].startswith("ip_")
    (1795428000.08, '203.0.113.7', 'POST', '/v1/chat/completions', 200, 431.0, True)
    """
    match = _ALB.match(line)
    if match is None:
        raise FormatError("not an AWS Application Load Balancer access log entry")
    method, url = _method_and_path(match["request"])
    times = [float(match[name]) for name in ("request_time", "target_time", "response_time")]
    ip = _address(match["client"], None)
    status = match["status"]
    return [_finish({
        "ts": _ts(_first(match["created"], match["time"]), "request_creation_time"),
        "client_id": _address_client(ip),
        "ip": ip,
        "method": method,
        "path": _path_of(url),
        "status": int(status) if status != "-" else None,
        "latency_ms": None if min(times) < 0 else round(sum(times) * 1000.0, 3),
        "user_agent": _first(match["user_agent"]),
        "request_id": _first(match["trace_id"]),
    })]  # fmt: skip


def parse_caddy(data: Mapping) -> list[Record]:
    """Caddy's JSON access log (``log { format json }``): ``ts`` in epoch seconds, ``duration``
    in seconds, ``status``, and the request as an object (``remote_ip``, ``client_ip`` since
    Caddy 2.7, ``method``, ``uri``, ``headers`` as lists of values). Caddy logs no body, so the
    client is judged on rate and request shape; its key is an ``X-Api-Key`` header (Caddy logs
    ``Authorization`` as ``[]`` unless the global ``log_credentials`` option is set), else its
    address (``X-Forwarded-For`` through trusted proxies).

    >>> r = parse_caddy({"level": "info", "ts": 1796388245.56, "logger": "http.log.access.log0", "msg": "handled request",
    ...     "request": {"remote_ip": "203.0.113.9", "method": "POST", "uri": "/v1/chat/completions",
    ...     "headers": {"X-Api-Key": ["sk-live-caddy-a1"], "Authorization": []}}, "duration": 0.0011, "size": 8, "status": 200})[0]
    >>> r["client_id"] == client_id_for_key("sk-live-caddy-a1"), r["path"], r["latency_ms"], r["ip"]
    (True, '/v1/chat/completions', 1.1, '203.0.113.9')
    """
    return parse_nginx(data)  # the proxy names nginx's parser reads, duration in seconds included


def parse_traefik(data: Mapping) -> list[Record]:
    """Traefik's JSON access log (``accessLog.format: json``): its core fields in CamelCase
    (``StartUTC``, ``ClientHost``, ``RequestMethod``, ``RequestPath``, ``DownstreamStatus``,
    ``Duration`` in nanoseconds) and each kept request header as ``request_<Header-Name>``.
    Traefik logs no body, and drops every header unless told to keep it
    (``accessLog.fields.headers.names.X-Api-Key: keep``, ``User-Agent: keep``); without a
    key the client is the user an auth middleware let through (``ClientUsername`` on a line
    whose status is not 401: Traefik's ``basicAuth`` and ``digestAuth`` log the user as the
    client sent it, and refuse a wrong password with 401), else its address: ``ClientHost``
    (the peer, or the address Traefik took from ``X-Forwarded-For`` where its entry point
    trusts the peer), or the kept ``X-Forwarded-For`` header read through clonewatch's trusted
    proxies. A header logged as ``REDACTED`` (the ``redact`` mode) is absent.

    >>> r = parse_traefik({"ClientAddr": "203.0.113.7:51234", "ClientHost": "203.0.113.7", "ClientUsername": "-",
    ...     "DownstreamStatus": 200, "Duration": 431250000, "RequestMethod": "POST", "RequestPath": "/v1/chat/completions",
    ...     "StartUTC": "2026-11-23T10:00:00.125Z", "request_X-Api-Key": "sk-live-traefik-a1",
    ...     "request_User-Agent": "OpenAI/Python 1.54.3", "entryPointName": "web", "level": "info", "msg": ""})[0]
    >>> r["client_id"] == client_id_for_key("sk-live-traefik-a1"), r["ts"], r["path"], r["status"], r["latency_ms"], r["ip"]
    (True, 1795428000.125, '/v1/chat/completions', 200, 431.25, '203.0.113.7')
    """
    d = _normalized(data)
    headers = _normalized({key[len("request_"):]: value for key, value in data.items() if isinstance(key, str) and key.startswith("request_") and value != "REDACTED"})
    nanoseconds = _number(d.get("duration"), "Duration")
    status = _int(_first(d.get("downstreamstatus"), d.get("originstatus")), "DownstreamStatus")
    headers.pop("user_id", None)  # a header the client sent names no user
    if status != 401 and not _missing(user := d.get("clientusername")):
        headers["user_id"] = user
    return _gateway_records(headers, {
        "ts": _ts(_first(d.get("startutc"), d.get("startlocal"), d.get("time")), "StartUTC"),
        "ip": _traefik_address(_first(d.get("clienthost"), d.get("clientaddr")), headers.get("x_forwarded_for")),
        "method": d.get("requestmethod"),
        "path": d.get("requestpath"),
        "status": status,
        "latency_ms": None if nanoseconds is None else round(nanoseconds / 1e6, 3),
        "user_agent": headers.get("user_agent"),
        "request_id": headers.get("x_request_id"),
    })  # fmt: skip


def _traefik_address(host: Any, forwarded: Any) -> str | None:
    """The client address of a Traefik line. Where its entry point trusts the peer's
    ``X-Forwarded-For``, Traefik writes that header whole as ``ClientHost`` (seen with
    Traefik 3.2 and 3.7: ``"203.0.113.50, 10.0.0.2"``), which is then read as the chain it is.

    >>> _traefik_address("203.0.113.50, 10.0.0.2", None), _traefik_address("127.0.0.1", "198.51.100.23")
    ('203.0.113.50', '198.51.100.23')
    """
    if isinstance(host, str) and "," in host:
        return _address(None, host)
    return _address(host, forwarded)


def parse_envoy(data: Mapping) -> list[Record]:
    """Envoy JSON access log (``json_format``), keys named as the operator likes.

    Keys are matched after the command they hold or the names of :data:`ENVOY_JSON_FORMAT`:
    ``start_time``, ``method``/``:method``, ``path``, ``response_code``, ``duration``,
    ``downstream_remote_address`` (a port is dropped), ``x_forwarded_for``,
    ``user_agent``, ``request_id``/``x_request_id``, ``api_key``/``x_api_key``,
    ``authorization``, ``request_body``. Missing values are ``null`` or ``-``.

    Sample line::

        {"start_time":"2026-11-23T10:00:00.125Z","method":"POST","path":"/v1/completions",
         "response_code":200,"duration":431,"downstream_remote_address":"198.51.100.23:52044",
         "x_forwarded_for":null,"user_agent":"python-httpx/0.27.2",
         "request_id":"0d6c2f4e-8d7b-4b8e-9a51-3c1f0e2d9b77","api_key":"sk-live-77aa",
         "request_body":"{\\"model\\":\\"aurora-8b-instruct\\",\\"prompt\\":\\"Translate: good morning\\"}"}
    """
    d = _proxy_fields(data)
    records = _gateway_records(d, {
        "ts": _proxy_time(d, "start_time"),
        "ip": _address(_pick(d, "downstream_remote_address", "downstream_remote_address_without_port", *_ADDRESS_NAMES), _pick(d, "x_forwarded_for")),
        "method": _pick(d, *_METHOD_NAMES),
        "path": _pick(d, "path", "x_envoy_original_path", *_PATH_NAMES),
        "status": _int(_pick(d, "response_code", *_STATUS_NAMES), "response_code"),
        "latency_ms": _number(_pick(d, "duration"), "duration"),
        "user_agent": _pick(d, "user_agent"),
        "request_id": _pick(d, "request_id", "x_request_id"),
    })  # fmt: skip
    if "prompt" not in records[0] and isinstance(d.get("prompt"), str) and len(records) == 1:
        records[0]["prompt"] = d["prompt"]
    return records


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
    raw_body = _json_body(data.get("request_body"))
    body = from_openai_body(raw_body)
    return [_finish(r) for r in one_per_input({
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
    }, batch_inputs(raw_body))]  # fmt: skip


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
    inputs = batch_inputs({"input": _embedding_inputs(messages) if data.get("call_type") in ("embedding", "aembedding") else messages,
                           "prompt": data.get("prompt")})  # fmt: skip
    return [_finish(r) for r in one_per_input({
        "ts": start,
        "client_id": _first(data.get("client_id"), None if not isinstance(key_hash, str) else client_id_for_key_hash(key_hash, _settings.secret)),
        "ip": _first(data.get("requester_ip_address"), metadata.get("requester_ip_address")),
        "path": _LITELLM_PATHS.get(data.get("call_type")),
        "status": _litellm_status(status, data.get("error_information")),
        "latency_ms": None if start is None or end is None else round((end - start) * 1000.0, 3),
        "model": _first(data.get("model_group"), data.get("model")),
        "prompt": prompt_of(messages, data.get("prompt")),
        "turns": turns_of(messages),
        "params": params_of(parameters) if isinstance(parameters, Mapping) else None,
        "tokens_in": _int(data.get("prompt_tokens"), "prompt_tokens"),
        "tokens_out": _int(data.get("completion_tokens"), "completion_tokens"),
        "request_id": _first(data.get("request_id"), data.get("id")),
    }, inputs)]  # fmt: skip


def _litellm_status(status: Any, error: Any) -> int | None:
    """200 for a success; for a failure, the HTTP status its error carries (a call the proxy
    refused, 429 from a rate limit or a hook), else 500.

    >>> _litellm_status("success", None), _litellm_status("failure", {"error_code": "429"}), _litellm_status("failure", {"error_code": ""})
    (200, 429, 500)
    """
    if status == "success":
        return 200
    if status != "failure":
        return None
    code = str(error.get("error_code", "")) if isinstance(error, Mapping) else ""
    return int(code) if code.isdigit() and 400 <= int(code) <= 599 else 500


def _embedding_inputs(messages: Any) -> Any:
    """An embeddings call's inputs as LiteLLM logs them: each one a user message
    (``[{"role": "user", "content": "first doc"}, ...]``), or the list of strings itself.

    >>> _embedding_inputs([{"role": "user", "content": "first doc"}, {"role": "user", "content": "second doc"}])
    ['first doc', 'second doc']
    """
    if isinstance(messages, list) and all(isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in messages):
        return [m["content"] for m in messages]
    return messages


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
    body = _first(_json_body(data.get("data")), _json_body(data.get("body")), _json_body(data.get("request_body")), data)
    if not isinstance(body, Mapping):
        raise FormatError("no predict request body (data/body) in the line")
    if text_inputs(body) is None and "instances" not in body and "inputs" not in body:
        raise FormatError("no instances or inputs in the predict request")
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
    return _records_with_body({**base, "request_id": request_id}, body)  # a text model's inputs too (KServe's Hugging Face runtime)


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


def text_inputs(body: Mapping | None) -> list[str] | None:
    """The prompts of a request whose ``inputs`` hold text, not numbers: Hugging Face's text
    generation (TGI, Inference Endpoints, SageMaker's LLM containers: ``{"inputs": "...",
    "parameters": {...}}``), the Inference API's batches of strings, and KServe's v2 protocol
    with ``BYTES`` tensors of strings. None for a numeric predict request.

    >>> text_inputs({"inputs": "What is deep learning?", "parameters": {"max_new_tokens": 20}})
    ['What is deep learning?']
    >>> text_inputs({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a cat", "a dog"]}]})
    ['a cat', 'a dog']
    >>> text_inputs({"inputs": [[1.0, 2.0]]}) is None
    True
    """
    inputs = body.get("inputs") if body else None
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and inputs and all(isinstance(x, str) for x in inputs):
        return list(inputs)
    if isinstance(inputs, list) and inputs and all(isinstance(t, Mapping) and t.get("datatype") == "BYTES" for t in inputs):
        texts = [x for t in inputs for x in (t.get("data") if isinstance(t.get("data"), list) else []) if isinstance(x, str)]
        return texts or None
    return None


def _generation_params(body: Mapping) -> dict | None:
    """Sampling parameters of a Hugging Face text generation request (``parameters``), named as
    clonewatch names them: ``max_new_tokens`` is ``max_tokens``, ``top_n_tokens`` asks for
    ``top_logprobs``, ``details`` or ``decoder_input_details`` for logprobs, ``best_of`` for ``n``."""
    given = body.get("parameters")
    if not isinstance(given, Mapping):
        return None
    params = {name: given[name] for name in ("temperature",) if not _missing(given.get(name))}
    for name, ours in (("max_new_tokens", "max_tokens"), ("top_n_tokens", "top_logprobs"), ("best_of", "n"), ("num_return_sequences", "n")):
        if not _missing(given.get(name)) and ours not in params:
            params[ours] = given[name]
    if given.get("details") is True or given.get("decoder_input_details") is True or "top_logprobs" in params:
        params["logprobs"] = True
    return params or None


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


def parse_aws_apigateway(data: Mapping) -> list[Record]:
    """AWS API Gateway access logs in JSON (``$context`` variables): no body, so rate and shape only.

    The client is the API key (``$context.identity.apiKey``, hashed) or its id
    (``apiKeyId``), else the authorizer's principal or the caller.

    Sample line::

        {"requestId":"c6af9ac6-7b61-11e6-9a41-93e8deadbeef","ip":"203.0.113.7",
         "requestTime":"23/Nov/2026:10:00:00 +0000","requestTimeEpoch":1795428000125,
         "httpMethod":"POST","resourcePath":"/v1/chat/completions","status":"200",
         "responseLength":"1843","responseLatency":"812","apiKeyId":"k8x1abc2de",
         "userAgent":"OpenAI/Python 1.54.3"}
    """
    d = {k.lower().replace(".", "_"): v for k, v in data.items() if isinstance(k, str)}
    epoch_ms = _number(_pick(d, "requesttimeepoch", "context_requesttimeepoch"), "requestTimeEpoch")
    key = _pick(d, "apikey", "identity_apikey", "context_identity_apikey")
    key_id = _pick(d, "apikeyid", "identity_apikeyid", "context_identity_apikeyid")
    principal = _pick(d, "principalid", "authorizer_principalid", "caller", "user", "cognitoidentityid")
    return [_finish({
        "ts": _ts(epoch_ms / 1000.0, "requestTimeEpoch") if epoch_ms is not None else _nginx_time(_pick(d, "requesttime")),
        "client_id": _first(_key_client(key), _key_client(key_id), None if principal is None else _client_id_for_ip(f"principal:{principal}", _settings.secret).replace("ip_", "principal_")),
        "ip": _pick(d, "ip", "sourceip", "identity_sourceip"),
        "method": _pick(d, "httpmethod", "method"),
        "path": _pick(d, "resourcepath", "path", "routekey"),
        "status": _int(_pick(d, "status"), "status"),
        "latency_ms": _number(_pick(d, "responselatency", "integrationlatency"), "responseLatency"),
        "user_agent": _pick(d, "useragent", "identity_useragent"),
        "request_id": _pick(d, "requestid"),
    })]  # fmt: skip


PARSERS: dict[str, Callable[[Mapping], list[Record]]] = {
    "canonical": parse_canonical,
    "nginx": parse_nginx,
    "envoy": parse_envoy,
    "kong": parse_kong,
    "litellm": parse_litellm,
    "kserve": parse_kserve,
    "aws": parse_aws_apigateway,
    "caddy": parse_caddy,
    "traefik": parse_traefik,
    "haproxy": parse_nginx,  # a JSON log-format: the proxy names nginx's parser reads
    "alb": parse_nginx,  # ALB writes text only; a JSON line is read as any proxy's
}
FORMATS = ("auto", *PARSERS)
# Formats whose gateways also write text lines (nginx's combined, Envoy's default format).
_TEXT_PARSERS: dict[str, Callable[[str], list[Record]]] = {
    "nginx": parse_nginx_text, "envoy": parse_envoy_text, "haproxy": parse_haproxy_text, "alb": parse_alb_text,
}  # fmt: skip
# The text layouts each of them reads, in the order ``--format auto`` tries them.
_TEXT_LAYOUTS = (("nginx", _COMBINED), ("envoy", _ENVOY_DEFAULT), ("envoy", _ISTIO_DEFAULT), ("haproxy", _HAPROXY), ("alb", _ALB))

# Keys that give a format away, for ``--format auto``: the more of them a line has, the likelier.
_SIGNATURES: dict[str, frozenset[str]] = {
    "canonical": frozenset({"ts", "client_id", "prompt", "features", "params"}),
    "nginx": frozenset({"msec", "time_iso8601", "time_local", "remote_addr", "request_uri", "request_time", "http_x_api_key",
                        "http_user_agent", "http_x_forwarded_for", "request_body", "body_bytes_sent", "uri", "api_key", "time"}),
    "envoy": frozenset({"start_time", "response_code", "duration", "downstream_remote_address", ":method", "x-request-id",
                        "upstream_host", "response_flags", "bytes_received", "bytes_sent", "protocol"}),
    "kong": frozenset({"started_at", "latencies", "consumer", "upstream_uri", "service", "route", "client_ip", "request", "response"}),
    "litellm": frozenset({"call_type", "startTime", "endTime", "model_parameters", "hidden_params", "response_cost", "api_key",
                          "spend", "metadata", "model_group", "messages"}),
    "kserve": frozenset({"instances", "inputs", "inferenceservicename", "specversion", "data", "signature_name"}),
    "caddy": frozenset({"logger", "msg", "level", "resp_headers", "user_id", "size", "duration", "status"}),
    "traefik": frozenset({"StartUTC", "StartLocal", "ClientHost", "ClientAddr", "RequestMethod", "RequestPath", "DownstreamStatus",
                          "OriginStatus", "RouterName", "ServiceName", "entryPointName", "RequestCount", "RetryAttempts"}),
    "aws": frozenset({"requestId", "requestTime", "requestTimeEpoch", "httpMethod", "resourcePath", "apiKeyId", "responseLength",
                      "integrationLatency", "responseLatency", "extendedRequestId"}),
}  # fmt: skip
# Of a signature, the keys only that gateway writes: "requestId" and "requestTime" are also what an
# operator names $request_id and $request_time in camelCase, so an AWS line must show one of these.
_DISTINCTIVE = {"aws": _SIGNATURES["aws"] - {"requestId", "requestTime"}}


# Any other JSON line with two of these (normalized) names is a proxy's, read as nginx's.
_PROXY_NAMES = frozenset({*_TIME_NAMES, *_ADDRESS_NAMES, *_METHOD_NAMES, *_PATH_NAMES, *_STATUS_NAMES, *_API_KEY_NAMES,
                          "authorization", "user_agent", "x_forwarded_for", "request_body", "body", "request", "httprequest"})  # fmt: skip


def _proxy_names_in(keys: Iterable[Any]) -> set[str]:
    """The proxy field names (:data:`_PROXY_NAMES`) among a record's keys, as compared."""
    return {name for key in keys if isinstance(key, str) and len(key) <= 256 for name in _names_of(key)} & _PROXY_NAMES


def is_proxy_record(data: Mapping, ignore: tuple[str, ...] = ()) -> bool:
    """Whether a JSON record names what a proxy's line does (a key, an address, a method, a
    path, a status, a body...), its time aside, under any of its keys but ``ignore``."""
    return bool(_proxy_names_in(key for key in data if key not in ignore) - set(_TIME_NAMES))


def guess_format(line: bytes | str) -> str | None:
    """The format one log line most likely has (None when it has none of them): the gateway
    whose own key names the line shares most, else, for a JSON line with two common proxy
    names (a time, an address, a method, a key...), ``nginx``, whose parser reads them all.

    >>> guess_format('{"msec":"1795428000.125","remote_addr":"203.0.113.7","http_x_api_key":"k"}')
    'nginx'
    >>> guess_format('203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"')
    'nginx'
    >>> guess_format('[{"started_at": 1795428000000, "latencies": {"request": 40}, "consumer": {"id": "c1"}}]')
    'kong'
    >>> guess_format('{"@timestamp": "2026-11-23T10:00:00Z", "apikey": "sk-1", "verb": "POST", "url": "/v1/completions"}')
    'nginx'
    """
    try:
        data = _decode_json(line)
    except FormatError:
        text = _text_of(line).rstrip("\r\n")
        return next((fmt for fmt, layout in _TEXT_LAYOUTS if layout.match(text)), None)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # a batch (Kong http-log's queue): its records share a format
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if isinstance(data.get("data"), dict):  # KServe's payload logger: the predict request under "data"
        keys |= set(data["data"]) & {"instances", "inputs"}
    candidates = [fmt for fmt in _SIGNATURES if fmt not in _DISTINCTIVE or keys & _DISTINCTIVE[fmt]]
    best = max(candidates, key=lambda fmt: (len(keys & _SIGNATURES[fmt]), fmt == "canonical"))
    if keys & _SIGNATURES[best]:
        return best
    if isinstance(data.get("httpRequest"), dict):  # Google Cloud's LogEntry; Knative's request log is that object alone
        keys |= set(data["httpRequest"])
    return "nginx" if len(_proxy_names_in(keys)) >= 2 else None  # a proxy's line, keys named the operator's way


_SECRET_FIELD = re.compile(
    r'("(?:[\w-]*(?:api[_-]?key|apikey|authorization|token|secret|password)[\w-]*)"\s*:\s*")((?:[^"\\]|\\.)*)(")',
    re.IGNORECASE,
)
_CLIENT_ID_FIELD = re.compile(r'("client_id"\s*:\s*")((?:[^"\\]|\\.)*)(")')
_BEARER = re.compile(r"(Bearer\s+)[^\s\"\\]+", re.IGNORECASE)
_KEY_SHAPED = re.compile(r"^(?:sk|pk|rk|api|key|tok)[-_][A-Za-z0-9_-]{8,}$|^[A-Za-z0-9_-]{32,}$")


DEAD_LETTER_RAW_CHARS = 2_000  # a dead letter keeps this much of the offending line


def dead_letter_raw(line: bytes | str) -> str:
    """What a dead letter keeps of its line: the first 2,000 characters, secrets masked.

    >>> dead_letter_raw(b'{"api_key": "sk-1", "status": "200"}\\n')
    '{"api_key": "***", "status": "200"}'
    """
    text = line.decode("utf-8", errors="replace") if isinstance(line, (bytes, bytearray)) else line
    return mask_secrets(text.rstrip("\n")[:DEAD_LETTER_RAW_CHARS])


# A key sent in the query string (Google's APIs take ``?key=``, many others ``?api_key=``).
_QUERY_KEY = re.compile(r"([?&](?:key|api[_-]?key|apikey|access[_-]?token|token|x-api-key)=)([^&#\s\"]+)", re.IGNORECASE)


def key_in_query(path: str) -> tuple[str, str | None]:
    """The path with an API key in its query string masked, and that key (None without one).

    >>> key_in_query("/v1beta/models/gemini:generateContent?alt=sse&key=AIzaSyD-abc123")
    ('/v1beta/models/gemini:generateContent?alt=sse&key=***', 'AIzaSyD-abc123')
    >>> key_in_query("/v1/chat/completions")
    ('/v1/chat/completions', None)
    """
    if "=" not in path:
        return path, None
    match = _QUERY_KEY.search(path)
    if match is None:
        return path, None
    return _QUERY_KEY.sub(r"\1***", path), match[2]


def mask_secrets(raw: str) -> str:
    """A raw line fit to keep in a dead letter: values of key, token and authorization fields
    masked, and keys in a query string.

    >>> mask_secrets('{"http_x_api_key":"sk-live-4f9a","authorization":"Bearer abc","status":"200"}')
    '{"http_x_api_key":"***","authorization":"***","status":"200"}'
    >>> mask_secrets('203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] "POST /v1/x?key=AIzaSyD-abc HTTP/1.1" 200')
    '203.0.113.7 - - [23/Nov/2026:10:00:00 +0000] "POST /v1/x?key=*** HTTP/1.1" 200'
    """
    masked = _QUERY_KEY.sub(r"\1***", _BEARER.sub(r"\1***", _SECRET_FIELD.sub(r"\1***\3", raw)))
    return _CLIENT_ID_FIELD.sub(lambda m: m.group(1) + ("***" if looks_like_key(m.group(2)) else m.group(2)) + m.group(3), masked)


def looks_like_key(client_id: str) -> bool:
    """Whether a client id given as such is an API key (``sk-...``, or a long random token),
    which must be hashed like any key, not stored as it came.

    >>> looks_like_key("sk-live-4f9a8b7c6d"), looks_like_key("key_e0dbaa0c6455768b"), looks_like_key("acme-prod")
    (True, False, False)
    """
    return bool(_KEY_SHAPED.match(client_id)) and not client_id.startswith(("key_", "ip_", "consumer_", "principal_"))


class CustomFormat(Protocol):
    """A format defined by the operator (see :class:`ingest.mapping.FieldMapping`)."""

    name: str

    def parse(self, data: Mapping) -> list[Record]: ...


class LineParser:
    """Parses lines of one source in one format, or in the format its first lines show (``auto``).

    With ``auto`` the format is guessed per line until ``decide_after`` lines have been
    seen, each line parsed in the format most lines showed so far; then it is fixed.

    >>> parser = LineParser("auto")
    >>> parser.parse('{"start_time":"2026-11-23T10:00:00.125Z","response_code":200,"api_key":"k"}')[0]["status"]
    200
    >>> parser.format
    'envoy'
    """

    def __init__(self, fmt: str | CustomFormat = "auto", decide_after: int = 50) -> None:
        self.custom = None if isinstance(fmt, str) else fmt
        if self.custom is not None:
            fmt = self.custom.name
        elif fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}; choose from {', '.join(FORMATS)}")
        self.requested = fmt
        self.decide_after = decide_after
        refresh_settings()
        self._votes: dict[str, int] = {}
        self._seen = 0

    @property
    def decided(self) -> bool:
        """Whether the format is fixed: requested, or guessed from ``decide_after`` lines."""
        return self.requested != "auto" or self._seen >= self.decide_after

    @property
    def format(self) -> str | None:
        """The format in use: the requested one, or the one most lines showed so far."""
        if self.requested != "auto":
            return self.requested
        return max(self._votes, key=self._votes.get) if self._votes else None

    def parse(self, line: bytes | str, time: str | float | None = None) -> list[Record]:
        """Canonical records of one line; raises FormatError with the reason. ``time``: the
        time the line's wrapper gave it (a container runtime's, a log shipper's), for records
        whose line has none of its own.

        >>> LineParser("nginx").parse('{"httpRequest": {"remoteIp": "10.0.0.1:53912"}}', time="2026-11-23T10:00:00Z")[0]["ts"]
        1795428000.0
        """
        line = without_bom(line)
        if self.requested == "auto" and self._seen < self.decide_after:
            self._seen += 1
            guess = guess_format(line)
            if guess is not None:
                self._votes[guess] = self._votes.get(guess, 0) + 1
        fmt = self.format
        if fmt is None:
            raise FormatError(
                "no log format clonewatch reads in the line (--format auto): not a JSON object of a known gateway, nor "
                "nginx's combined or Envoy's default text format; name the format with --format, or map a JSON layout with --mapping"
            )
        token = _WRAPPER_TIME.set(time)
        try:
            return _parse_line(fmt, line, self.custom.parse if self.custom is not None else None)
        finally:
            _WRAPPER_TIME.reset(token)


def without_bom(line: bytes | str) -> bytes | str:
    """``line`` without the byte-order mark that Windows tools write at the start of a file."""
    if isinstance(line, str):
        return line[1:] if line.startswith("\ufeff") else line
    return line[3:] if line.startswith(b"\xef\xbb\xbf") else line


def _text_of(line: bytes | str) -> str:
    """Text of a line; bytes that are not UTF-8 (nginx logs request bytes as they came) become U+FFFD."""
    return line.decode("utf-8", errors="replace") if isinstance(line, (bytes, bytearray)) else line


def _decode_json(line: bytes | str, *, unescaped: bool = False) -> Any:
    try:
        return msgspec.json.decode(line)
    except UnicodeDecodeError:
        return _decode_json(_text_of(line), unescaped=unescaped)
    except RecursionError:
        raise FormatError("JSON nested too deeply") from None
    except msgspec.DecodeError as exc:
        if not unescaped and (as_json := _nginx_default_escape_as_json(line)) is not None:
            return _decode_json(as_json, unescaped=True)
        raise FormatError(f"not JSON: {exc}") from None


_NGINX_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})")


def _json_byte(match: re.Match) -> bytes:
    byte = int(match[1], 16)
    if byte in (0x22, 0x5C):
        return b"\\" + bytes([byte])
    return b"\\u%04x" % byte if byte < 0x20 or byte == 0x7F else bytes([byte])


def _nginx_default_escape_as_json(line: bytes | str) -> bytes | None:
    """A JSON-shaped line from a ``log_format`` without ``escape=json``, as JSON; None for any other line.

    nginx's default escaping writes ``"``, ``\\``, control characters and every byte above
    0x7E as ``\\xHH``, which JSON does not allow, so the first request body breaks the line.
    Each such escape is put back as the byte (multi-byte UTF-8 characters come back whole),
    and quotes, backslashes and control characters are escaped the JSON way instead.

    >>> _decode_json(rb'{"request_body":"{\\x22prompt\\x22: \\x22caf\\xC3\\xA9\\x22}","http_x_api_key":"-"}')
    {'request_body': '{"prompt": "café"}', 'http_x_api_key': '-'}
    """
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
    if b"\\x" not in raw:
        return None
    unescaped = _NGINX_ESCAPE.sub(_json_byte, raw)
    return None if unescaped == raw else unescaped


def parse_line(fmt: str, line: bytes | str, parser: Callable[[Mapping], list[Record]] | None = None) -> list[Record]:
    """Canonical records of one log line in format ``fmt`` (or by ``parser``, a custom
    format's), with the environment's settings as they are now; raises FormatError with the
    reason, and nothing else, whatever the bytes."""
    refresh_settings()
    return _parse_line(fmt, line, parser)


def _parse_line(fmt: str, line: bytes | str, parser: Callable[[Mapping], list[Record]] | None = None) -> list[Record]:
    if parser is None:
        try:
            parser = PARSERS[fmt]
        except KeyError:
            raise ValueError(f"unknown log format {fmt!r}; choose from {', '.join(PARSERS)}") from None
    text_parser = _TEXT_PARSERS.get(fmt)
    if text_parser is not None and not _opens_json(line):  # a text line: no JSON to try first
        return _parse_one(text_parser, fmt, _text_of(line).rstrip("\r\n"))
    try:
        data = _decode_json(line)
    except FormatError:
        if text_parser is not None:
            return _parse_one(text_parser, fmt, _text_of(line).rstrip("\r\n"))
        raise
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return [record for item in data for record in _parse_one(parser, fmt, item)]  # a batch (Kong http-log queue)
    if not isinstance(data, dict):
        raise FormatError(f"a log line must be a JSON object (or an array of them), not {type(data).__name__}")
    return _parse_one(parser, fmt, data)


def _opens_json(line: bytes | str) -> bool:
    """Whether a line opens as a JSON object or an array of them, as no text log line does
    (Envoy's default format opens with ``[`` and a time).

    >>> _opens_json(b'  {"a": 1}'), _opens_json('[ {"a": 1}]'), _opens_json(b'[2026-11-30T14:47:45.237Z] "GET / HTTP/1.1"')
    (True, True, False)
    """
    stripped = line.lstrip()
    head = stripped[:1]
    if head in (b"{", "{"):
        return True
    return head in (b"[", "[") and stripped[1:].lstrip()[:1] in (b"{", b"]", "{", "]")


def _parse_one(parser: Callable[[Any], list[Record]], fmt: str, data: dict | str) -> list[Record]:
    try:
        return parser(data)
    except FormatError:
        raise
    except RecursionError:
        raise FormatError("JSON nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - a parser's blind spot must cost one line, not the pipeline
        raise FormatError(f"unreadable {fmt} line ({type(exc).__name__}: {exc})") from None
