"""What clonewatch's HTTP services share: a threaded server behind a bearer token, answering JSON."""

from __future__ import annotations

import hmac
import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


CONNECTION_TIMEOUT_S = 60.0  # a connection silent this long (no request, or a body that stopped coming) is closed, its thread freed


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the listen backlog: at socketserver's 5, a gateway's burst of new connections waits 1 s for SYN retries
    daemon_threads = True


class TokenServer:
    """A threaded HTTP server whose requests are checked with :meth:`authorized`.

    Subclasses give the handler class; a port already in use is a ``ValueError`` that says so.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], token: str, host: str, port: int, missing_token: str) -> None:
        if not token:
            raise ValueError(missing_token)
        self.token = token.encode()
        try:
            self.server = _Server((host, port), handler)
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

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
