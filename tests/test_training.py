"""Fitting a model on numeric traffic, without the text embedder."""

import numpy as np

from detectors import CloneDetector, fit_clone_model
from schemas import AccessEvent


def numeric_events(n_clients: int, per_client: int, seed: int = 0) -> tuple[list[AccessEvent], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    events, vectors = [], []
    for i in range(per_client):
        for c in range(n_clients):
            x = rng.normal(size=4).astype(np.float32)
            events.append(AccessEvent(ts=1795428000 + 60.0 * i + c, client_id=f"c{c}", features=x.tolist(), status=200))
            vectors.append(x)
    return events, vectors


def test_risk_is_calibrated_on_client_peaks_when_there_are_enough_clients():
    events, vectors = numeric_events(n_clients=150, per_client=25)
    model = fit_clone_model(events, vectors, n_estimators=50)
    assert model.metadata["calibration"]["clients"] == 150
    # Fresh clients like the baseline's: about 1% reach the throttle threshold (0.99) at
    # some point of their life. Calibrated on snapshots instead, it is several times that.
    fresh, fresh_vectors = numeric_events(n_clients=150, per_client=25, seed=10)
    result = CloneDetector(model).process(fresh, fresh_vectors, {})
    assert len({d.client_id for d in result.decisions if d.action.value != "allow"}) <= 6


def test_a_tiny_baseline_still_fits_and_says_it_calibrated_on_snapshots():
    events, vectors = numeric_events(n_clients=2, per_client=30)
    model = fit_clone_model(events, vectors, n_estimators=20)
    assert model.metadata["calibration"]["clients"] == 0
    assert 0.0 <= model.risk.risk(np.zeros((1, len(model.feature_names))))[0] <= 1.0


def own_corner_events(n_clients, per_client, seed, prefix):
    """Each client queries its own small corner of the space, as customers with their own data do."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(n_clients, 4))
    events, vectors = [], []
    for i in range(per_client):
        for c in range(n_clients):
            x = (centers[c] + rng.normal(scale=0.3, size=4)).astype(np.float32)
            events.append(AccessEvent(ts=1795428000 + 60.0 * i + c, client_id=f"{prefix}{c}", features=x.tolist(), status=200))
            vectors.append(x)
    return events, vectors


def test_a_new_client_with_a_corner_of_its_own_looks_like_the_baseline_clients_did():
    events, vectors = own_corner_events(80, 25, seed=0, prefix="base")
    model = fit_clone_model(events, vectors, n_estimators=50)
    fresh, fresh_vectors = own_corner_events(40, 25, seed=1, prefix="new")
    result = CloneDetector(model).process(fresh, fresh_vectors, {})
    flagged = {d.client_id for d in result.decisions if d.action.value != "allow"}
    assert len(flagged) <= 2


def test_a_warm_up_scores_its_own_clients_with_models_that_never_saw_them():
    """Fitted on traffic with an attacker in it, the model fitted on everything has learned the
    attacker as normal; the fold model that left its client out has not."""
    import msgspec

    from detectors.vectorize import Vectorizer
    from tests.streaming_support import numeric_traffic

    raw, labels = numeric_traffic(seed=5, scale=0.15, cap=120)
    events = [msgspec.convert(e, AccessEvent) for e in raw]
    vectors = Vectorizer().vectors(events)
    model = fit_clone_model(events, vectors, contaminated=True)
    assert model.fold_risks and set(model.client_folds) == {e.client_id for e in events}

    def peak_snapshots(m) -> dict[str, float]:
        states, peaks = {}, {}
        detector = CloneDetector(m)
        for start in range(0, len(events), 200):
            batch = events[start : start + 200]
            result = detector.process(batch, vectors[start : start + 200], states)
            for score in result.scores:
                peaks[score.client_id] = max(peaks.get(score.client_id, 0.0), score.risk)
        return peaks

    held_out = peak_snapshots(model)
    model.fold_risks = None
    seen_everything = peak_snapshots(model)
    attackers = [c for c, label in labels.items() if label == "attack"]
    benign = [c for c, label in labels.items() if label == "benign"]
    assert attackers and np.mean([held_out[c] for c in attackers]) > np.mean([seen_everything[c] for c in attackers])
    assert np.mean([held_out[c] for c in attackers]) > np.mean([held_out[c] for c in benign])


def test_folds_fitted_side_by_side_give_the_same_model_and_report_progress():
    events, vectors = own_corner_events(30, 20, seed=2, prefix="c")
    stages: list[str] = []
    alone = fit_clone_model(events, vectors, n_estimators=20, contaminated=True)
    side_by_side = fit_clone_model(events, vectors, n_estimators=20, contaminated=True, n_jobs=2, progress=stages.append)
    fresh, fresh_vectors = own_corner_events(10, 20, seed=3, prefix="new")
    risks = [CloneDetector(m).process(fresh + events[:200], fresh_vectors + vectors[:200], {}).risks for m in (alone, side_by_side)]
    np.testing.assert_array_equal(risks[0], risks[1])
    assert alone.metadata["score_distribution"] == side_by_side.metadata["score_distribution"]
    assert alone.sequential.tau_ == side_by_side.sequential.tau_
    assert stages[0].startswith("references") and stages[-1] == "sequential tests"
    assert "features out of fold 10/10" in stages and "risk model out of fold 10/10" in stages


def load_balancer_checks(start: float, end: float, every: float = 10.0) -> list[AccessEvent]:
    """Two nodes of a load balancer asking GET /healthz every ``every`` seconds, as its access log shows them."""
    return [
        AccessEvent(ts=t, client_id=f"ip_{node}", ip=f"10.0.{node}.17", method="GET", path="/healthz", status=200, user_agent="ELB-HealthChecker/2.0")
        for node in (1, 2)
        for t in np.arange(start + node, end, every)
    ]


def test_health_checks_are_neither_learned_from_nor_scored():
    """A real gateway's log holds its load balancer's health checks beside the API's traffic:
    the most machine-regular clients of the day. Training leaves them out (the model is the
    one fitted without them, to its data hash), and scoring gives them no state, no score and
    no decision, while the clients around them are scored as before."""
    events, vectors = own_corner_events(30, 20, seed=2, prefix="c")
    checks = load_balancer_checks(events[0].ts, events[-1].ts, every=2.0)
    merged = sorted([(e.ts, 0, e, v) for e, v in zip(events, vectors)] + [(e.ts, 1, e, None) for e in checks], key=lambda x: x[:2])
    with_checks = fit_clone_model([m[2] for m in merged], [m[3] for m in merged], n_estimators=20)
    without = fit_clone_model(events, vectors, n_estimators=20)
    assert len(checks) > len(events) and with_checks.version == without.version
    assert with_checks.metadata["training_clients"] == 30

    fresh, fresh_vectors = own_corner_events(10, 30, seed=3, prefix="new")
    probes = load_balancer_checks(fresh[0].ts, fresh[-1].ts, every=2.0)
    mixed = sorted([(e.ts, 0, e, v) for e, v in zip(fresh, fresh_vectors)] + [(e.ts, 1, e, None) for e in probes], key=lambda x: x[:2])
    states: dict = {}
    result = CloneDetector.from_model(without).process([m[2] for m in mixed], [m[3] for m in mixed], states)
    alone = CloneDetector.from_model(without).process(fresh, fresh_vectors, {})
    is_check = np.array([m[1] == 1 for m in mixed])
    assert not any(c.startswith("ip_") for c in states) and not any(s.client_id.startswith("ip_") for s in result.scores)
    assert not any(d.client_id.startswith("ip_") for d in result.decisions)
    assert len(result.risks) == len(mixed) and not result.risks[is_check].any()
    np.testing.assert_array_equal(result.risks[~is_check], alone.risks)
