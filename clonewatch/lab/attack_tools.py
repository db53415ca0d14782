"""Attackers whose queries a published attack tool writes, not this simulator.

The Adversarial Robustness Toolbox (ART, `adversarial-robustness-toolbox`, installed with the
`test` extra) runs its attacks, as their authors designed them, against the simulated
deployment's fraud classifier through a black box that answers each row with the fraud
score, as the API does. Each tool's key is an attacker as the simulator makes them (a hosting,
home or business network, an SDK user agent, a script's pace); what it asks, and in which
order, is the tool's:

- ``knockoff``: KnockoffNets (Orekondy et al., CVPR 2019), random strategy: a transfer set of
  real rows of the domain (natural in-domain inputs), labelled by the API to train a copy;
- ``copycat``: CopycatCNN (Correia-Silva et al., IJCNN 2018): a transfer set from outside the
  data's distribution (rows drawn uniformly over the documented feature ranges);
- ``hopskipjump``: HopSkipJump (Chen et al., S&P 2020), a decision-based boundary search from
  real rows;
- ``boundary``: the Boundary Attack (Brendel et al., ICLR 2018), a random walk along the boundary;
- ``zoo``: ZOO (Chen et al., AISec 2017), gradients estimated by coordinate-wise finite differences.

>>> from clonewatch.lab.simulate.personas import TabularModel
>>> rows = tool_queries("hopskipjump", TabularModel(0), budget=50, seed=1)
>>> rows.shape, np.array_equal(rows, tool_queries("hopskipjump", TabularModel(0), budget=50, seed=1))
((50, 16), True)
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Callable

import numpy as np

from clonewatch.lab.simulate.attacks import attacker_key, campaign_keys, numeric_steps, run_machine
from clonewatch.lab.simulate.personas import (
    DIM, FRAUD_MODEL, PREDICT, Client, Record, Request, TabularModel, World, regular_gap, rows_to_lists,
)

TOOLS = ("knockoff", "copycat", "hopskipjump", "boundary", "zoo")


class ScoringAPI:
    """The deployed fraud model as a black box: each row's answer is its fraud score (as the
    probability of each class); every call's rows are kept, in order."""

    def __init__(self, model: TabularModel) -> None:
        self.model = model
        self.calls: list[np.ndarray] = []  # the rows of each call, in order
        self.asked = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1, DIM)
        self.calls.append(x)
        self.asked += len(x)
        fraud = 1.0 / (1.0 + np.exp(-2.0 * self.model.margin(x)))
        return np.column_stack([1.0 - fraud, fraud])


def tool_queries(tool: str, model: TabularModel, budget: int, seed: int) -> np.ndarray:
    """The first ``budget`` rows that ``tool`` sends to the API (run again on new starting rows
    while it has sent fewer)."""
    return np.concatenate(tool_calls(tool, model, budget, seed))


def tool_calls(tool: str, model: TabularModel, budget: int, seed: int) -> list[np.ndarray]:
    """The rows of each call ``tool`` makes to the API, ``budget`` rows in all (the last call cut)."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
    try:
        from art.attacks.evasion import BoundaryAttack, HopSkipJump, ZooAttack
        from art.attacks.extraction import CopycatCNN, KnockoffNets
        from art.estimators.classification import BlackBoxClassifier
        from art.estimators.classification.scikitlearn import ScikitlearnClassifier
    except ImportError as exc:
        raise RuntimeError("the attack tools need ART: pip install -e '.[test]' (adversarial-robustness-toolbox)") from exc
    from sklearn.neural_network import MLPClassifier

    class Copy(ScikitlearnClassifier):
        """The attacker's copy: ART passes its training options, which scikit-learn's fit does not take."""

        def fit(self, x: np.ndarray, y: np.ndarray, **kwargs: object) -> None:
            super().fit(x, y)

    logging.getLogger("art").setLevel(logging.ERROR)
    rng = np.random.default_rng(seed)
    api = ScoringAPI(model)
    victim = BlackBoxClassifier(api, (DIM,), 2, clip_values=(float(model.low.min()), float(model.high.max())))

    def copy() -> Copy:
        return Copy(MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=seed))

    runs: dict[str, Callable[[], object]] = {
        "knockoff": lambda: KnockoffNets(victim, batch_size_query=32, nb_stolen=budget, sampling_strategy="random", verbose=False)
        .extract(model.population(rng, 4 * budget), thieved_classifier=copy()),
        "copycat": lambda: CopycatCNN(victim, batch_size_query=32, nb_stolen=budget)
        .extract(rng.uniform(model.low, model.high, (budget, DIM)), thieved_classifier=copy()),
        "hopskipjump": lambda: HopSkipJump(victim, targeted=False, max_iter=10, max_eval=100, init_eval=10, verbose=False)
        .generate(**_starts(model, rng, 2)),
        "boundary": lambda: BoundaryAttack(victim, targeted=False, max_iter=50, num_trial=5, sample_size=5, verbose=False)
        .generate(**_starts(model, rng, 2)),
        "zoo": lambda: ZooAttack(victim, max_iter=5, nb_parallel=8, binary_search_steps=2, use_resize=False, use_importance=False, verbose=False)
        .generate(model.population(rng, 2)),
    }  # fmt: skip
    outside = np.random.get_state()
    np.random.seed(seed)  # ART draws from numpy's global generator: seeded, so that a run repeats
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the copy's convergence warnings
            while api.asked < budget:
                before = api.asked
                runs[tool]()
                if api.asked == before:
                    raise RuntimeError(f"{tool} sent no query")
    finally:
        np.random.set_state(outside)
    calls, left = [], budget
    for rows in api.calls:
        if left <= 0:
            break
        calls.append(rows[:left])
        left -= len(calls[-1])
    return calls


def _starts(model: TabularModel, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` real rows to attack and, for each, a real row the model labels otherwise: where a
    decision-based attack starts (given, it draws no random start of its own, which ART's
    attacks do from an unseeded generator)."""
    rows = model.population(rng, 4000)
    labels = model.label(rows)
    x = rows[:n]
    other = np.array([rows[rng.choice(np.flatnonzero(labels != label))] for label in labels[:n]])
    return {"x": x, "x_adv_init": other}


