"""Fit a CloneModel on baseline traffic: references per space, then the risk model."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial

import msgspec
import numpy as np
from joblib import Parallel, delayed

from detectors.calibration import sustained_peaks
from detectors.campaigns import campaign_row
from detectors.client_state import ClientState
from detectors.detector import learn_and_extract, project
from detectors.evidence import SequentialTest
from detectors.features import FEATURE_NAMES, FEATURE_SUSPICIOUS_SIDE
from detectors.model import CloneModel, library_versions
from detectors.policy import PolicyConfig
from detectors.probes import is_probe
from detectors.reference import SpaceReference
from detectors.risk_model import RiskModel
from schemas import AccessEvent, to_epoch, to_rfc3339

DEFAULT_WINDOW = 200
MIN_REFERENCE_VECTORS = 20
CALIBRATION_FOLDS = 10
BENIGN_GROUP_SIZES = (3, 6, 12, 24)  # unrelated clients merged into one stream, as campaigns and NATs are
_POLICY_DEFAULTS = PolicyConfig()


def is_checkpoint(events_seen: np.ndarray) -> np.ndarray:
    """Which of a client's event counts are kept as training snapshots.

    Dense early (that is where decisions must be made soonest), sparser later, so that
    long-lived clients do not swamp the reference.
    """
    n = np.asarray(events_seen)
    return ((n >= 3) & (n <= 40)) | ((n <= 200) & (n % 10 == 0)) | (n % 50 == 0)


def fit_references(
    events: Sequence[AccessEvent], vectors: Sequence[np.ndarray | None], n_regions: int = 64, random_state: int = 0
) -> dict[str, SpaceReference]:
    """One SpaceReference per vector space with enough reference vectors."""
    by_space: dict[str, list[int]] = defaultdict(list)
    for i, (event, vector) in enumerate(zip(events, vectors)):
        if vector is not None and event.space is not None:
            by_space[event.space].append(i)
    references = {}
    for space, rows in by_space.items():
        if len(rows) < MIN_REFERENCE_VECTORS:
            continue
        ref = SpaceReference(n_regions=n_regions, normal_scores=space != "text", random_state=random_state)
        references[space] = ref.fit(np.stack([vectors[i] for i in rows]), [events[i].client_id for i in rows])
    return references


def fit_clone_model(
    events: Sequence[AccessEvent],
    vectors: Sequence[np.ndarray | None],
    *,
    window: int = DEFAULT_WINDOW,
    n_regions: int = 64,
    n_estimators: int = 200,
    random_state: int = 0,
    min_events: int = _POLICY_DEFAULTS.min_events,
    sustain: int = _POLICY_DEFAULTS.confirm_events,
    contaminated: bool = False,
    n_jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> CloneModel:
    """Learn what benign traffic looks like from ``events`` (in arrival order).

    ``n_jobs``: processes that fit the calibration folds side by side (joblib's meaning:
    None is one, -1 every core); the model is the same for any value. ``progress`` is
    called with a short line after each stage (the folds are most of the time).

    ``contaminated``: the events are the traffic about to be scored, attackers perhaps
    included (``clonewatch run`` without a model). The model then compares each client it
    scores with the reference's other clients, never with its own history in it, as the
    baseline clients were measured in training (out of fold): an attacker in the warm-up
    is not taken for its own kind of benign client. (Leaving out the clients that stand
    out and fitting again was tried: on a small warm-up it drops benign customers of rare
    kinds too, which are then flagged.)

    Risk is calibrated on clients, not on moments: each benign client's peak risk score,
    held for ``sustain`` successive events from its ``min_events``-th on (the policy's
    minimum evidence and confirmation), scored out of fold by a model that never saw the
    client. A risk of 0.999 then means that 0.1% of benign clients like these would reach
    it at some point of their life, which is what a threshold's false-positive rate is.

    Health checks and metrics scrapes (:mod:`detectors.probes`) are no client's behaviour
    and are left out.
    """
    if len(events) != len(vectors):
        raise ValueError("events and vectors must have the same length")
    if any(map(is_probe, events)):
        kept = [i for i, e in enumerate(events) if not is_probe(e)]
        events, vectors = [events[i] for i in kept], [vectors[i] for i in kept]
    clients = {e.client_id for e in events}
    if len(clients) < 2:
        raise ValueError(f"training needs traffic from several clients, got {len(clients)}")
    report = progress or (lambda _: None)
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    fit_refs = partial(fit_references, n_regions=n_regions, random_state=random_state)
    references = fit_refs(events, vectors)
    report(f"references of {len(references)} vector spaces")
    client_of = np.array([e.client_id for e in events])
    fold = _client_folds(client_of, random_state)
    rows, seen, groups = _cross_fitted_features(fit_refs, references, events, vectors, fold, window, random_state, parallel, report)
    last = np.zeros(len(events), dtype=bool)
    final_index = {e.client_id: i for i, e in enumerate(events)}
    last[list(final_index.values())] = True
    keep = is_checkpoint(seen) | last
    make_model = partial(RiskModel, n_estimators=n_estimators, random_state=random_state)
    risk = make_model().fit(rows[keep], FEATURE_NAMES, FEATURE_SUSPICIOUS_SIDE, groups=client_of[keep])
    in_fold_scores, profiles = risk.scores_and_profiles(rows)
    fold_risks: dict[int, RiskModel] | None = {} if contaminated and fold is not None else None
    scores = _out_of_fold_scores(make_model, rows, keep, client_of, fold, groups, parallel, report, fold_risks) if fold is not None else in_fold_scores
    peak_of = sustained_peaks(scores, client_of, seen, min_events, sustain) if fold is not None else {}
    peaks = np.array(list(peak_of.values()))
    if len(peaks) >= 2:
        risk.calibrate(peaks, np.array(list(peak_of)) if contaminated else None)
    sequential = SequentialTest().fit(scores, profiles, client_of, fold)
    campaign_sequential = _fit_campaign_test(risk, groups)
    report("sequential tests")
    data_hash = _data_hash(events)
    metadata = {
        "version": f"cw-{data_hash[:12]}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data_sha256": data_hash,
        "training_events": len(events),
        "training_clients": len(clients),
        "training_snapshots": int(keep.sum()),
        "training_range": [to_rfc3339(min(to_epoch(e.ts) for e in events)), to_rfc3339(max(to_epoch(e.ts) for e in events))],
        "score_distribution": {  # the benign clients' calibration peaks, for drift checks against later traffic
            f"p{q}": float(np.percentile(peaks, q)) for q in (50, 90, 99, 100)
        } if len(peaks) else {},
        "calibration": {
            "clients": len(peaks) if len(peaks) >= 2 else 0,
            "statistic": f"peak score held {sustain} events, from event {min_events}, out of {CALIBRATION_FOLDS} folds",
        },
        "sequential": {
            "reference_events": len(rows),
            "statistic": "risk score, p-values among the events of the 5 nearest baseline clients, out of fold",
            "autocorrelation_time": sequential.tau_,
            "block_bet_every": sequential.block,  # events between two full bets of the block process
            # What tau cannot see: clients' persistent levels (README, "Why this test").
            "between_clients_share": sequential.between_clients_share_,
            "autocorrelation_time_across_clients": sequential.tau_across_clients_,
        },
        "campaign_sequential": None if campaign_sequential is None else {
            "benign_groups": len(groups.sizes),
            "group_sizes": sorted(groups.sizes),
            "autocorrelation_time": campaign_sequential.tau_,
        },
        "spaces": {space: {"vectors_dim": ref.input_dim_, "regions": ref.n_regions_} for space, ref in references.items()},
        "libraries": library_versions(),
    }
    return CloneModel(
        references=references, risk=risk, window=window, sequential=sequential, campaign_sequential=campaign_sequential,
        metadata=metadata, exclude_own_history=contaminated, fold_risks=fold_risks,
        client_folds=None if fold_risks is None else {str(c): int(k) for c, k in zip(client_of, fold)},
        known_clients=frozenset() if contaminated else frozenset(clients),  # a warm-up may hold the attackers
    )  # fmt: skip


def _client_folds(client_of: np.ndarray, random_state: int) -> np.ndarray | None:
    """The calibration fold of each event's client, or None when there are too few clients
    (each fold's model needs two clients of its own)."""
    clients = np.unique(client_of)
    if len(clients) < 3:
        return None
    folds = min(CALIBRATION_FOLDS, len(clients))
    fold_of_client = dict(zip(np.random.default_rng(random_state).permutation(clients), np.arange(len(clients)) % folds))
    return np.array([fold_of_client[c] for c in client_of])


@dataclass
class BenignGroups:
    """Groups of unrelated baseline clients merged into one stream, as a campaign's members
    are merged: the null a campaign's merged stream is tested against. One row per group
    event (the merged state's row without what merging distorts), in arrival order."""

    rows: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)  # the group of each row
    folds: list[np.ndarray] = field(default_factory=list)  # the fold of each row's group
    sizes: list[int] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))  # each row's out-of-fold risk score

    def add(self, rows: np.ndarray, label: str, fold: int, size: int) -> None:
        self.rows.append(rows)
        self.labels.append(np.full(len(rows), label))
        self.folds.append(np.full(len(rows), fold))
        self.sizes.append(size)


