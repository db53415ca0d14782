"""A worker's Prometheus metrics: what it processed, how far behind it is, where its time goes.

The worker renders its counters at every progress line (:func:`render`) and a small HTTP
server answers ``GET /metrics`` with the latest text (:class:`MetricsServer`), off the event
loop. Unauthenticated, as Prometheus scrapes: it listens on 127.0.0.1 unless told otherwise.

>>> text = render({"events": 120, "dead_letters": 2, "embed_seconds": 1.5, "batches": 4}, {("clonewatch.access", 0): 7}, {"allow": 9, "throttle": 1})
>>> print("\\n".join(line for line in text.splitlines() if not line.startswith("#")))  # doctest: +NORMALIZE_WHITESPACE
clonewatch_worker_events_total 120
clonewatch_worker_dead_letters_total 2
clonewatch_worker_embed_seconds_total 1.5
clonewatch_worker_batches_total 4
clonewatch_worker_consumer_lag{topic="clonewatch.access",partition="0"} 7
clonewatch_worker_clients{action="allow"} 9
clonewatch_worker_clients{action="throttle"} 1
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ingest.http_server import CONNECTION_TIMEOUT_S, send_json

# snapshot key -> (metric name, type, help); only the keys a snapshot holds are written
SERIES: dict[str, tuple[str, str, str]] = {
    "events": ("clonewatch_worker_events_total", "counter", "events scored"),
    "dead_letters": ("clonewatch_worker_dead_letters_total", "counter", "messages that could not be read, dead-lettered with the reason"),
    "poisoned": ("clonewatch_worker_poisoned_total", "counter", "events that failed after decoding, dead-lettered and skipped"),
    "duplicates": ("clonewatch_worker_duplicates_total", "counter", "re-delivered events dropped"),
    "decisions": ("clonewatch_worker_decisions_total", "counter", "changes of a client's action sent to the decisions topic"),
    "not_embedded": ("clonewatch_worker_prompts_not_embedded_total", "counter", "prompts left unembedded while behind (--max-lag)"),
    "bounded": ("clonewatch_worker_bounded_total", "counter", "events with a prompt or feature row too long to keep whole"),
    "campaign_facts": ("clonewatch_worker_campaign_facts_total", "counter", "facts the campaign stage learned here"),
    "campaign_verdicts": ("clonewatch_worker_campaign_verdicts_total", "counter", "verdicts the campaign stage sent from here"),
    "expired": ("clonewatch_worker_clients_expired_total", "counter", "quiet clients whose state left the table (--client-ttl)"),
    "embed_seconds": ("clonewatch_worker_embed_seconds_total", "counter", "time spent embedding prompts"),
    "detect_seconds": ("clonewatch_worker_detect_seconds_total", "counter", "time spent in detection (state, features, risk, policy)"),
    "batches": ("clonewatch_worker_batches_total", "counter", "batches scored"),
    "event_age_s": ("clonewatch_worker_event_age_seconds", "gauge", "age of the oldest event of the latest batch when it was scored"),
    "stage_save_s": ("clonewatch_worker_stage_save_seconds", "gauge", "what the latest save of the campaign stage took (saves are spaced so that they take a small share of its time)"),
    "partitions": ("clonewatch_worker_partitions", "gauge", "access topic partitions assigned to this worker"),
    "uptime_s": ("clonewatch_worker_uptime_seconds", "gauge", "seconds since the worker started"),
}


def render(snapshot: Mapping[str, float], lags: Mapping[tuple[str, int], int], clients: Mapping[str, int]) -> str:
    """Prometheus text of a progress snapshot, the consumer lag of each (topic, partition) in
    messages, and the clients scored since start by their latest action."""
    lines = []
    for key, (name, kind, help_text) in SERIES.items():
        if key in snapshot:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {snapshot[key]:g}"]
    if lags:
        lines += ["# HELP clonewatch_worker_consumer_lag messages behind the partition's end", "# TYPE clonewatch_worker_consumer_lag gauge"]
        lines += [f'clonewatch_worker_consumer_lag{{topic="{topic}",partition="{partition}"}} {lag}' for (topic, partition), lag in sorted(lags.items())]
    if clients:
        lines += ["# HELP clonewatch_worker_clients clients scored since start, by their latest action", "# TYPE clonewatch_worker_clients gauge"]
        lines += [f'clonewatch_worker_clients{{action="{action}"}} {n}' for action, n in clients.items()]
    return "\n".join(lines) + "\n"


def parse_address(text: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT``.

    >>> parse_address("9108"), parse_address("0.0.0.0:9108")
    (('127.0.0.1', 9108), ('0.0.0.0', 9108))
    """
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"a metrics address is PORT or HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    """Serves the text last published on ``GET /metrics`` from a thread of its own."""

    def __init__(self, host: str, port: int) -> None:
        self._text = "# no progress reported yet\n"
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = CONNECTION_TIMEOUT_S

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                status, text = (200, server._text) if self.path.split("?")[0] == "/metrics" else (404, "not found\n")
                send_json(self, status, text, {"Content-Type": "text/plain; version=0.0.4"})

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True

    @property
    def address(self) -> tuple[str, int]:
        return self._http.server_address[:2]

    def publish(self, text: str) -> None:
        self._text = text

    def start(self) -> MetricsServer:
        threading.Thread(target=self._http.serve_forever, name="clonewatch-metrics", daemon=True).start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
