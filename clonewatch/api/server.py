"""``clonewatch api``: HTTP lookups of a client's risk, and answers for gateways' auth hooks.

- ``GET /v1/clients/{client_id}``: current risk, action, reasons, events seen, updated at,
  model version, campaign; an unknown client is ``{"client_id": ..., "known": false}``.
- ``GET /v1/clients/{client_id}/history?since=2026-11-23T00:00:00Z&limit=1000``: its risk and
  decisions over time, from the store (the one path that waits on ClickHouse).
- ``GET /v1/clients?action=throttle&limit=100``: the current non-allow clients, riskiest first.
- ``GET /v1/decide``: for nginx ``auth_request`` and Envoy ``ext_authz`` (HTTP). The client is
  read from a header (the API key, hashed as ingest hashes it, or a client id as given):
  allow is 200, throttle 429 with ``Retry-After`` (or, with ``throttle_mode="degrade"``, 200 with
  headers that tell the gateway to serve less: no logprobs, fewer tokens, some delay), challenge
  the configured status, deny 403. The answer's ``X-Clonewatch-Action`` header names the action.
- ``GET /healthz`` (no token), ``GET /metrics`` (Prometheus text), ``GET /openapi.json`` (no
  token; the same document as ``docs/openapi.json``).

Every path but ``/healthz`` needs ``Authorization: Bearer TOKEN``, or the token in
``X-Clonewatch-Token`` from a gateway that sends its auth request with the client's own
headers (Traefik's ``forwardAuth``): the ``Authorization`` is then the client's.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from clonewatch.api.openapi import OPENAPI
from clonewatch.api.state import ClientTable
from ingest.formats import _bearer, client_id_for_ip, client_id_for_key, client_id_for_key_hash, client_ip, key_in_query
from ingest.http_server import CONNECTION_TIMEOUT_S, TlsFiles, TokenServer, send_json
from schemas import to_epoch

log = logging.getLogger("clonewatch.api")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,256}$")
ACTIONS = ("allow", "throttle", "challenge", "deny")
MAX_DROPPED_BODY = 1 << 16  # a request body up to this size is read and dropped; a larger one closes the connection
KEY_HASH_HEADER = "X-API-Key-SHA256"  # a key's SHA-256 in hex, as LiteLLM knows and logs its virtual keys
TOKEN_HEADER = "X-Clonewatch-Token"  # the API's token where the Authorization header is the client's
DECIDE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")  # what gateways forward to /v1/decide


@dataclass(frozen=True)
class DecideConfig:
    """How ``/v1/decide`` reads the client and answers each action."""

    key_header: str = "x-api-key"  # the API key (or an 'Authorization: Bearer' value): hashed like ingest
    client_header: str | None = None  # a client id used as given (a consumer id set by the gateway)
    throttle_mode: str = "429"  # or "degrade": 200, with headers that make the gateway serve less
    retry_after_s: int = 30
    challenge_status: int = 401
    degrade_max_tokens: int = 256
    degrade_delay_ms: int = 500


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lookups: dict[str, int] = dict.fromkeys(ACTIONS + ("unknown",), 0)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, action: str, seconds: float) -> None:
        with self.lock:
            self.lookups[action] = self.lookups.get(action, 0) + 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self, table: ClientTable) -> str:
        with self.lock:
            lines = ["# TYPE clonewatch_decide_total counter"]
            lines += [f'clonewatch_decide_total{{action="{a}"}} {n}' for a, n in self.lookups.items()]
            lines += [
                "# TYPE clonewatch_decide_seconds summary",
                f"clonewatch_decide_seconds_sum {self.latency_sum:.6f}",
                f"clonewatch_decide_seconds_count {self.latency_count}",
            ]
        by_action = {a: 0 for a in ACTIONS}
        for view in list(table.clients.values()):
            by_action[view.action] = by_action.get(view.action, 0) + 1
        lines += ["# TYPE clonewatch_clients gauge"] + [f'clonewatch_clients{{action="{a}"}} {n}' for a, n in by_action.items()]
        lines += ["# TYPE clonewatch_state_age_seconds gauge", f"clonewatch_state_age_seconds {time.time() - table.refreshed_at:.3f}"]
        return "\n".join(lines) + "\n"


class RiskApi(TokenServer):
    def __init__(
        self, table: ClientTable, token: str, decide: DecideConfig = DecideConfig(), host: str = "127.0.0.1", port: int = 8090, tls: TlsFiles | None = None
    ) -> None:
        if decide.throttle_mode not in ("429", "degrade"):
            raise ValueError("throttle mode is 429 or degrade")
        self.table = table
        self.decide_config = decide
        self.metrics = Metrics()
        super().__init__(self._handler(), token, host, port, "the API needs a bearer token (set CLONEWATCH_API_TOKEN)", tls)

    def authorized(self, headers) -> bool:
        return super().authorized(headers) or hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), self.token)

    # --- answers -----------------------------------------------------------------------------

    def route(self, path: str, query: dict[str, list[str]], headers) -> tuple[int, dict | str, dict[str, str]]:
        if path == "/healthz":
            return 200, {"status": "ok", "clients": len(self.table.clients)}, {}
        if path == "/openapi.json":
            return 200, OPENAPI, {}
        if not self.authorized(headers):
            return 401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"}
        if path == "/metrics":
            return 200, self.metrics.render(self.table), {"Content-Type": "text/plain; version=0.0.4"}
        if _is_decide(path):
            return self.decide(headers, query)
        if path == "/v1/clients":
            return self.clients(query)
        if path.startswith("/v1/clients/") and path.endswith("/history"):
            return self.history(unquote(path[len("/v1/clients/") : -len("/history")]), query)
        if path.startswith("/v1/clients/"):
            return self.client(unquote(path[len("/v1/clients/") :]))
        return 404, {"error": "not found"}, {}

    def client(self, client_id: str) -> tuple[int, dict, dict]:
        if not CLIENT_ID.match(client_id):
            return 400, {"error": "a client id is 1-256 characters of letters, digits and _.:@-"}, {}
        view = self.table.get(client_id)
        if view is None:
            return 200, {"client_id": client_id, "known": False, "action": "allow", "reasons": ["no data for this client"]}, {}
        return 200, {"known": True, **view.to_json()}, {}

    def history(self, client_id: str, query: dict[str, list[str]]) -> tuple[int, dict, dict]:
        if not CLIENT_ID.match(client_id):
            return 400, {"error": "a client id is 1-256 characters of letters, digits and _.:@-"}, {}
        try:
            since = datetime.fromtimestamp(to_epoch(_number_or_text(query.get("since", ["0"])[0])), tz=timezone.utc)
            limit = int(query.get("limit", ["1000"])[0])
        except (ValueError, TypeError) as exc:
            return 400, {"error": f"since is RFC 3339 or epoch seconds, limit a number: {exc}"}, {}
        if not 1 <= limit <= 100_000:
            return 400, {"error": "limit is a number from 1 to 100000"}, {}
        return 200, {"client_id": client_id, **self.table.history(client_id, since, limit)}, {}

    def clients(self, query: dict[str, list[str]]) -> tuple[int, dict, dict]:
        action = query.get("action", [None])[0]
        if action is not None and action not in ACTIONS[1:]:
            return 400, {"error": f"action is one of {', '.join(ACTIONS[1:])}"}, {}
        try:
            limit = int(query.get("limit", ["100"])[0])
        except ValueError:
            limit = -1
        if not 1 <= limit <= 10_000:
            return 400, {"error": "limit is a number from 1 to 10000"}, {}
        return 200, {"clients": [v.to_json() for v in self.table.flagged(action, limit)]}, {}

    def decide(self, headers, query: dict[str, list[str]] | None = None) -> tuple[int, dict, dict[str, str]]:
        """The gateway's answer for the client of a request, named as ingest names it: a client id
        header, else its key's SHA-256 (``X-API-Key-SHA256``, as LiteLLM logs its virtual keys),
        else its key (a header, a bearer token, or the request's query string: Envoy
        appends the request's path to ``/v1/decide``, nginx passes it as ``X-Original-URI``),
        else its address (``X-Real-IP``, or ``X-Forwarded-For`` through the trusted proxies),
        as the clients of a log without keys are."""
        started = time.perf_counter()
        c = self.decide_config
        client_id = headers.get(c.client_header) if c.client_header else None
        if not client_id and (key_hash := headers.get(KEY_HASH_HEADER)):
            client_id = client_id_for_key_hash(key_hash)
        if not client_id:
            key = headers.get(c.key_header) or _bearer(headers.get("X-Original-Authorization") or "") or _clients_bearer(headers) or _query_key(headers, query or {})
            client_id = client_id_for_key(key) if key else None
        if not client_id and (address := client_ip(headers.get("X-Real-IP"), headers.get("X-Forwarded-For"))):
            client_id = client_id_for_ip(address)
        if not client_id:
            self.metrics.observe("unknown", time.perf_counter() - started)
            return 200, {"action": "allow", "reason": "no client in the request"}, {"X-Clonewatch-Action": "allow"}
        view = self.table.get(client_id)
        action = view.action if view is not None else "allow"
        self.metrics.observe(action, time.perf_counter() - started)
        answer = {"client_id": client_id, "action": action}
        marked = {"X-Clonewatch-Action": action, "X-Clonewatch-Client": client_id}
        if action == "throttle" and c.throttle_mode == "degrade":
            return 200, {**answer, "action": "degrade"}, {
                **marked, "X-Clonewatch-Action": "degrade", "X-Clonewatch-Strip": "logprobs,top_logprobs",
                "X-Clonewatch-Max-Tokens": str(c.degrade_max_tokens), "X-Clonewatch-Max-N": "1",
                "X-Clonewatch-Delay-Ms": str(c.degrade_delay_ms),
            }  # fmt: skip
        if action == "throttle":
            return 429, answer, {**marked, "Retry-After": str(c.retry_after_s)}
        if action == "challenge":
            return c.challenge_status, answer, marked
        if action == "deny":
            return 403, answer, marked
        return 200, answer, marked

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "clonewatch-api"
            protocol_version = "HTTP/1.1"  # keep-alive: a gateway reuses its connections to the API
            timeout = CONNECTION_TIMEOUT_S  # and opens them again after a minute idle
            disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (Nagle + delayed ACK)

            def _skip_body(self) -> None:
                """Read and drop a request body, so the next request on the connection starts clean;
                a large or chunked body closes the connection instead."""
                length = self.headers.get("Content-Length", "0")
                if self.headers.get("Transfer-Encoding") or not length.isdigit() or int(length) > MAX_DROPPED_BODY:
                    self.close_connection = True
                elif int(length):
                    self.rfile.read(int(length))

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
                log.debug("%s %s", self.address_string(), format % args)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self._skip_body()
                url = urlsplit(self.path)
                if self.command != "GET" and not (_is_decide(url.path) and self.command in DECIDE_METHODS):
                    send_json(self, 405, {"error": f"{self.command} is not allowed here; use GET"}, {"Allow": "GET"})
                    return
                try:
                    status, payload, headers = api.route(url.path, parse_qs(url.query), self.headers)
                except Exception as exc:  # noqa: BLE001 - one bad request must not stop the API
                    log.exception("lookup failed")
                    status, payload, headers = 500, {"error": f"internal error: {type(exc).__name__}"}, {}
                send_json(self, status, payload, headers)

            def __getattr__(self, name: str):
                """Every method reaches do_GET: Envoy's ext_authz asks /v1/decide with the
                request's own method; other paths answer 405."""
                if name.startswith("do_"):
                    return self.do_GET
                raise AttributeError(name)

        return Handler


def _clients_bearer(headers) -> str | None:
    """The client's bearer key, where the API's token came in ``X-Clonewatch-Token`` and the
    ``Authorization`` header is the client's own (Traefik's ``forwardAuth`` sends it as is)."""
    return _bearer(headers.get("Authorization") or "") if headers.get(TOKEN_HEADER) else None


def _query_key(headers, query: dict[str, list[str]]) -> str | None:
    """A key sent in the request's query string: the decide request's own (Envoy), else the
    original request's URI (nginx's ``X-Original-URI``, Traefik's ``X-Forwarded-Uri``)."""
    own = "?" + "&".join(f"{name}={values[0]}" for name, values in query.items() if values)
    return key_in_query(own)[1] or key_in_query(headers.get("X-Original-URI") or headers.get("X-Forwarded-Uri") or "")[1]


def _is_decide(path: str) -> bool:
    return path == "/v1/decide" or path.startswith("/v1/decide/")  # Envoy's ext_authz appends the request's path


def _number_or_text(value: str) -> float | str:
    """``since=1795428000`` is epoch seconds, anything else a timestamp."""
    try:
        return float(value)
    except ValueError:
        return value
