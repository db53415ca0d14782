"""Enforcement through a real nginx: `auth_request` asks `clonewatch api` about every request.

Needs Debian's nginx package (`apt-get install nginx`); without it the test is skipped and says so.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
import pytest

from ingest.formats import client_id_for_key
from tests.streaming_support import REPO_ROOT, Background, wait_until
from tests.test_api import KEYS, TOKEN, score

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="Debian's nginx package is not installed (apt-get install nginx)")

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


def through_nginx(port: int, key: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except urllib.error.URLError:  # not listening yet
        return 0, ""


def test_nginx_serves_benign_clients_and_stops_flagged_ones(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rows = [score(client_id_for_key(key), action, "2026-11-23T10:00:00Z", 50, 0.5) for action, key in KEYS.items()]
    code = (
        "import sys, msgspec; from sinks.clickhouse import ClickHouseStore; from schemas import RiskScore;"
        f"ClickHouseStore('chdb://{store}').insert_risk_scores(msgspec.json.decode(sys.stdin.buffer.read(), type=list[RiskScore]))"
    )
    subprocess.run([sys.executable, "-c", code], input=msgspec.json.encode(rows), cwd=REPO_ROOT, check=True, timeout=120)
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    api = Background(["api", "--store", f"chdb://{store}", "--port", "0"], {**os.environ, "CLONEWATCH_API_TOKEN": TOKEN}, tmp_path / "api.log")
    nginx = None
    try:
        wait_until(lambda: "listening on" in api.log() or not api.alive(), 60, "the API to listen")
        api_url = re.search(r"listening on (http://\S+)", api.log()).group(1)
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp_path, port=port, upstream=upstream.server_address[1], api=api_url, token=TOKEN))
        nginx = subprocess.Popen([NGINX, "-c", str(conf), "-e", str(tmp_path / "error.log")], stderr=subprocess.PIPE)
        wait_until(lambda: through_nginx(port, "sk-live-nobody000001")[0] == 200 or nginx.poll() is not None, 30, "nginx to serve")
        assert through_nginx(port, KEYS["allow"]) == (200, "served (allow)")
        assert through_nginx(port, "sk-live-nobody000001") == (200, "served (allow)")  # unknown clients pass
        assert through_nginx(port, KEYS["throttle"])[0] == 429
        assert through_nginx(port, KEYS["challenge"])[0] == 401
        assert through_nginx(port, KEYS["deny"])[0] == 403
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        upstream.shutdown()
        api.stop()
