"""``clonewatch receive``: an HTTP endpoint for gateways that push their logs.

Kong's http-log plugin, Vector's and Fluent Bit's HTTP outputs POST log records instead of
writing a file. ``POST /v1/logs`` takes a body of JSON lines, one JSON object, or a JSON
array of objects (Kong's batches), gzip-encoded or not, in any format ``ship`` reads, also
wrapped in the records Fluent Bit and Vector make of a gateway's lines (:func:`split_body`);
and OpenTelemetry logs (OTLP/HTTP, protobuf or JSON, at the same path: Traefik's
``accessLog.otlp``, Envoy's OpenTelemetry access logger, an OpenTelemetry Collector), each
record's line read in its gateway's format (:mod:`ingest.otlp`). Each
line becomes records or a dead letter exactly as in the shipper; the answer comes only
once they are durable (acknowledged by Kafka, or written and flushed to the spool file), so
a gateway that gets no 2xx sends the batch again and nothing is lost. Lines without a
request id get one from their bytes, so a batch sent twice carries the same ids twice.

- ``401`` without the bearer token, ``413`` past the body limit (also once decompressed),
  ``429`` with ``Retry-After`` while ``max_inflight`` batches are being made durable,
  ``503`` with ``Retry-After`` when the sink fails; ``GET /healthz`` needs no token, ``GET /metrics``
  (Prometheus: batches, lines, records, dead letters, refusals by status) needs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import msgspec

from ingest.containers import shipped_lines
from ingest.http_server import CONNECTION_TIMEOUT_S, TlsFiles, TokenServer, send_json
from ingest.otlp import OtlpError, error_body, is_otlp, is_protobuf, otlp_lines, response_body
from ingest.shipper import Line

OTLP_MEDIA = {"protobuf": "application/x-protobuf", "json": "application/json"}  # an OTLP request's encoding -> its answers' type
log = logging.getLogger("clonewatch.receive")

DEFAULT_MAX_BODY = 10 * 1024 * 1024


@dataclass
class ReceiveStats:
    requests: int = 0
    lines: int = 0
    records: int = 0
    dead_letters: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # status -> count
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refuse(self, status: int) -> None:
        with self.lock:
            self.refused[status] = self.refused.get(status, 0) + 1

    def prometheus(self) -> str:
        """The counters as Prometheus text.

        >>> stats = ReceiveStats(requests=2, lines=30, records=31, dead_letters=1, refused={413: 1})
        >>> [line for line in stats.prometheus().splitlines() if not line.startswith("#")][-1]
        'clonewatch_receive_refused_total{status="413"} 1'
        """
        with self.lock:
            totals = {"batches": self.requests, "lines": self.lines, "records": self.records, "dead_letters": self.dead_letters}
            refused = dict(self.refused)
        lines = []
        for name, value in totals.items():
            lines += [f"# TYPE clonewatch_receive_{name}_total counter", f"clonewatch_receive_{name}_total {value}"]
        lines.append("# TYPE clonewatch_receive_refused_total counter")
        lines += [f'clonewatch_receive_refused_total{{status="{status}"}} {n}' for status, n in sorted(refused.items())]
        return "\n".join(lines) + "\n"


class PushSource:
    """One pushed batch as a line source: its lines and stable request ids (from the bytes)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def request_id(self, line: Line) -> str:
        return "push-" + hashlib.sha256(line.data).hexdigest()[:20]


