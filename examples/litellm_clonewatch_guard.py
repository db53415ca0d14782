"""Enforce clonewatch's decisions in the LiteLLM proxy: a pre-call hook that asks ``/v1/decide``.

Copy this file next to the proxy's ``config.yaml`` (as ``clonewatch_guard.py``) and name it
among the callbacks::

    litellm_settings:
      callbacks: clonewatch_guard.guard

Settings come from the proxy's environment: ``CLONEWATCH_API_URL`` (default
``http://127.0.0.1:8090``), ``CLONEWATCH_API_TOKEN`` (``clonewatch api``'s bearer token),
``CLONEWATCH_TIMEOUT_S`` (default 0.2) and ``CLONEWATCH_FAIL`` (``open``, the default: a
request is served when clonewatch cannot answer in time; ``closed``: it gets 503).

The client is the virtual key, named as LiteLLM names it in its logs (the SHA-256 of the key,
``metadata.user_api_key_hash``) and sent as ``X-API-Key-SHA256``, so the decisions clonewatch
made from the proxy's logs reach the key that earned them. A throttle is 429 with
``Retry-After``, a challenge 401, a deny 403; with ``clonewatch api --throttle-mode degrade``
a throttled key is served less instead (no logprobs, at most the answer's ``max_tokens`` and one
choice, after a delay), which does not tell the client that it was caught.

Outside the proxy (clonewatch's tests) the module imports without LiteLLM: the hook is then a
plain class with the same logic, and a refusal a plain exception with the same fields.
"""

from __future__ import annotations

import asyncio
import logging
import os

import httpx

try:  # the LiteLLM proxy's environment
    from fastapi import HTTPException
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.proxy.litellm_pre_call_utils import LiteLLMProxyRequestSetup
except ImportError:  # elsewhere: the same logic on a plain base class
    CustomLogger = object
    LiteLLMProxyRequestSetup = None

    class HTTPException(Exception):  # noqa: N818 - FastAPI's name, so the hook reads the same either way
        def __init__(self, status_code: int, detail: object = None, headers: dict[str, str] | None = None) -> None:
            super().__init__(status_code, detail)
            self.status_code, self.detail, self.headers = status_code, detail, headers


log = logging.getLogger("clonewatch.guard")
REFUSALS = {"throttle": "throttled", "challenge": "challenged: verify your account", "deny": "denied"}
LOGPROB_FIELDS = ("logprobs", "top_logprobs")


def logged_key(user_api_key_dict) -> str | None:
    """The key as LiteLLM's logs name it (``metadata.user_api_key_hash``: the key's hash, or
    from LiteLLM 1.110 on a session token's alias)."""
    logged = getattr(LiteLLMProxyRequestSetup, "get_logged_api_key", None)
    return logged(user_api_key_dict) if logged is not None else getattr(user_api_key_dict, "api_key", None)


def degraded(data: dict, headers: httpx.Headers) -> dict:
    """The request made smaller as a degrade answer says: fields stripped, tokens and choices capped."""
    for field in headers.get("X-Clonewatch-Strip", ",".join(LOGPROB_FIELDS)).split(","):
        data.pop(field.strip(), None)
    if (cap := headers.get("X-Clonewatch-Max-Tokens", "")).isdigit():
        asked = [field for field in ("max_tokens", "max_completion_tokens") if data.get(field)] or ["max_tokens"]
        for field in asked:
            data[field] = min(int(data.get(field) or cap), int(cap))
    if (choices := headers.get("X-Clonewatch-Max-N", "")).isdigit() and data.get("n"):
        data["n"] = min(int(data["n"]), int(choices))
    return data


class ClonewatchGuard(CustomLogger):
    """Asks clonewatch before each call; refuses or degrades the calls of flagged keys."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float | None = None, fail: str | None = None) -> None:
        super().__init__()
        self.url = (url or os.environ.get("CLONEWATCH_API_URL", "http://127.0.0.1:8090")).rstrip("/") + "/v1/decide"
        self.token = token if token is not None else os.environ.get("CLONEWATCH_API_TOKEN", "")
        self.timeout_s = timeout_s if timeout_s is not None else float(os.environ.get("CLONEWATCH_TIMEOUT_S", "0.2"))
        self.fail = fail or os.environ.get("CLONEWATCH_FAIL", "open")
        if self.fail not in ("open", "closed"):
            raise ValueError("CLONEWATCH_FAIL is open or closed")
        if not self.token:
            log.warning("CLONEWATCH_API_TOKEN is not set: clonewatch will refuse every question (fail %s)", self.fail)
        self._client: httpx.AsyncClient | None = None

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type: str) -> dict:
        key_hash = logged_key(user_api_key_dict)
        if not key_hash:
            return data
        try:
            answer = await self._ask(key_hash)
        except httpx.HTTPError as exc:
            if self.fail == "closed":
                raise HTTPException(status_code=503, detail="the abuse check is unavailable") from exc
            log.warning("clonewatch did not answer (%s); serving the request (CLONEWATCH_FAIL=open)", exc)
            return data
        action = answer.headers.get("X-Clonewatch-Action", "allow")
        if answer.status_code >= 400:  # a refusal, with the status the API answers it with (--challenge-status)
            retry = {"Retry-After": answer.headers["Retry-After"]} if "Retry-After" in answer.headers else None
            raise HTTPException(status_code=answer.status_code, detail=REFUSALS.get(action, action), headers=retry)
        if action == "degrade":
            await asyncio.sleep(int(answer.headers.get("X-Clonewatch-Delay-Ms", "0")) / 1000.0)
            return degraded(data, answer.headers)
        return data

    async def _ask(self, key_hash: str) -> httpx.Response:
        if self._client is None:  # made in the proxy's event loop, kept alive across calls
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers={"Authorization": f"Bearer {self.token}"})
        answer = await self._client.get(self.url, headers={"X-API-Key-SHA256": key_hash})
        if answer.status_code >= 400 and "X-Clonewatch-Action" not in answer.headers:  # no decision: a wrong token, an error
            raise httpx.HTTPStatusError(f"clonewatch answered {answer.status_code} without a decision (is CLONEWATCH_API_TOKEN right?)",
                                        request=answer.request, response=answer)  # fmt: skip
        return answer


guard = ClonewatchGuard()
