"""Named, seeded traffic scenarios: who takes part, and how their traffic is merged.

A scenario lists benign personas (client counts), single-key attacks (kind, variant,
query budget) and multi-key campaigns (variant, keys, total queries), all at scale 1.
:func:`simulate` builds every client from its own seeded random stream, keeps what
falls in the one-day window, merges all records in timestamp order and renders
timestamps, so the same (scenario, seed, scale, start) always yields the same traffic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clonewatch.lab.simulate.attacks import ATTACKS, campaign
from clonewatch.lab.simulate.personas import (
    DAY, PERSONAS, Client, ClientRandom, Gateway, Record, TabularModel, World,
)

DEFAULT_START = datetime(2026, 11, 23, tzinfo=UTC)
# The deployed fraud model and its input distribution belong to the API, not to a day of
# traffic: every seed queries the same model, so a baseline from one seed fits another.
DEPLOYED_MODEL_SEED = 0


@dataclass(frozen=True)
class Scenario:
    """Who takes part in a scenario, at scale 1."""

    description: str
    benign: dict[str, int]
    attacks: tuple[tuple[str, str, int], ...] = ()  # kind, variant, query budget
    campaigns: tuple[tuple[str, int, int], ...] = ()  # variant, keys, total queries
    all_fields: bool = False  # log every optional field (otherwise drawn from the seed)


@dataclass
class SimulatedTraffic:
    """Merged access records plus ground truth.

    ``events``: canonical records in timestamp order, exactly as a gateway would log them.
    ``labels``: one entry per client (``client_id``, ``label``, ``kind``, ``campaign``),
    sorted by client id. ``annotations``: per event (same order) the generator's topic id
    (None for numeric inputs) and role: ``benign``, ``attack`` or ``cover`` (an attacker's
    benign-looking queries).
    """

    scenario: str
    seed: int
    scale: float
    events: list[dict] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)


_ALL_ATTACKS = tuple(
    (kind, variant, size)
    for kind, sizes in (
        ("extraction", (1500, 500, 1000)), ("boundary", (800, 500, 600)),
        ("random", (1200, 1000)), ("synthetic", (1000, 900)), ("boundary_search", (1000, 800)),
        ("mixed", (800, 700, 700)),
        ("natural", (1200, 1000, 1000)), ("distill", (1500, 1000)), ("adaptive", (800, 800)),
        ("logits", (800, 800)),
    )
    for variant, size in zip(ATTACKS[kind][1], sizes, strict=True)
)

SCENARIOS: dict[str, Scenario] = {
    "demo": Scenario(
        "about 40 benign clients of every kind, one obvious temperature-0 + logprobs"
        " distillation sweep and one text-classifier boundary prober (~4-5k events)",
        {"chat_user": 25, "developer": 6, "rag_batch": 1, "eval_harness": 1,
         "ticket_classifier": 3, "labelling_team": 1, "numeric_customer": 3},
        attacks=(("extraction", "logprobs", 600), ("boundary", "greedy", 350)),
        all_fields=True,
    ),
    "text-extraction": Scenario(
        "chat/completions traffic (chat users, developers, RAG jobs, eval harnesses, app"
        " backends) with three distillation sweeps: logprobs, stealthy human-paced, paraphrasing",
        {"chat_user": 45, "developer": 15, "app_backend": 2, "rag_batch": 4, "eval_harness": 5},
        attacks=(("extraction", "logprobs", 1500), ("extraction", "stealth", 500),
                 ("extraction", "paraphrase", 1000)),
    ),
    "boundary": Scenario(
        "text-classifier traffic (ticket integrations, labelling teams that resubmit edited"
        " items) with three perturbation-chain probers: greedy, random walk, character-level",
        {"ticket_classifier": 20, "labelling_team": 8, "chat_user": 10, "developer": 5},
        attacks=(("boundary", "greedy", 800), ("boundary", "walk", 500), ("boundary", "char", 600)),
    ),
    "numeric": Scenario(
        "tabular fraud-model traffic (real-time and batch customers) with uniform and"
        " Gaussian random queries, Jacobian augmentation, bisection and line search",
        {"numeric_customer": 60, "chat_user": 10},
        attacks=tuple(a for a in _ALL_ATTACKS if a[0] in ("random", "synthetic",
                                                             "boundary_search")),
    ),
    "campaign": Scenario(
        "mixed benign traffic with three slow-and-low campaigns, each split over 15-30 keys:"
        " hosting-ASN topic split, residential-proxy round robin, numeric random queries",
        {"chat_user": 50, "developer": 15, "app_backend": 2, "rag_batch": 4, "eval_harness": 4,
         "numeric_customer": 20},
        campaigns=(("hosting", 30, 3000), ("proxy", 20, 2000), ("numeric", 15, 1500)),
    ),
    "mixed": Scenario(
        "mixed benign traffic with three attackers hiding 50-70% extraction or probing among"
        " benign-looking queries on the same key (chat, classifier, numeric)",
        {"chat_user": 40, "developer": 10, "rag_batch": 3, "eval_harness": 3,
         "ticket_classifier": 10, "labelling_team": 4, "numeric_customer": 20},
        attacks=tuple(a for a in _ALL_ATTACKS if a[0] == "mixed"),
    ),
    "benign": Scenario(
        "benign traffic only (~150 clients of every persona), for fitting baselines",
        {"chat_user": 70, "developer": 25, "app_backend": 2, "rag_batch": 6, "eval_harness": 6,
         "ticket_classifier": 12, "labelling_team": 4, "numeric_customer": 30},
        all_fields=True,  # a baseline for the demo, which logs every field too
    ),
    "full": Scenario(
        "the benchmark: ~320 benign clients of every persona, every attack variant and all"
        " three campaigns",
        {"chat_user": 140, "developer": 50, "app_backend": 4, "rag_batch": 12,
         "eval_harness": 10, "ticket_classifier": 25, "labelling_team": 8,
         "numeric_customer": 70},
        attacks=_ALL_ATTACKS,
        campaigns=(("hosting", 30, 3000), ("proxy", 20, 2000), ("numeric", 15, 1500), ("rotate", 10, 1000)),
    ),
}


def simulate(
    scenario: str, seed: int = 0, scale: float = 1.0, start: datetime | str | None = None, day: int = 0
) -> SimulatedTraffic:
    """Generate a scenario's labelled traffic; deterministic in all five arguments.

    ``scale`` multiplies client counts and attack budgets; ``start`` (a datetime or an
    RFC 3339 string, default 2026-11-23T00:00:00Z) is when the one-day window opens.
    ``day`` > 0 is another day of the same benign customers (the same keys, networks,
    topics and habits, new requests; :class:`ClientRandom`), ``day`` days after ``start``;
    attackers are drawn as on day 0.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if not scale > 0:
        raise ValueError("scale must be positive")
    if day < 0:
        raise ValueError("day must not be negative")
    spec = SCENARIOS[scenario]
    world = world_of(scenario, seed, start, day)
    cast: list[tuple[Client, dict]] = []
    for persona, count in spec.benign.items():
        for i in range(max(1, round(count * scale))):
            rng = ClientRandom(f"{scenario}/{seed}/{persona}/{i}", day)
            cast.append((PERSONAS[persona](world, rng), _label("benign", persona)))
    for i, (kind, variant, size) in enumerate(spec.attacks):
        rng = random.Random(f"{scenario}/{seed}/{kind}/{variant}/{i}")
        client = ATTACKS[kind][0](world, rng, variant, _budget(size, scale))
        cast.append((client, _label("attack", kind)))
    for i, (variant, keys, size) in enumerate(spec.campaigns):
        rng = random.Random(f"{scenario}/{seed}/campaign/{variant}/{i}")
        n_keys = min(50, max(10, round(keys * scale)))
        for client in campaign(world, rng, variant, _budget(size, scale), n_keys):
            cast.append((client, _label("attack", "campaign", f"campaign-{i + 1}")))
    return _assemble(world, scenario, seed, scale, cast)