def split_body(body: bytes) -> list[bytes]:
    """One JSON document (an object, or an array of them) as one line; otherwise JSON lines.
    The records a log shipper wrapped a gateway's lines in (Fluent Bit's ``{"log": ...}``,
    Vector's ``{"message": ...}``, as an array or as JSON lines) give one JSON line each,
    which the shipper unwraps (:class:`ingest.containers.ContainerLines`), keeping the
    shipper's time for a gateway line without one.

    >>> split_body(b'[{"date": 1.5, "log": "line one"}, {"date": 1.6, "log": "line two"}]')
    [b'{"date":1.5,"log":"line one"}', b'{"date":1.6,"log":"line two"}']
    >>> split_body(b'{"message": "a"}\\n{"message": "b"}\\n')
    [b'{"message": "a"}', b'{"message": "b"}']
    """
    stripped = body.strip()
    if stripped[:1] in (b"{", b"["):
        try:
            document = msgspec.json.decode(stripped)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            pass
        else:
            if isinstance(document, list) and shipped_lines(document) is not None:
                return [msgspec.json.encode(record) for record in document]
            return [stripped]
    return [line for line in body.splitlines() if line.strip()]


def read_body(request: BaseHTTPRequestHandler, limit: int) -> bytes | None:
    """The request's body, by its Content-Length or in chunks (``Transfer-Encoding: chunked``,
    as OpenTelemetry's Go exporters send); None past ``limit`` bytes; ValueError when it
    says neither or its chunks are malformed."""
    if request.headers.get("Transfer-Encoding", "").lower() != "chunked":
        try:
            length = int(request.headers.get("Content-Length", ""))
        except ValueError:
            raise ValueError("a Content-Length or chunked Transfer-Encoding is required") from None
        return None if length > limit or length < 0 else request.rfile.read(length)
    body = bytearray()
    while True:
        try:
            size = int(request.rfile.readline(1024).split(b";")[0].strip(), 16)
        except ValueError:
            raise ValueError("malformed chunked body") from None
        if size == 0:
            while request.rfile.readline(8192).strip():  # trailers, if any
                pass
            return bytes(body)
        if size < 0 or len(body) + size > limit:
            return None
        body += request.rfile.read(size)
        request.rfile.readline(1024)


