"""Fit a CloneModel on baseline traffic: references per space, then the risk model."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone

import msgspec
import numpy as np

from detectors.client_state import ClientState
from detectors.detector import learn_and_extract
from detectors.features import FEATURE_NAMES, FEATURE_SUSPICIOUS_SIDE
from detectors.model import CloneModel, library_versions
from detectors.reference import SpaceReference
from detectors.risk_model import RiskModel
from schemas import AccessEvent

DEFAULT_WINDOW = 200
MIN_REFERENCE_VECTORS = 20


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
        ref = SpaceReference(n_regions=n_regions, standardize=space != "text", random_state=random_state)
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
) -> CloneModel:
    """Learn what benign traffic looks like from ``events`` (in arrival order)."""
    if len(events) != len(vectors):
        raise ValueError("events and vectors must have the same length")
    clients = {e.client_id for e in events}
    if len(clients) < 2:
        raise ValueError(f"training needs traffic from several clients, got {len(clients)}")
    references = fit_references(events, vectors, n_regions=n_regions, random_state=random_state)
    states: dict[str, ClientState] = {}
    rows, seen = learn_and_extract(references, events, vectors, states, window)
    last = np.zeros(len(events), dtype=bool)
    final_index = {e.client_id: i for i, e in enumerate(events)}
    last[list(final_index.values())] = True
    keep = is_checkpoint(seen) | last
    risk = RiskModel(n_estimators=n_estimators, random_state=random_state).fit(
        rows[keep], FEATURE_NAMES, FEATURE_SUSPICIOUS_SIDE, groups=[e.client_id for e, k in zip(events, keep) if k]
    )
    data_hash = _data_hash(events)
    metadata = {
        "version": f"cw-{data_hash[:12]}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data_sha256": data_hash,
        "training_events": len(events),
        "training_clients": len(clients),
        "training_snapshots": int(keep.sum()),
        "spaces": {space: {"vectors_dim": ref.input_dim_, "regions": ref.n_regions_} for space, ref in references.items()},
        "libraries": library_versions(),
    }
    return CloneModel(references=references, risk=risk, window=window, metadata=metadata)


def _data_hash(events: Sequence[AccessEvent]) -> str:
    digest = hashlib.sha256()
    encoder = msgspec.json.Encoder()
    for event in events:
        digest.update(encoder.encode(event))
    return digest.hexdigest()
