from dataclasses import replace

import numpy as np
import pytest

from detectors.calibration import TailCalibrator, sustained_peaks
from detectors.client_state import ClientState
from detectors.policy import Policy, PolicyConfig
from detectors.risk_model import RiskModel
from schemas import Action


def test_calibrated_risk_means_share_of_reference_below():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(4000, 4))
    model = RiskModel(n_estimators=100).fit(reference, ["a", "b", "c", "d"])
    fresh = rng.normal(size=(4000, 4))
    risk = model.risk(fresh)
    # On new draws from the reference distribution the risk is close to uniform.
    assert np.mean(risk >= 0.9) == pytest.approx(0.1, abs=0.03)
    assert np.mean(risk >= 0.99) == pytest.approx(0.01, abs=0.01)


def test_tail_calibrator_keeps_ranking_beyond_the_reference():
    cal = TailCalibrator().fit(np.random.default_rng(1).exponential(size=2000))
    r = cal.transform([5.0, 8.0, 12.0])
    assert 0.99 < r[0] < r[1] < r[2] < 1.0


def test_only_the_suspicious_side_counts_and_reasons_name_the_feature():
    rng = np.random.default_rng(2)
    model = RiskModel(n_estimators=100).fit(rng.normal(size=(2000, 3)), ["rate", "gap_cv", "other"], {"rate": "high", "gap_cv": "low"})
    risk = model.risk(np.array([[6.0, 0.0, 0.0], [-6.0, 0.0, 0.0], [0.0, -6.0, 0.0], [0.0, 6.0, 0.0], [10.0, 0.0, 0.0]]))
    assert risk[0] > 0.998 and risk[2] > 0.998 and risk[4] > risk[0]
    assert risk[1] < 0.9 and risk[3] < 0.9
    reasons = model.explain(np.array([6.0, 0.0, 0.0]))
    assert reasons[0].feature == "rate" and reasons[0].direction == "high" and reasons[0].share_beyond < 0.001


