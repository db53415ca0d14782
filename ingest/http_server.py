"""What clonewatch's HTTP services share: a threaded server behind a bearer token, answering JSON,
over TLS when given a certificate."""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import sys
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


log = logging.getLogger("clonewatch.http")

CONNECTION_TIMEOUT_S = 60.0  # a connection silent this long (no request, or a body that stopped coming) is closed, its thread freed


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the listen backlog: at socketserver's 5, a gateway's burst of new connections waits 1 s for SYN retries
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):  # a failed handshake, a client gone: its own affair
            log.debug("connection from %s ended: %s", client_address[0], error)
            return
        super().handle_error(request, client_address)


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate chain and private key, PEM files (the key may sit in the chain's file)."""

    cert: Path
    key: Path | None = None

    def read(self) -> tuple[bytes, bytes]:
        """(chain, key) as bytes, for gRPC's credentials."""
        return self.cert.read_bytes(), (self.key or self.cert).read_bytes()

    def context(self) -> ssl.SSLContext:
        """A server context: TLS 1.2 or later, the files checked now, so a wrong path or a key
        that does not match its certificate is an error at start, not at the first connection."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use the TLS certificate {self.cert} and key {self.key or self.cert}: {exc}") from None
        return context


class TokenServer:
    """A threaded HTTP server whose requests are checked with :meth:`authorized`, over TLS when
    given :class:`TlsFiles`.

    Subclasses give the handler class; a port already in use is a ``ValueError`` that says so.
    """

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], token: str, host: str, port: int, missing_token: str, tls: TlsFiles | None = None
    ) -> None:
        if not token:
            raise ValueError(missing_token)
        self.token = token.encode()
        context = tls.context() if tls is not None else None
        try:
            self.server = _Server((host, port), handler)
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        if context is not None:
            # The handshake happens in the connection's own thread, on its first read, under the
            # handler's timeout: a client that stalls in it cannot hold up the accepting thread.
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.scheme = "https" if context is not None else "http"

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"{self.scheme}://{host}:{port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorized(self, headers) -> bool:
        """The request carries ``Authorization: Bearer TOKEN`` (compared in constant time)."""
        return hmac.compare_digest(headers.get("Authorization", "").encode(), b"Bearer " + self.token)


def send_json(request: BaseHTTPRequestHandler, status: int, payload: dict | str | bytes, headers: dict[str, str] | None = None) -> None:
    """Answer with ``payload`` as JSON (text or bytes are sent as they are, as ``Content-Type`` in ``headers`` says)."""
    headers = dict(headers or {})
    body = payload if isinstance(payload, bytes) else (payload if isinstance(payload, str) else json.dumps(payload)).encode()
    request.send_response(HTTPStatus(status))
    request.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
    request.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        request.send_header(name, value)
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)
