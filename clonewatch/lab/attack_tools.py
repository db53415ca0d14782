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
from clonewatch.lab.simulate.personas import DIM, TabularModel, World

TOOLS = ("knockoff", "copycat", "hopskipjump", "boundary", "zoo")


class ScoringAPI:
    """The deployed fraud model as a black box: each row's answer is its fraud score (as the
    probability of each class); every row asked is kept, in order."""

    def __init__(self, model: TabularModel) -> None:
        self.model = model
        self.asked: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1, DIM)
        self.asked.extend(x)
        fraud = 1.0 / (1.0 + np.exp(-2.0 * (self.model._score(x) - self.model._cut)))
        return np.column_stack([1.0 - fraud, fraud])


def tool_queries(tool: str, model: TabularModel, budget: int, seed: int) -> np.ndarray:
    """The first ``budget`` rows that ``tool`` sends to the API (run again on new starting rows
    while it has sent fewer)."""
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
            while len(api.asked) < budget:
                before = len(api.asked)
                runs[tool]()
                if len(api.asked) == before:
                    raise RuntimeError(f"{tool} sent no query")
    finally:
        np.random.set_state(outside)
    return np.array(api.asked[:budget])


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


def tool_traffic(world: World, tag: str, budget: int) -> tuple[list[dict], list[dict]]:
    """One key per tool in ``world``'s window, each sending ``budget`` queries: the records (time
    stamped, unsorted) and their labels (``kind`` is the tool). ``tag`` seeds the draws."""
    records, labels = [], []
    for tool in TOOLS:
        rng = random.Random(f"attack-tools/{tag}/{tool}")
        rows = tool_queries(tool, world.tabular, budget, rng.getrandbits(32))
        client = attacker_key(world, rng, human=False)
        run_machine(client, rng.uniform(0, world.duration * 0.4), numeric_steps(rows), rng.uniform(0.3, 1.5), 0.08, rng.random() < 0.5)
        records += _in_window(world, client.records)
        labels.append({"client_id": client.client_id, "label": "attack", "kind": tool, "campaign": None})
    return records, labels


def tool_campaign_traffic(world: World, tag: str, tool: str, kind: str, keys: int, budget: int) -> tuple[list[dict], list[dict]]:
    """One operator running ``tool`` over ``keys`` keys (``kind``: ``hosting`` or ``proxy``, see
    :func:`campaign_keys`), its ``budget`` queries dealt round-robin, every key a script at a
    slower pace than a single key's, all starting within the same ten minutes. Labels' ``kind``
    is ``campaign`` and ``campaign`` names the tool and the kind of keys."""
    rng = random.Random(f"attack-tools/{tag}/{tool}/{kind}")
    rows = tool_queries(tool, world.tabular, budget, rng.getrandbits(32))
    start = rng.uniform(0, world.duration * 0.4)
    records, labels = [], []
    for i, client in enumerate(campaign_keys(world, rng, kind, keys)):
        run_machine(client, start + rng.uniform(0, 600), numeric_steps(rows[i::keys]), rng.uniform(2.0, 8.0), 0.1, concurrent=False)
        records += _in_window(world, client.records)
        labels.append({"client_id": client.client_id, "label": "attack", "kind": "campaign", "campaign": f"{tool} over {kind} keys"})
    return records, labels
