"""``--mapping FILE``: read JSON access logs of any layout by naming where each field is.

A mapping file (TOML or JSON) gives, for each canonical field, the path of keys that leads
to it in a log line, dotted (``"request.headers.x-api-key"``), or a list of such paths, the
first present one winning; inside that list, a list of keys is one path of literal keys
(for keys that hold dots: ``[["labels", "app.kubernetes.io/name"]]``)::

    # clonewatch field mapping
    ts = "timestamp"                       # epoch seconds or ms, RFC 3339, or nginx's time
    api_key = ["request.headers.x-api-key", "request.headers.authorization"]  # HMAC'd into client_id
    ip = "client.address"
    forwarded_for = "request.headers.x-forwarded-for"   # used only through trusted proxies
    status = "response.status"
    body = "request.body"                  # an OpenAI-style or KServe/TF-Serving body, object or string

Fields: see :data:`FIELDS`. ``ts`` and one of ``client_id`` / ``api_key`` are required.
Keys match exactly, else case-insensitively.

>>> mapping = FieldMapping.from_dict({"ts": "t", "api_key": "auth.key", "body": "req"}, "example")
>>> record = mapping.parse({"t": 1795428000.5, "auth": {"key": "sk-live-4f9a8b7c"}, "req": {"prompt": "hi"}})[0]
>>> record["client_id"].startswith("key_"), record["prompt"], record["ts"]
(True, 'hi', 1795428000.5)
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ingest.formats import FormatError, Record, _address, _bearer, _first, _gateway_records, _int, _number, _ts

FIELDS: dict[str, str] = {
    "ts": "request time: epoch seconds or milliseconds, RFC 3339, or nginx's time_local",
    "client_id": "a client id used as given (a consumer, an account); key-shaped ids are hashed",
    "api_key": "the API key (or an 'Authorization: Bearer' value), stored only as an HMAC",
    "ip": "the client address (host:port is fine)",
    "forwarded_for": "the X-Forwarded-For value, used only through trusted proxies",
    "method": "HTTP method",
    "path": "request path",
    "status": "response status",
    "latency_ms": "response time in milliseconds",
    "user_agent": "User-Agent",
    "model": "model name",
    "request_id": "request id",
    "body": "the request body: an OpenAI-style call or a KServe/TF-Serving predict request",
    "prompt": "the prompt text, where no body is logged",
    "features": "numeric inputs (a list of numbers), where no body is logged",
}


class MappingError(ValueError):
    """The mapping file cannot be used; the message says why."""


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        if key in data:
            data = data[key]
            continue
        lowered = key.lower()
        data = next((v for k, v in data.items() if isinstance(k, str) and k.lower() == lowered), None)
    return data


def _paths(field: str, spec: Any) -> tuple[tuple[str, ...], ...]:
    """A field's alternatives: "a.b" (a dotted path), ["a.b", "c"] (alternatives), and inside
    such a list, ["labels", "app.kubernetes.io/name"] (one path of literal keys)."""
    if isinstance(spec, str) and spec.strip():
        return (tuple(spec.split(".")),)
    if isinstance(spec, list) and spec:
        out = []
        for item in spec:
            if isinstance(item, str) and item.strip():
                out.append(tuple(item.split(".")))
            elif isinstance(item, list) and item and all(isinstance(k, str) and k for k in item):
                out.append(tuple(item))
            else:
                break
        else:
            return tuple(out)
    raise MappingError(
        f"field {field!r}: a path is a dotted string, a list of them (the first present wins), "
        f"or inside that list a list of literal keys; not {spec!r}"
    )


class FieldMapping:
    """A custom log format: where each canonical field lies in a JSON log line."""

    def __init__(self, paths: dict[str, tuple[tuple[str, ...], ...]], source: str) -> None:
        self.paths = paths
        self.source = source
        self.name = f"mapping {source}"

    @classmethod
    def load(cls, path: str | Path) -> FieldMapping:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MappingError(f"cannot read the mapping file {path}: {exc.strerror or exc}") from None
        try:
            raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
            raise MappingError(f"the mapping file {path} is not valid {kind}: {exc}") from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "mapping") -> FieldMapping:
        if not isinstance(raw, Mapping):
            raise MappingError(f"{source}: a mapping is a table of field = path")
        unknown = sorted(set(raw) - set(FIELDS))
        if unknown:
            raise MappingError(f"{source}: unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}")
        if "ts" not in raw or not ({"client_id", "api_key"} & set(raw)):
            raise MappingError(f"{source}: needs 'ts' and one of 'client_id' or 'api_key'")
        return cls({field: _paths(field, spec) for field, spec in raw.items()}, source)

    def __str__(self) -> str:
        return self.name

    def get(self, data: Mapping, field: str) -> Any:
        return _first(*(_dig(data, path) for path in self.paths.get(field, ())))

    def parse(self, data: Mapping) -> list[Record]:
        """The canonical records of one decoded log line (a predict body gives one per instance)."""
        get = lambda field: self.get(data, field)  # noqa: E731
        record: Record = {
            "ts": _ts(get("ts"), "ts"),
            "ip": _address(get("ip"), get("forwarded_for")),
            "method": get("method"),
            "path": get("path"),
            "status": _int(get("status"), "status"),
            "latency_ms": _number(get("latency_ms"), "latency_ms"),
            "user_agent": get("user_agent"),
            "model": get("model"),
            "request_id": get("request_id"),
            "prompt": get("prompt"),
            "features": get("features"),
        }
        api_key = get("api_key")
        keys = {"client_id": get("client_id"), "api_key": _first(_bearer(api_key), api_key), "request_body": get("body")}
        if record["prompt"] is not None and not isinstance(record["prompt"], str):
            raise FormatError("prompt: expected text")
        return _gateway_records(keys, record)