def _cross_fitted_features(fit_refs, references, events, vectors, fold, window, random_state, parallel, report) -> tuple[np.ndarray, np.ndarray, BenignGroups]:
    """Every event's feature row, measured against references fitted without its client's fold,
    and the rows of benign groups (see :class:`BenignGroups`) formed within each fold.

    A new client's queries are never part of the reference; a baseline client's would be,
    and would look more familiar (closer to the reference, fewer of them novel) than any
    new benign client's. Measured out of fold, the baseline looks like the clients the
    model will score. The folds are independent: ``parallel`` (a joblib ``Parallel``) runs
    them side by side, with the same result as one after another.
    """
    groups = BenignGroups()
    if fold is None:  # too few clients to leave any out: measured against ``references``
        rows, seen = learn_and_extract(references, events, vectors, {}, window)
        return rows, seen, groups
    rows = np.empty((len(events), len(FEATURE_NAMES)))
    seen = np.empty(len(events), dtype=np.int64)
    rng = np.random.default_rng(random_state)
    folds = [(int(k), np.flatnonzero(fold == k), np.flatnonzero(fold != k)) for k in np.unique(fold)]
    tasks = [  # groups drawn in fold order, as one fold after another would draw them
        delayed(_fold_features)(
            fit_refs, [events[i] for i in outside], [vectors[i] for i in outside],
            [events[i] for i in inside], [vectors[i] for i in inside],
            _benign_groups(sorted({events[i].client_id for i in inside}), rng, first=k), window,
        )
        for k, inside, outside in folds
    ]  # fmt: skip
    for done, ((k, inside, _), (fold_rows, fold_seen, merged)) in enumerate(zip(folds, parallel(tasks)), start=1):
        rows[inside], seen[inside] = fold_rows, fold_seen
        for g, (group_rows, size) in enumerate(merged):
            groups.add(group_rows, f"{k}:{g}", k, size)
        report(f"features out of fold {done}/{len(folds)}")
    return rows, seen, groups