def _in_window(world: World, records: list) -> list[dict]:
    """The records inside ``world``'s window, time stamped."""
    kept = []
    for record in records:
        if 0 <= record.t < world.duration:
            record.event["ts"] = world.timestamp(record.t)
            kept.append(record.event)
    return kept


def send_calls(client: Client, t: float, calls: list[np.ndarray], gap: float, jitter: float) -> float:
    """Send each call as one request holding all its rows (KServe's ``instances``), waiting for
    each answer and then about ``gap`` seconds; logged as ingest reads a batched request: a record
    per row, all at the request's time, its request id numbered per row. Returns when it is done."""
    for rows in calls:
        features = rows_to_lists(rows)
        reply = client.send(t, Request(PREDICT, FRAUD_MODEL, None, features[0]), None, "attack")
        request = client.records[-1]
        if len(features) > 1:
            request_id = request.event["request_id"]
            request.event["request_id"] = f"{request_id}#0"
            client.records += [
                Record(request.t, {**request.event, "features": row, "request_id": f"{request_id}#{i}"}, None, "attack")
                for i, row in enumerate(features[1:], 1)
            ]
        t = reply.done + regular_gap(client.rng, gap, jitter)
    return t


def tool_traffic(world: World, tag: str, budget: int, batched: bool = False) -> tuple[list[dict], list[dict]]:
    """One key per tool in ``world``'s window, each sending ``budget`` queries, a row per request
    or (``batched``) each of the tool's calls as one request: the records (time stamped,
    unsorted) and their labels (``kind`` is the tool). ``tag`` seeds the draws."""
    records, labels = [], []
    for tool in TOOLS:
        rng = random.Random(f"attack-tools/{tag}/{tool}")
        calls = tool_calls(tool, world.tabular, budget, rng.getrandbits(32))
        client = attacker_key(world, rng, human=False)
        start, gap, concurrent = rng.uniform(0, world.duration * 0.4), rng.uniform(0.3, 1.5), rng.random() < 0.5
        if batched:
            send_calls(client, start, calls, gap, 0.08)
        else:
            run_machine(client, start, numeric_steps(np.concatenate(calls)), gap, 0.08, concurrent)
        records += _in_window(world, client.records)
        labels.append({"client_id": client.client_id, "label": "attack", "kind": tool, "campaign": None})
    return records, labels


def tool_campaign_traffic(
    world: World, tag: str, tool: str, kind: str, keys: int, budget: int, batched: bool = False
) -> tuple[list[dict], list[dict]]:
    """One operator running ``tool`` over ``keys`` keys (``kind``: ``hosting`` or ``proxy``, see
    :func:`campaign_keys`), its ``budget`` queries (or, ``batched``, its calls) dealt
    round-robin, every key a script at a slower pace than a single key's, all starting within
    the same ten minutes. Labels' ``kind`` is ``campaign`` and ``campaign`` names the tool and
    the kind of keys."""
    rng = random.Random(f"attack-tools/{tag}/{tool}/{kind}")
    calls = tool_calls(tool, world.tabular, budget, rng.getrandbits(32))
    rows = None if batched else np.concatenate(calls)
    start = rng.uniform(0, world.duration * 0.4)
    records, labels = [], []
    for i, client in enumerate(campaign_keys(world, rng, kind, keys)):
        begin, gap = start + rng.uniform(0, 600), rng.uniform(2.0, 8.0)
        if batched:
            send_calls(client, begin, calls[i::keys], gap, 0.1)
        else:
            run_machine(client, begin, numeric_steps(rows[i::keys]), gap, 0.1, concurrent=False)
        records += _in_window(world, client.records)
        labels.append({"client_id": client.client_id, "label": "attack", "kind": "campaign", "campaign": f"{tool} over {kind} keys"})
    return records, labels
