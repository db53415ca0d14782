"""API latency: `/v1/decide` and `/v1/clients/{id}` at fixed request rates, directly and through nginx.

Starts `clonewatch api` on an embedded store holding --clients clients (a share of them
throttled, challenged or denied), then, from a separate load process, sends requests at each
--rates rate for --seconds seconds over --connections keep-alive connections (open loop: request
i is due at i / rate, and its latency counts from when it was due, so a server that falls
behind is not hidden by a client that waits for it). Through nginx, the same `/v1/decide` answers
come by `auth_request` before nginx serves a request (Debian's nginx; skipped where it is not
installed).

    python benchmarks/api_latency.py                          # rates 500, 1000, 2000, 4000 req/s
    python benchmarks/api_latency.py --rates 2000 --seconds 20

Prints one row per path and rate (achieved rate, p50, p99, p99.9, errors) and writes
benchmarks/results/api-latency.json. The target of the API issue: p99 < 5 ms at 2,000 requests/s
on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

TOKEN = "benchmark-api-token"
API_EXTRA = os.environ.get("BENCH_API_ARGS", "").split()  # more `clonewatch api` options, e.g. "--refresh 10"
ACTION_SHARES = {"allow": 0.94, "throttle": 0.03, "challenge": 0.02, "deny": 0.01}
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    upstream clonewatch {{ server 127.0.0.1:{api_port}; keepalive 64; }}
    upstream model_server {{ server 127.0.0.1:{model_port}; keepalive 64; }}
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location /v1/ {{
            auth_request /_clonewatch;
            error_page 500 = @throttled;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://model_server;
        }}
        location @throttled {{ return 429; }}
        location = /_clonewatch {{
            internal;
            proxy_pass http://clonewatch/v1/decide;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Authorization "Bearer {token}";
        }}
    }}
    server {{
        listen 127.0.0.1:{model_port};
        location / {{ return 200 "served\\n"; }}
    }}
}}
"""


