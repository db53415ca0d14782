import numpy as np
import pytest

from detectors.calibration import TailCalibrator
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