def world_of(scenario: str, seed: int = 0, start: datetime | str | None = None, day: int = 0) -> World:
    """The deployment that :func:`simulate` with these arguments happens in (its window, its
    gateway's logged fields, the deployed models): for adding clients to its traffic."""
    spec = SCENARIOS[scenario]
    opens = _start(start) + timedelta(days=day)
    return World(seed, opens, DAY, _gateway(spec, scenario, seed), TabularModel(DEPLOYED_MODEL_SEED))


def _label(label: str, kind: str, campaign_id: str | None = None) -> dict:
    return {"label": label, "kind": kind, "campaign": campaign_id}


def _budget(size: int, scale: float) -> int:
    """An attack's query budget at ``scale`` (never so small it stops being an attack)."""
    return max(60, round(size * scale))


def _start(start: datetime | str | None) -> datetime:
    if start is None:
        return DEFAULT_START
    if isinstance(start, str):
        start = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if start.tzinfo is None:
        return start.replace(tzinfo=UTC)
    return start.astimezone(UTC)


def _gateway(spec: Scenario, scenario: str, seed: int) -> Gateway:
    """Which optional fields this scenario's gateway logs: all, or drawn from the seed."""
    if spec.all_fields:
        return Gateway()
    rng = random.Random(f"{scenario}/{seed}/gateway")
    return Gateway(log_asn=rng.random() < 0.75, log_key_created=rng.random() < 0.7,
                   log_tokens=rng.random() < 0.8, log_user_agent=rng.random() < 0.95)


def _assemble(
    world: World, scenario: str, seed: int, scale: float, cast: list[tuple[Client, dict]]
) -> SimulatedTraffic:
    """Merge every client's records inside the window in time order; label active clients."""
    records: list[Record] = []
    labels: list[dict] = []
    for client, label in cast:
        kept = [r for r in client.records if 0 <= r.t < world.duration]
        if kept:
            records += kept
            labels.append({"client_id": client.client_id, **label})
    records.sort(key=lambda r: (r.t, r.event["request_id"]))
    for record in records:
        record.event["ts"] = world.timestamp(record.t)
    return SimulatedTraffic(
        scenario, seed, scale,
        events=[r.event for r in records],
        labels=sorted(labels, key=lambda entry: entry["client_id"]),
        annotations=[{"topic": r.topic, "role": r.role} for r in records],
    )