def _fold_features(fit_refs, outside_events, outside_vectors, events, vectors, members: list[set[str]], window: int):
    """One fold: references fitted without it, its events' rows against them, and the merged
    rows of each of its benign groups (with the group's size)."""
    without_fold = fit_refs(outside_events, outside_vectors)
    rows, seen = learn_and_extract(without_fold, events, vectors, {}, window)
    merged = []
    for group in members:
        mine = [i for i, e in enumerate(events) if e.client_id in group]
        merged.append((_merged_rows(without_fold, [events[i] for i in mine], [vectors[i] for i in mine], window), len(group)))
    return rows, seen, merged


def _benign_groups(clients: list[str], rng: np.random.Generator, first: int = 0) -> list[set[str]]:
    """Clients drawn into groups of the sizes in BENIGN_GROUP_SIZES in turn (from the
    ``first``-th), the last group taking what is left, until too few are left."""
    order = list(rng.permutation(clients))
    out: list[set[str]] = []
    while True:
        size = BENIGN_GROUP_SIZES[(len(out) + first) % len(BENIGN_GROUP_SIZES)]
        if len(order) < size:
            size = len(order)
        if size < BENIGN_GROUP_SIZES[0]:
            return out
        out.append(set(order[:size]))
        order = order[size:]


def _merged_rows(references, events, vectors, window: int) -> np.ndarray:
    """The rows of one merged stream after each of its events."""
    state = ClientState(window=window)
    rows = np.empty((len(events), len(FEATURE_NAMES)))
    for i, (event, (space, vector, region, novelty)) in enumerate(zip(events, project(references, events, vectors))):
        state.learn_one(event, space, vector, region, novelty)
        rows[i] = campaign_row(state, references, None, breadth=False)
    return rows


