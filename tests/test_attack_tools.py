"""Real attack tools' queries, not the simulator's: acted on among customers the model never saw.

The Adversarial Robustness Toolbox writes each attacker's queries (KnockoffNets, CopycatCNN,
HopSkipJump, the Boundary Attack and ZOO against the deployed fraud model; see
``clonewatch/lab/attack_tools.py``), among the benign customers of held-out seeds of the numeric
scenario, scored with the model fitted on another seed's customers. Rates, not single clients.
"""

from __future__ import annotations

import msgspec
import pytest

from clonewatch.lab.attack_tools import TOOLS, tool_queries, tool_traffic
from clonewatch.lab.simulate import simulate
from clonewatch.lab.simulate.personas import TabularModel
from clonewatch.lab.simulate.scenarios import world_of
from detectors import CloneDetector, CloneModel
from detectors.vectorize import Vectorizer
from schemas import AccessEvent

HELD_OUT_SEEDS = (21, 22)
BUDGET = 300


@pytest.fixture(scope="module")
def acted_on(numeric_model) -> dict[str, list[bool]]:
    """Per label ("attack", "benign"): whether each client was ever acted on."""
    model = CloneModel.load(numeric_model)
    out: dict[str, list[bool]] = {"attack": [], "benign": []}
    for seed in HELD_OUT_SEEDS:
        traffic = simulate("numeric", seed=seed)
        customers = {row["client_id"] for row in traffic.labels if row["label"] == "benign"}
        tools, labels = tool_traffic(world_of("numeric", seed), f"test-{seed}", BUDGET)
        raw = sorted([e for e in traffic.events if e["client_id"] in customers and e.get("features")] + tools, key=lambda e: e["ts"])
        events = [msgspec.convert(e, AccessEvent) for e in raw]
        detector, states, flagged = CloneDetector.from_model(model), {}, set()
        for start in range(0, len(events), 256):
            batch = events[start : start + 256]
            result = detector.process(batch, Vectorizer().vectors(batch), states)
            flagged |= {d.client_id for d in result.decisions if d.action.value != "allow"}
        out["attack"] += [row["client_id"] in flagged for row in labels]
        out["benign"] += [client in flagged for client in customers if client in states]
    return out


def test_real_attack_tools_are_acted_on_and_customers_are_spared(acted_on):
    assert len(acted_on["attack"]) == len(TOOLS) * len(HELD_OUT_SEEDS) and len(acted_on["benign"]) >= 80
    assert sum(acted_on["attack"]) / len(acted_on["attack"]) >= 0.8
    assert sum(acted_on["benign"]) / len(acted_on["benign"]) <= 0.02


def test_each_tool_sends_its_own_queries_and_repeats_them_for_a_seed():
    model = TabularModel(0)
    runs = {tool: tool_queries(tool, model, budget=40, seed=3) for tool in TOOLS}
    assert all(rows.shape == (40, model.low.size) for rows in runs.values())
    assert all((runs[tool] == tool_queries(tool, model, budget=40, seed=3)).all() for tool in TOOLS)
    assert not (runs["knockoff"] == tool_queries("knockoff", model, budget=40, seed=4)).all()
    with pytest.raises(ValueError, match="unknown tool"):
        tool_queries("nmap", model, budget=10, seed=0)