def decompress(body: bytes, limit: int) -> bytes | None:
    """A gzip body inflated, or None when it would exceed ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        return None
    return out


class PushReceiver(TokenServer):
    """The HTTP server; ``deliver(source, lines)`` makes lines durable and returns
    (records, dead letters), or raises when it cannot."""

    def __init__(
        self,
        deliver: Callable[[PushSource, list[Line]], tuple[int, int]],
        token: str,
        host: str = "127.0.0.1",
        port: int = 8080,
        max_body: int = DEFAULT_MAX_BODY,
        max_inflight: int = 4,
        tls: TlsFiles | None = None,
    ) -> None:
        self.deliver = deliver
        self.max_body = max_body
        self.stats = ReceiveStats()
        self._slots = threading.BoundedSemaphore(max_inflight)
        super().__init__(self._handler(), token, host, port, "the receiver needs a bearer token (set CLONEWATCH_RECEIVE_TOKEN)", tls)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "clonewatch-receive"
            timeout = CONNECTION_TIMEOUT_S

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
                log.debug("%s %s", self.address_string(), format % args)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path == "/healthz":
                    send_json(self, HTTPStatus.OK, {"status": "ok"})
                elif self.path == "/metrics":
                    receiver._metrics(self)
                else:
                    send_json(self, HTTPStatus.NOT_FOUND, {"error": "not found; logs go to POST /v1/logs"})

            def do_POST(self) -> None:  # noqa: N802
                receiver._post(self)

        return Handler

    def _metrics(self, request: BaseHTTPRequestHandler) -> None:
        if not self.authorized(request.headers):
            send_json(request, HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"})
            return
        send_json(request, HTTPStatus.OK, self.stats.prometheus(), {"Content-Type": "text/plain; version=0.0.4"})

    def _post(self, request: BaseHTTPRequestHandler) -> None:
        content_type = request.headers.get("Content-Type", "")
        # An OTLP client is owed its refusals as a google.rpc.Status: protobuf is known from the
        # header, OTLP/JSON once the body is read; anything else gets {"error": ...}.
        otlp = "protobuf" if is_protobuf(content_type) else None

        def refuse(status: HTTPStatus, message: str, headers: dict[str, str] | None = None, count: bool = True) -> None:
            if count:
                self.stats.refuse(int(status))
            if otlp is None:
                send_json(request, status, {"error": message}, headers)
            else:
                body = error_body(int(status), message, protobuf=otlp == "protobuf")
                send_json(request, status, body, {**(headers or {}), "Content-Type": OTLP_MEDIA[otlp]})

        if request.path.split("?")[0] != "/v1/logs":
            refuse(HTTPStatus.NOT_FOUND, "not found; logs go to POST /v1/logs", count=False)  # not a refusal of logs
            return
        if not self.authorized(request.headers):
            refuse(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
            return
        try:
            body = read_body(request, self.max_body)
        except ValueError as exc:
            refuse(HTTPStatus.BAD_REQUEST, str(exc), {"Connection": "close"})
            request.close_connection = True
            return
        if body is None:
            refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"bodies are limited to {self.max_body} bytes", {"Connection": "close"})
            request.close_connection = True
            return
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = decompress(body, self.max_body)
            except zlib.error as exc:
                refuse(HTTPStatus.BAD_REQUEST, f"not gzip: {exc}")
                return
            if body is None:
                refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"bodies are limited to {self.max_body} bytes once decompressed")
                return
        if otlp is None and is_otlp(content_type, body):
            otlp = "json"
        try:
            texts = otlp_lines(body, content_type) if otlp else split_body(body)
        except OtlpError as exc:
            refuse(HTTPStatus.BAD_REQUEST, str(exc))
            return
        taken = self.take(f"push:{request.client_address[0]}", texts)
        if taken == 429:
            refuse(HTTPStatus.TOO_MANY_REQUESTS, "behind; send again later", {"Retry-After": "1"}, count=False)  # take() counted it
            return
        if taken == 503:
            refuse(HTTPStatus.SERVICE_UNAVAILABLE, "could not store the batch; send it again", {"Retry-After": "5"}, count=False)
            return
        records, dead_letters = taken
        if otlp:
            send_json(request, HTTPStatus.OK, response_body(dead_letters, protobuf=otlp == "protobuf"), {"Content-Type": OTLP_MEDIA[otlp]})
            return
        send_json(request, HTTPStatus.OK, {"lines": len(texts), "records": records, "dead_letters": dead_letters})

    def take(self, source: str, texts: list[bytes]) -> tuple[int, int] | int:
        """Make one pushed batch's lines durable: (records, dead letters), or 429 while
        ``max_inflight`` batches are in hand, or 503 when the sink fails (nothing was kept)."""
        lines = [Line(0, n, data) for n, data in enumerate(texts, start=1)]
        if not self._slots.acquire(blocking=False):
            self.stats.refuse(429)
            return 429
        try:
            records, dead_letters = self.deliver(PushSource(source), lines)
        except Exception as exc:  # noqa: BLE001 - the gateway must hear that nothing was kept
            log.warning("could not make a pushed batch of %d lines durable: %s", len(lines), exc)
            self.stats.refuse(503)
            return 503
        finally:  # free before the answer goes out, so the sender's next batch finds the slot free
            self._slots.release()
        with self.stats.lock:
            self.stats.requests += 1
            self.stats.lines += len(lines)
            self.stats.records += records
            self.stats.dead_letters += dead_letters
        return records, dead_letters


class SpoolWriter:
    """The embedded route: canonical records appended to a JSON-lines file that ``clonewatch
    run --input FILE`` reads (dead letters to a second file), flushed to disk before the answer."""

    def __init__(self, records: Path, dead_letters: Path) -> None:
        self.paths = (records, dead_letters)
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, messages: list[tuple[bool, bytes]]) -> None:
        """``messages``: (is_record, JSON bytes) in order."""
        with self._lock:
            for is_record, path in ((True, self.paths[0]), (False, self.paths[1])):
                chosen = [value for kind, value in messages if kind is is_record]
                if not chosen:
                    continue
                with path.open("ab") as f:
                    f.write(b"".join(value + b"\n" for value in chosen))
                    f.flush()
                    os.fsync(f.fileno())