# --------------------------------------------------------------------------- the load process


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """Send one request, read its answer: the status, and whether the server closes the connection."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if length and int(length.group(1)):
        await reader.readexactly(int(length.group(1)))
    return status, re.search(rb"(?i)connection:\s*close", head) is not None


async def _load(host: str, port: int, requests: list[bytes], rate: float, seconds: float, connections: int) -> dict:
    total = int(rate * seconds)
    due = np.arange(total) / rate
    latency = np.full(total, np.nan)
    statuses: dict[int, int] = {}
    errors = 0
    next_index = 0
    start = time.perf_counter() + 0.2

    async def worker() -> None:
        nonlocal next_index, errors
        reader, writer = await asyncio.open_connection(host, port)
        while next_index < total:
            i = next_index
            next_index += 1
            wait = start + due[i] - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                status, closing = await _one(reader, writer, requests[i % len(requests)])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                status, closing = None, True
            if status is not None:
                latency[i] = time.perf_counter() - (start + due[i])
                statuses[status] = statuses.get(status, 0) + 1
            if closing:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    done = latency[~np.isnan(latency)] * 1000.0
    return {
        "rate": rate, "sent": total, "answered": int(len(done)), "errors": errors, "achieved_per_s": len(done) / elapsed,
        "p50_ms": float(np.percentile(done, 50)), "p99_ms": float(np.percentile(done, 99)),
        "p999_ms": float(np.percentile(done, 99.9)), "max_ms": float(done.max()), "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }  # fmt: skip


def load_main(args: argparse.Namespace) -> int:
    """The load process: reads request templates (JSON list of strings) on stdin, prints one JSON result."""
    requests = [r.encode() for r in json.load(sys.stdin)]
    random.Random(0).shuffle(requests)
    print(json.dumps(asyncio.run(_load(args.host, args.port, requests, args.rate, args.seconds, args.connections))))
    return 0


# --------------------------------------------------------------------------- the driver


def _request(path: str, headers: dict[str, str]) -> str:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


def make_store(path: Path, n_clients: int) -> list[str]:
    """``n_clients`` clients with actions drawn by ACTION_SHARES; returns their keys."""
    from ingest.formats import client_id_for_key
    from schemas import RiskScore, to_rfc3339
    from sinks.clickhouse import insert_risk_scores_from_child

    rng = random.Random(1)
    keys = [f"sk-bench-{i:012d}" for i in range(n_clients)]
    actions = dict(zip(keys, rng.choices(list(ACTION_SHARES), weights=list(ACTION_SHARES.values()), k=n_clients)))
    rows = [
        RiskScore(ts=to_rfc3339(1795996800 + 86400 * i // n_clients), client_id=client_id_for_key(k), events_seen=100, window_events=100,
                  risk=0.5 if a == "allow" else 0.99999, action=a, reasons=[f"{a} (benchmark)"], features={}, model_version="bench")
        for i, (k, a) in enumerate(actions.items())
    ]  # fmt: skip  # scored over a day: a refresh reads only the rows of its last second, as in steady state
    insert_risk_scores_from_child(f"chdb://{path}", rows)
    return keys


def start_api(store: Path, log: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "CLONEWATCH_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clonewatch", "api", "--store", f"chdb://{store}", "--port", "0", *API_EXTRA],
        cwd=REPO_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"listening on http://[^:]+:(\d+)", log.read_text(errors="replace"))
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"clonewatch api exited:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise SystemExit("clonewatch api did not listen within 120 s")


def start_nginx(workdir: Path, api_port: int) -> tuple[subprocess.Popen, int]:
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=ports[0], model_port=ports[1], api_port=api_port, token=TOKEN))
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-e", str(workdir / "error.log")], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=0.2).close()
            return proc, ports[0]
        except OSError:
            time.sleep(0.1)
    raise SystemExit("nginx did not listen")


def run_load(port: int, requests: list[str], rate: float, seconds: float, connections: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--load", "--port", str(port), "--rate", str(rate), "--seconds", str(seconds), "--connections", str(connections)],
        input=json.dumps(requests).encode(), capture_output=True, check=True, timeout=seconds * 20 + 120,
    )  # fmt: skip
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 2000, 4000], help="requests per second (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections of the load process (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=10_000, help="clients in the store (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "api-latency.json")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        return load_main(args)

    auth = {"Authorization": f"Bearer {TOKEN}"}
    from ingest.formats import client_id_for_key

    with tempfile.TemporaryDirectory(prefix="clonewatch-api-bench-") as tmp:
        tmp = Path(tmp)
        print(f"filling a store with {args.clients:,} clients ...", file=sys.stderr)
        keys = make_store(tmp / "store", args.clients)
        api, api_port = start_api(tmp / "store", tmp / "api.log")
        paths = {
            "/v1/decide": [_request("/v1/decide", {**auth, "X-API-Key": k}) for k in keys],
            "/v1/clients/{id}": [_request(f"/v1/clients/{client_id_for_key(k)}", auth) for k in keys],
        }
        targets = [("direct", api_port, name, reqs) for name, reqs in paths.items()]
        nginx = None
        if NGINX is not None:
            nginx, nginx_port = start_nginx(tmp, api_port)
            targets.append(("nginx auth_request", nginx_port, "/v1/chat/completions", [_request("/v1/chat/completions", {"X-API-Key": k}) for k in keys]))
        else:
            print("nginx is not installed: the path through nginx is not measured", file=sys.stderr)
        rows = []
        try:
            print(f"\n{'via':20s} {'path':22s} {'rate/s':>7s} {'achieved/s':>10s} {'p50 ms':>7s} {'p99 ms':>7s} {'p99.9 ms':>8s} {'errors':>6s}  statuses")
            for via, port, name, reqs in targets:
                for rate in args.rates:
                    row = {"via": via, "path": name, **run_load(port, reqs, rate, args.seconds, args.connections)}
                    rows.append(row)
                    print(
                        f"{via:20s} {name:22s} {rate:7.0f} {row['achieved_per_s']:10.0f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
                        f"{row['p999_ms']:8.2f} {row['errors']:6d}  {row['statuses']}", flush=True,
                    )  # fmt: skip
        finally:
            api.terminate()
            api.wait(timeout=30)
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=10)
    report = {"clients": args.clients, "seconds": args.seconds, "connections": args.connections, "cpus": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