def test_a_mix_of_two_benign_habits_is_anomalous_though_each_value_is_common():
    # Benign clients come in two kinds: high on "a" or high on "b", never both.
    rng = np.random.default_rng(5)
    kind = rng.integers(0, 2, size=3000)
    X = np.column_stack([np.where(kind == 0, 3.0, 0.0), np.where(kind == 1, 3.0, 0.0)]) + rng.normal(scale=0.3, size=(3000, 2))
    model = RiskModel(n_estimators=100).fit(X, ["a", "b"], {"a": "high", "b": "high"}, groups=np.arange(3000) // 10)
    kind_a, kind_b, both = model.risk(np.array([[3.0, 0.0], [0.0, 3.0], [3.0, 3.0]]))
    assert kind_a < 0.9 and kind_b < 0.9 and both > 0.999


def test_a_kind_feature_is_never_evidence_alone_but_sets_who_a_client_is_compared_with():
    # Chat users follow up and send ordinary volume; batch jobs never follow up and send
    # a lot. A client with a batch job's silence and a chat user's volume is of no kind.
    rng = np.random.default_rng(6)
    chat = rng.integers(0, 2, size=3000)
    volume = np.where(chat == 1, 0.0, 3.0) + rng.normal(scale=0.3, size=3000)
    followups = np.where(chat == 1, 0.7, 0.0) + np.where(chat == 1, rng.normal(scale=0.05, size=3000), 0.0)
    X = np.column_stack([volume, followups])
    model = RiskModel(n_estimators=100).fit(X, ["volume", "followup_share"], {"volume": "high", "followup_share": "kind"}, groups=np.arange(3000) // 10)
    chat_user, batch_job, silent_chatter = model.risk(np.array([[0.0, 0.7], [3.0, 0.0], [0.0, 0.0]]))
    assert chat_user < 0.9 and batch_job < 0.9 and silent_chatter > 0.99
    tails = model._tail_evidence(model._impute(np.array([[0.0, 0.7], [0.0, 0.0], [0.0, 5.0]])))
    assert tails[0] == tails[1] == tails[2]  # the tails never see it
    assert all(r.feature != "followup_share" for r in model.explain(np.array([0.0, 0.0])))


def test_calibrating_on_client_peaks_sets_the_false_positive_rate():
    rng = np.random.default_rng(6)
    model = RiskModel(n_estimators=50).fit(rng.normal(size=(500, 2)), ["a", "b"])
    peaks = -model.score_samples(rng.normal(size=(2000, 2)) + 1.0)  # clients' peaks run higher than rows
    model.calibrate(peaks)
    assert np.mean(model.risk_calibrator_.transform(peaks) >= 0.99) == pytest.approx(0.01, abs=0.005)
    ordinary_row = model.risk(np.zeros((1, 2)))[0]
    assert ordinary_row < 0.5  # a typical moment is far below a typical client's peak


def test_sustained_peaks_follow_the_policy_rules():
    scores = np.array([9.0, 1.0, 5.0, 6.0, 2.0, 7.0])
    peaks = sustained_peaks(scores, ["k"] * 6, np.arange(1, 7), min_events=2, sustain=2)
    assert peaks == {"k": 5.0}  # 9 comes before min_events; 7 is not held for 2 events


def test_risk_model_validates_its_input():
    model = RiskModel(n_estimators=10).fit(np.random.default_rng(3).normal(size=(50, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="expected 2 features"):
        model.risk(np.zeros((1, 3)))


def run_policy(policy: Policy, risks, start_seen: int = 1) -> list[str]:
    state = ClientState()
    return [policy.decide("k", state, r, start_seen + i).value for i, r in enumerate(risks)]


def test_policy_waits_for_minimum_events_and_confirmation():
    policy = Policy(PolicyConfig(throttle=0.9, challenge=0.95, deny=0.99, min_events=5, min_events_deny=8, confirm_events=2))
    actions = run_policy(policy, [0.999] * 10)
    assert actions[:5] == ["allow"] * 5  # events 1-5: below min_events, then first confirmation
    assert actions[5] == "challenge"  # event 6 confirms; deny needs 8 events
    assert actions[8] == "deny"


def test_policy_hysteresis_prevents_flapping_and_allowlist_wins():
    policy = Policy(PolicyConfig(throttle=0.9, challenge=0.95, deny=0.99, min_events=1, min_events_deny=1, confirm_events=1, hysteresis=0.05))
    assert run_policy(policy, [0.92, 0.89, 0.88, 0.84]) == ["throttle", "throttle", "throttle", "allow"]
    allow = Policy(PolicyConfig(min_events=1, min_events_deny=1, confirm_events=1, allowlist=frozenset({"k"})))
    assert run_policy(allow, [1.0, 1.0]) == ["allow", "allow"]
    assert Action.DENY.severity > Action.THROTTLE.severity
    with pytest.raises(ValueError):
        PolicyConfig(throttle=0.99, challenge=0.9)


def test_tails_compare_a_client_with_benign_clients_of_its_age():
    rng = np.random.default_rng(0)
    ages = np.round(np.exp(rng.uniform(np.log(3), np.log(400), size=3000))).astype(int)
    rate = rng.binomial(ages, 0.1) / ages  # a share of events: noisy young, steady old
    other = rng.normal(size=3000)
    X = np.column_stack([rate, other, np.log(ages)])
    model = RiskModel(n_estimators=50).fit(X, ["rate", "other", "age"], {"rate": "high", "age": "context"}, np.arange(3000) // 3)
    old, young = model.risk(np.array([[0.2, 0.0, np.log(300)], [0.5, 0.0, np.log(4)]]))
    # Twice the usual share is unheard of over 300 events; half of 4 happens all the time.
    assert old > 0.99 > young


def test_confirmation_jitter_delays_each_client_by_its_own_secret_draw() -> None:
    """With jitter, the event an action starts at is not the same for every client (so a client
    cannot learn which query tripped it), is the same on every run, and depends on the secret."""
    config = PolicyConfig(min_events=1, min_events_deny=1, confirm_events=2, confirm_jitter=6, jitter_key="deployment secret")

    def first_throttle(client: str, cfg: PolicyConfig) -> int:
        policy, state = Policy(cfg), ClientState()
        state.events_seen = 50
        for n in range(1, 20):
            if policy.decide(client, state, 0.99999).value != "allow":
                return n
        raise AssertionError("never acted")

    starts = [first_throttle(f"key_{i}", config) for i in range(60)]
    assert min(starts) >= 2 and max(starts) <= 8 and len(set(starts)) >= 4
    assert starts == [first_throttle(f"key_{i}", config) for i in range(60)]
    other_secret = replace(config, jitter_key="another secret")
    assert starts != [first_throttle(f"key_{i}", other_secret) for i in range(60)]
    assert {first_throttle(f"key_{i}", replace(config, confirm_jitter=0)) for i in range(10)} == {2}


def test_a_warm_up_client_is_calibrated_without_its_own_peak() -> None:
    """Fitted on the traffic it scores, an attacker's own peak would cap its risk: each
    warm-up client is placed among the others' peaks instead."""
    peaks = np.array([1.0, 1.2, 1.1, 0.9, 1.3, 1.0, 1.15, 1.05, 0.95, 6.0])
    clients = np.array([f"c{i}" for i in range(9)] + ["sweep"])
    model = RiskModel().calibrate(peaks, clients)
    pooled, alone = model.calibrated(np.array([6.0])), model.calibrated(np.array([6.0]), np.array(["sweep"]))
    assert pooled[0] < 0.99 and alone[0] > 0.999
    assert model.calibrated(np.array([6.0]), np.array(["newcomer"]))[0] == pooled[0]  # not in the warm-up: all peaks


def test_the_neighbor_reference_keeps_a_sample_of_a_large_baseline_and_still_finds_outliers():
    rng = np.random.default_rng(0)
    X, groups = rng.normal(size=(3000, 3)), np.arange(3000) // 30
    model = RiskModel(n_estimators=50, max_neighbors=500).fit(X, ["a", "b", "c"], None, groups)
    assert model.neighbors_.shape == (500, 3) and len(model.neighbor_groups_) == 500
    risk = model.risk(np.array([[0.0, 0.0, 0.0], [0.0, 6.0, -6.0]]))
    assert risk[0] < 0.9 and risk[1] > 0.999


def test_the_forest_scored_as_arrays_gives_scikit_learns_scores_to_the_bit_ties_included():
    from sklearn.ensemble import IsolationForest

    from detectors.isolation_paths import IsolationPaths

    rng = np.random.default_rng(3)
    X = np.round(rng.normal(size=(2000, 6)), 1)  # coarse values: many lie exactly on a split
    forest = IsolationForest(n_estimators=60, random_state=1).fit(X)
    thresholds = np.concatenate([e.tree_.threshold[e.tree_.children_left != -1] for e in forest.estimators_])
    queries = np.vstack([X, rng.normal(scale=4.0, size=(300, 6)), np.tile(thresholds[:300, None], (1, 6))])
    paths = IsolationPaths(forest)
    assert np.array_equal(paths.score_samples(queries, chunk=97), forest.score_samples(queries))
    with pytest.raises(ValueError, match="6 features"):
        paths.score_samples(queries[:, :5])


def test_a_saved_risk_model_keeps_its_fitted_state_and_not_what_scoring_derives_from_it():
    import pickle

    rng = np.random.default_rng(0)
    X, groups = rng.normal(size=(400, 3)), np.arange(400) // 4
    model = RiskModel(n_estimators=20).fit(X, ["a", "b", "c"], {"c": "context"}, groups)
    before = model.score_samples(X[:50])
    assert {"_paths", "_band_keys_cache"} <= set(vars(model))
    copy = pickle.loads(pickle.dumps(model))
    assert not {"_paths", "_band_keys_cache"} & set(vars(copy))
    assert np.array_equal(copy.score_samples(X[:50]), before)
