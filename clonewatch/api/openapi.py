"""The API's OpenAPI 3.1 document, served at ``/openapi.json`` and checked in as ``docs/openapi.json``.

    python -m clonewatch.api.openapi > docs/openapi.json     # after changing it (a test compares the two)
"""

from __future__ import annotations

import json

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_CLIENT_ID = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,256}$"}}
_SINCE = (
    r"^([1-3]?[0-9]{1,9}(\.[0-9]+)?"
    r"|(197[1-9]|19[89][0-9]|20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]0[0-9]:00))$"
)
_ACTION = {"type": "string", "enum": ["allow", "throttle", "challenge", "deny"]}
_VIEW = {
    "type": "object",
    "properties": {
        "client_id": {"type": "string"}, "known": {"type": "boolean"}, "risk": {"type": "number"}, "action": _ACTION,
        "reasons": {"type": "array", "items": {"type": "string"}}, "events_seen": {"type": "integer"},
        "updated_at": {"type": "string", "format": "date-time"}, "model_version": {"type": "string"},
        "campaign_id": {"type": ["string", "null"]},
    },
    "required": ["client_id", "action"],
}  # fmt: skip


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = {"401": _json(_ERROR, "missing or wrong bearer token")}

OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "clonewatch risk lookup API",
        "version": "1",
        "description": "Each client's current risk and action, served from memory; answers for gateways' auth hooks.",
    },
    "components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"},
        "token_header": {"type": "apiKey", "in": "header", "name": "X-Clonewatch-Token",
                         "description": "the same token, from a gateway whose auth request carries the client's own Authorization (Traefik's forwardAuth)"},
    }},
    "security": [{"bearer": []}, {"token_header": []}],
    "paths": {
        "/v1/clients/{client_id}": {"get": {
            "summary": "A client's current risk, action and reasons (an unknown client: known=false, allow)",
            "parameters": [_CLIENT_ID],
            "responses": {"200": _json(_VIEW), "400": _json(_ERROR, "malformed client id"), **_UNAUTHORIZED},
        }},
        "/v1/clients/{client_id}/history": {"get": {
            "summary": "A client's risk scores and decisions over time, oldest first, from the store",
            "parameters": [
                _CLIENT_ID,
                {"name": "since", "in": "query", "schema": {"type": "string", "pattern": _SINCE}, "description": "RFC 3339 (1971-2099) or epoch seconds"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000}},
            ],
            "responses": {"200": _json({"type": "object", "properties": {
                "client_id": {"type": "string"}, "risk": {"type": "array", "items": {"type": "object"}},
                "decisions": {"type": "array", "items": {"type": "object"}}}}),
                "400": _json(_ERROR, "malformed client id, since or limit"), **_UNAUTHORIZED},
        }},
        "/v1/clients": {"get": {
            "summary": "The current non-allow clients, riskiest first",
            "parameters": [
                {"name": "action", "in": "query", "schema": {"type": "string", "enum": ["throttle", "challenge", "deny"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}},
            ],
            "responses": {"200": _json({"type": "object", "properties": {"clients": {"type": "array", "items": _VIEW}}}),
                          "400": _json(_ERROR, "unknown action or bad limit"), **_UNAUTHORIZED},
        }},
        "/v1/decide": {method: {
            "summary": "For nginx auth_request, Envoy ext_authz and LiteLLM's pre-call hook (any method, any path below it)",
            "description": "The client comes from the configured client-id header, X-API-Key-SHA256 (a key's SHA-256 in hex, as LiteLLM "
            "logs its virtual keys) or the API-key header (hashed as ingest hashes keys), or a bearer key in X-Original-Authorization "
            "(or in Authorization, where the token came in X-Clonewatch-Token), "
            "else a key in the query string (the decide request's own, or X-Original-URI / X-Forwarded-Uri), "
            "else the address (X-Real-IP, or X-Forwarded-For through the trusted proxies), as ingest names clients. "
            "X-Clonewatch-Action names the action; a degrade answer carries X-Clonewatch-Strip, -Max-Tokens, -Max-N and -Delay-Ms.",
            "responses": {
                "200": _json({"type": "object"}, "allow, or degrade (with --throttle-mode degrade)"),
                "429": _json({"type": "object"}, "throttle, with Retry-After"),
                "401": _json({"type": "object"}, "challenge (the configured status), or a missing or wrong token"),
                "403": _json({"type": "object"}, "deny"),
            },
        } for method in ("get", "post", "put", "patch", "delete", "head", "options")},
        "/healthz": {"get": {"summary": "Liveness and the number of clients held", "security": [], "responses": {"200": _json({"type": "object"})}}},
        "/metrics": {"get": {"summary": "Prometheus text", "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}, **_UNAUTHORIZED}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": _json({"type": "object"})}}},
    },
}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(OPENAPI, indent=2))
