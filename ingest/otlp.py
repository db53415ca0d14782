"""OpenTelemetry log records (OTLP over HTTP) as gateway log lines.

Gateways that export their access logs with OpenTelemetry (Traefik's ``accessLog.otlp``,
Envoy's OpenTelemetry access logger, an OpenTelemetry Collector in front of any of them)
POST an ``ExportLogsServiceRequest`` to ``/v1/logs``, in protobuf (the exporters' default)
or in JSON. Each log record becomes one line, read in whatever format its gateway writes:
its body when the body is text (Traefik sends its JSON access log line there), the body's
key-value list as a JSON object, or else the record's attributes as one (an Envoy logger
configured with attributes only). The line goes in a Fluent Bit style wrapper
(``{"date": ..., "log": ...}``) that carries the record's time, which the reader uses for a
line that has none of its own, as for any shipper's wrapper.

>>> from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
>>> request = ExportLogsServiceRequest()
>>> record = request.resource_logs.add().scope_logs.add().log_records.add()
>>> record.time_unix_nano = 1795428000_250000000
>>> record.body.string_value = '{"ClientHost":"203.0.113.7","RequestPath":"/v1/chat/completions"}'
>>> otlp_lines(request.SerializeToString(), "application/x-protobuf")
[b'{"date":1795428000.25,"log":"{\\\\"ClientHost\\\\":\\\\"203.0.113.7\\\\",\\\\"RequestPath\\\\":\\\\"/v1/chat/completions\\\\"}"}']
"""

from __future__ import annotations

from typing import Any

import msgspec

MAX_DEPTH = 32  # nested key-value lists read this deep; deeper values are dropped


class OtlpError(ValueError):
    """A body that is not an ``ExportLogsServiceRequest``."""


def is_protobuf(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/x-protobuf"


def is_otlp(content_type: str, body: bytes) -> bool:
    """Whether a pushed body is an OTLP logs request: protobuf, or JSON with ``resourceLogs``."""
    json = content_type.split(";")[0].strip().lower() == "application/json"
    return is_protobuf(content_type) or (json and body.lstrip()[:1] == b"{" and b'"resourceLogs"' in body[:4096])


def otlp_lines(body: bytes, content_type: str) -> list[bytes]:
    """One wrapped line per log record of an OTLP logs request; raises :class:`OtlpError`."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    try:
        if is_protobuf(content_type):
            request.ParseFromString(body)
        else:
            json_format.Parse(body, request, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, RecursionError, UnicodeDecodeError, ValueError) as exc:
        raise OtlpError(f"not an OTLP logs request: {str(exc)[:200]}") from None
    return request_lines(request)


def export_response(unread: int):
    """An ``ExportLogsServiceResponse``: empty, or with a partial success naming the records
    that could not be read (kept as dead letters), which exporters log for the gateway's operator."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    response = ExportLogsServiceResponse()
    if unread:
        response.partial_success.rejected_log_records = unread
        response.partial_success.error_message = f"{unread} log records could not be read as access log lines; clonewatch kept them as dead letters with the reason"
    return response


def response_body(unread: int, protobuf: bool) -> bytes:
    """:func:`export_response` in the request's encoding (OTLP/HTTP)."""
    return _encoded(export_response(unread), protobuf)


def _encoded(message, protobuf: bool) -> bytes:
    from google.protobuf import json_format

    return message.SerializeToString() if protobuf else json_format.MessageToJson(message, indent=None).encode()


# google.rpc.Code of each refusal the receiver answers, for the Status an OTLP client is owed
_RPC_CODES = {400: 3, 401: 16, 404: 5, 413: 8, 429: 8, 503: 14}  # INVALID_ARGUMENT, UNAUTHENTICATED, NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE


def error_body(status: int, message: str, protobuf: bool) -> bytes:
    """The body of a refusal as OTLP/HTTP asks for one: a ``google.rpc.Status`` in the
    request's encoding, which exporters log for the gateway's operator.

    >>> from google.rpc.status_pb2 import Status
    >>> Status.FromString(error_body(401, "missing or wrong bearer token", protobuf=True)).code
    16
    >>> error_body(400, "not gzip", protobuf=False)
    b'{"code": 3, "message": "not gzip"}'
    """
    from google.rpc.status_pb2 import Status

    return _encoded(Status(code=_RPC_CODES.get(status, 2), message=message), protobuf)  # 2: UNKNOWN


def request_lines(request) -> list[bytes]:
    """One wrapped line per log record of a decoded ``ExportLogsServiceRequest`` (OTLP/gRPC's)."""
    lines = []
    for resource in request.resource_logs:
        for scope in resource.scope_logs:
            for record in scope.log_records:
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                if nanos:
                    lines.append(msgspec.json.encode({"date": round(nanos / 1e9, 6), "log": _line_of(record)}))
                else:  # Vector's wrapper: a {"log": ...} without a time reads as a container runtime's split line
                    lines.append(msgspec.json.encode({"message": _line_of(record)}))
    return lines


def _line_of(record) -> str:
    body = record.body
    kind = body.WhichOneof("value")
    if kind == "string_value":
        return body.string_value.rstrip("\r\n")
    if kind == "kvlist_value":
        return msgspec.json.encode(_object(body.kvlist_value.values, 0)).decode()
    if kind is not None:
        return msgspec.json.encode({"body": _value(body, 0), **_object(record.attributes, 0)}).decode()
    return msgspec.json.encode(_object(record.attributes, 0)).decode()


def _object(pairs, depth: int) -> dict[str, Any]:
    return {pair.key: _value(pair.value, depth + 1) for pair in pairs} if depth < MAX_DEPTH else {}


def _value(value, depth: int) -> Any:
    """An ``AnyValue`` as JSON: strings, numbers, booleans, lists and objects (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return _object(value.kvlist_value.values, depth)
    if kind == "array_value":
        return [_value(v, depth + 1) for v in value.array_value.values] if depth < MAX_DEPTH else []
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return None if kind is None else getattr(value, kind)