def _fit_campaign_test(risk: RiskModel, groups: BenignGroups) -> SequentialTest | None:
    """The sequential test of a campaign's merged stream, fitted on the benign groups' rows
    (scored out of fold, in ``groups.scores``); None without two groups to compare with."""
    if len(groups.sizes) < 2:
        return None
    rows = np.concatenate(groups.rows)
    _, profiles = risk.scores_and_profiles(rows)
    return SequentialTest().fit(groups.scores, profiles, np.concatenate(groups.labels), np.concatenate(groups.folds))


def _out_of_fold_scores(make_model, rows, keep, client_of, fold, groups: BenignGroups, parallel, report, models: dict | None = None) -> np.ndarray:
    """Every event's raw risk score from a risk model fitted without that event's client;
    the benign groups' rows are scored by the same models (``groups.scores``). ``models``,
    if given, receives each fold's model."""
    scores = np.empty(len(rows))
    group_rows = np.concatenate(groups.rows) if groups.rows else np.empty((0, rows.shape[1]))
    group_folds = np.concatenate(groups.folds) if groups.folds else np.empty(0)
    groups.scores = np.empty(len(group_rows))
    folds = np.unique(fold)
    tasks = [
        delayed(_fold_scores)(make_model, rows[keep & (fold != k)], client_of[keep & (fold != k)], rows[fold == k], group_rows[group_folds == k])
        for k in folds
    ]
    for done, (k, (model, held_out_scores, group_scores)) in enumerate(zip(folds, parallel(tasks)), start=1):
        scores[fold == k] = held_out_scores
        groups.scores[group_folds == k] = group_scores
        if models is not None:
            models[int(k)] = model
        report(f"risk model out of fold {done}/{len(folds)}")
    return scores


def _fold_scores(make_model, train_rows, train_clients, held_out_rows, group_rows):
    """A risk model fitted on the other folds' rows, and its scores of this fold's rows and groups."""
    model = make_model().fit(train_rows, FEATURE_NAMES, FEATURE_SUSPICIOUS_SIDE, groups=train_clients)
    group_scores = -model.score_samples(group_rows) if len(group_rows) else np.empty(0)
    return model, -model.score_samples(held_out_rows), group_scores


def _data_hash(events: Sequence[AccessEvent]) -> str:
    digest = hashlib.sha256()
    encoder = msgspec.json.Encoder()
    for event in events:
        digest.update(encoder.encode(event))
    return digest.hexdigest()
