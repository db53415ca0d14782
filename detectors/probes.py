"""Requests that query no model: load balancers' and orchestrators' health checks, metrics scrapes.

A real gateway's access log holds them beside the API's traffic: an AWS load balancer asks
``GET /healthz`` every few seconds from each of its nodes (``ELB-HealthChecker/2.0``), a
kubelet, Google's and Azure's balancers, Consul and Prometheus do the same. Scored as clients,
they are the most machine-regular clients of the day (their gaps vary by nothing): two load
balancer nodes checking every 10 s among a day of the detection benchmark's traffic were
challenged after about a thousand checks each, riskier than any attacker (2026-12-04); in a
baseline they would make machine regularity look like a kind of customer. They are stored with the other
events, and neither scored nor learned from.

A probe is a request without a query (no prompt, no features), by ``GET`` or ``HEAD``, that a
known health checker sent or that asks for a health or metrics path. A request that carries
a query is never one, whatever its user agent says.

>>> from schemas import AccessEvent
>>> is_probe(AccessEvent(ts=1795428000, client_id="ip_1", method="GET", path="/healthz", user_agent="ELB-HealthChecker/2.0"))
True
>>> is_probe(AccessEvent(ts=1795428000, client_id="ip_1", method="GET", path="/v2/health/ready?verbose=1"))
True
>>> is_probe(AccessEvent(ts=1795428000, client_id="key_1", method="POST", path="/healthz", prompt="Hi", user_agent="kube-probe/1.29"))
False
>>> is_probe(AccessEvent(ts=1795428000, client_id="key_1", method="GET", path="/v1/models", user_agent="OpenAI/Python 1.54.3"))
False
"""

from __future__ import annotations

from schemas import AccessEvent

# User agents of health checkers and scrapers (their opening, compared in lower case).
PROBE_AGENTS = (
    "kube-probe/", "elb-healthchecker/", "googlehc/", "google-cloud-health", "azure traffic manager",
    "amazon-route53-health-check", "amazon route 53 health check", "consul health check", "envoy/hc",
    "prometheus/", "blackbox-exporter/", "uptimerobot/", "pingdom", "statuscake", "nagios", "check_http/",
    "zabbix", "datadog agent",
)  # fmt: skip
# Paths that ask whether the server lives, or for its metrics (the query string aside).
HEALTH_PATHS = frozenset({
    "/health", "/healthz", "/healthcheck", "/health-check", "/health_check", "/livez", "/readyz", "/live", "/ready",
    "/ping", "/status", "/metrics", "/-/healthy", "/-/ready", "/v2/health/live", "/v2/health/ready", "/v1/health",
    "/api/health", "/server-status", "/nginx_status", "/stub_status",
})  # fmt: skip


def is_probe(event: AccessEvent) -> bool:
    """Whether ``event`` is a health check or a metrics scrape rather than a client's request."""
    if event.prompt is not None or event.features is not None or (event.method or "GET").upper() not in ("GET", "HEAD"):
        return False
    agent = (event.user_agent or "").lower()
    if agent.startswith(PROBE_AGENTS):
        return True
    path = (event.path or "").split("?", 1)[0].rstrip("/") or "/"
    return path.lower() in HEALTH_PATHS
