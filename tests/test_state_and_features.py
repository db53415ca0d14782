import numpy as np
import pytest

from detectors.client_state import ClientState
from detectors.features import FEATURE_NAMES, extract_features
from detectors.geometry_window import GeometryWindow
from detectors.reference import SpaceReference
from schemas import AccessEvent, Params


def brute_mean_pairwise_sq(vectors: np.ndarray) -> float:
    d = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    n = len(vectors)
    return float(d.sum() / (n * (n - 1)))


def test_incremental_spread_and_nearest_match_brute_force_after_the_window_wraps():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(37, 5)).astype(np.float16).astype(np.float32)  # values the window holds exactly
    w = GeometryWindow(dim=5, size=10)
    for v in data:
        w.learn_one(v, region=0)
    held = data[-10:]
    assert w.count == 10 and w.total == 37
    assert w.mean_pairwise_sq_distance() == pytest.approx(brute_mean_pairwise_sq(held), rel=1e-4)
    expected_last = np.sqrt(((data[-11:-1] - data[-1]) ** 2).sum(axis=1)).min()
    assert w.nearest[-1] == pytest.approx(expected_last, rel=1e-5)
    assert w.steps[-1] == pytest.approx(np.linalg.norm(data[-1] - data[-2]), rel=1e-5)


def test_vectors_are_held_at_half_precision_and_a_verbatim_repeat_is_still_at_distance_zero():
    rng = np.random.default_rng(3)
    v = rng.normal(size=64).astype(np.float32)
    near = v + np.float32(0.01) * rng.normal(size=64).astype(np.float32)  # a small edit, far above the rounding
    w = GeometryWindow(dim=64, size=10)
    for x in (v, near, v.copy()):
        w.learn_one(x, region=0)
    assert w.nearest[-1] == 0.0
    assert w.nearest[1] == pytest.approx(np.linalg.norm(near - v), rel=0.01)
    assert np.abs(w.vectors[0] - v).max() <= 1e-3 * np.abs(v).max()
    assert len(w.to_state()["vectors16"]) == 3 * 64 * 2


def test_a_vector_beyond_half_precisions_range_is_held_at_its_edge_not_as_infinity():
    w = GeometryWindow(dim=3, size=10)
    for x in ([0.0, 0.0, 0.0], [1e9, -1e12, 1.0], [1e9, -1e12, 1.0]):
        w.learn_one(np.array(x, dtype=np.float32), region=0)
    assert np.isfinite(w.vectors[:3]).all() and np.isfinite(w.mean_pairwise_sq_distance())
    assert w.nearest[1] > 9e4 and w.nearest[2] == 0.0


CENTERS = np.random.default_rng(42).normal(size=(8, 6)) * 5


def make_reference(rng) -> SpaceReference:
    points = np.concatenate([c + rng.normal(size=(60, 6)) for c in CENTERS])
    clients = [f"c{i // 20}" for i in range(len(points))]
    return SpaceReference(n_regions=8, n_components=6, normal_scores=True).fit(points, clients)


def test_state_survives_a_bytes_round_trip_with_identical_features():
    rng = np.random.default_rng(2)
    ref = make_reference(rng)
    state = ClientState(window=16)
    for i in range(40):
        vec = ref.transform(rng.normal(size=6))[0]
        region, _ = ref.regions(vec[None, :])
        prompt = f"is this spam: win a {'car' if i % 2 else 'cat'} now {i % 5}"
        event = AccessEvent(ts=1795428000 + i * 1.5, client_id="k", prompt=prompt, status=200, params=Params(temperature=0.0))
        state.learn_one(event, "numeric:6", vec, int(region[0]), float(ref.novelty(vec[None, :])[0]))
    restored = ClientState.from_bytes(state.to_bytes())
    a = extract_features(state, {"numeric:6": ref})
    b = extract_features(restored, {"numeric:6": ref})
    assert np.array_equal(a, b, equal_nan=True)
    assert restored.events_seen == 40
    assert restored.prompts.recent == state.prompts.recent



def _learn(state, ref, rng, start, n):
    for i in range(start, start + n):
        vec = ref.transform(rng.normal(size=6))[0]
        region, _ = ref.regions(vec[None, :])
        prompt = f"is this spam: win a {'car' if i % 2 else 'cat'} now {i % 5}"
        event = AccessEvent(ts=1795428000 + i * 1.5, client_id="k", prompt=prompt, status=200, params=Params(temperature=0.0))
        state.learn_one(event, "numeric:6", vec, int(region[0]), float(ref.novelty(vec[None, :])[0]))


def _as_stored_before_rings_grew(data: bytes) -> bytes:
    """A state's bytes as versions before detectors.ring wrote them: every ring whole, vectors at
    full precision, words as lists, and the six request-shape columns they had (no follow-up
    column, no column count)."""
    import msgspec

    raw = msgspec.msgpack.decode(data)

    def whole(b, dtype, size, fill, width=1):
        rows = np.frombuffer(b, dtype=dtype).reshape(-1, width)
        out = np.full((size, width), fill, dtype=dtype)
        out[: len(rows)] = rows
        return out.tobytes()

    a, p = raw["activity"], raw["prompts"]
    shapes = np.frombuffer(a.pop("shapes"), dtype=np.float32).reshape(-1, a.pop("columns"))[:, :6]
    a["times"], a["shapes"] = whole(a["times"], np.float64, a["size"], 0.0), whole(shapes.tobytes(), np.float32, a["size"], np.nan, 6)
    p["distances"], p["prefixes"] = whole(p["distances"], np.float32, p["size"], np.nan), whole(p["prefixes"], np.int64, p["size"], 0)
    p["recent"] = [r.split() for r in p["recent"]]
    for g in raw["geometry"].values():
        full = np.frombuffer(g.pop("vectors16"), dtype=np.float16).astype(np.float32)  # stored at full precision then
        g["vectors"] = whole(full.tobytes(), np.float32, g["size"], 0.0, g["dim"])
        for name, dtype, fill in (("regions", np.int16, 0), ("nearest", np.float32, np.nan), ("steps", np.float32, np.nan), ("novelty", np.float32, 0.0)):
            g[name] = whole(g[name], dtype, g["size"], fill)
    return msgspec.msgpack.encode(raw)


@pytest.mark.parametrize(("events_before", "capacity"), [(3, 8), (10, 16), (16, 16), (40, 48)])
def test_rings_grow_with_history_and_states_stored_whole_by_earlier_versions_carry_on_the_same(events_before, capacity):
    ref = make_reference(np.random.default_rng(2))
    state = ClientState(window=48)
    _learn(state, ref, np.random.default_rng(5), 0, events_before)
    assert len(state.geometry["numeric:6"].vectors) == len(state.activity.times) == len(state.prompts.prefix_ring) == capacity
    stored_whole = _as_stored_before_rings_grew(state.to_bytes())
    assert len(state.to_bytes()) < len(stored_whole)  # only the rows in use are stored
    old = ClientState.from_bytes(stored_whole)
    for s in (state, old):
        _learn(s, ref, np.random.default_rng(6), events_before, 30)
    a = extract_features(state, {"numeric:6": ref})
    b = extract_features(old, {"numeric:6": ref})
    assert np.array_equal(a, b, equal_nan=True)


def test_novelty_catches_queries_that_break_the_correlations_of_real_data():
    rng = np.random.default_rng(4)
    x = rng.normal(size=3000)
    points = np.column_stack([x, x + rng.normal(scale=0.1, size=3000)])  # y follows x
    ref = SpaceReference(n_regions=8, normal_scores=True).fit(points, [f"c{i % 50}" for i in range(3000)])
    on_data, off_data = ref.novelty(ref.transform([[1.5, 1.5], [1.5, -1.5]]))
    # Both lie inside every column's range; only the second contradicts y ~ x.
    assert on_data < ref.ood_radius_ < off_data


def skewed_table(rng, n):
    """Amount-like and count-like columns: skewed, bounded at zero, correlated."""
    z = rng.normal(size=n)
    amount = np.exp(3.5 + 1.1 * z + 0.3 * rng.normal(size=n))
    count = np.round(np.exp(0.5 + 0.8 * z + 0.5 * rng.normal(size=n)))
    age = np.exp(5.5 + rng.normal(size=n))
    return np.column_stack([amount, count, age])


def test_normal_scores_expose_random_queries_with_the_public_mean_and_spread():
    rng = np.random.default_rng(3)
    real = skewed_table(rng, 4000)
    ref = SpaceReference(n_regions=8, normal_scores=True).fit(real, [f"c{i % 40}" for i in range(4000)])
    # What an attacker who knows each column's mean and spread sends: independent
    # Gaussians, clipped at zero like the API's validation would.
    random = np.maximum(rng.normal(real.mean(axis=0), real.std(axis=0), (500, 3)), 0.0)
    novel = lambda rows: np.mean(ref.novelty(ref.transform(rows)) > ref.ood_radius_)
    assert novel(skewed_table(rng, 500)) < 0.05
    assert novel(random) > 0.5


def test_normal_scores_keep_counting_beyond_the_reference_range():
    rng = np.random.default_rng(4)
    ref = SpaceReference(n_regions=8, normal_scores=True).fit(skewed_table(rng, 2000), [f"c{i % 20}" for i in range(2000)])
    top = ref._marginal_scores(np.array([[1e4, 5, 300], [1e6, 5, 300]]))[:, 0]
    assert top[0] < top[1]


def test_word_edits_tell_a_perturbation_chain_from_a_conversation():
    def median_edit(prompts):
        state = ClientState()
        for i, prompt in enumerate(prompts):
            state.learn_one(AccessEvent(ts=1795428000 + i, client_id="k", prompt=prompt))
        return dict(zip(FEATURE_NAMES, extract_features(state, {})))["edit_distance"]

    base = "the delivery was late and the box was damaged please refund me".split()
    chain = [" ".join(base[:i] + ["badly"] + base[i + 1 :]) for i in range(12)]
    talk = ["how do i reset my password", "it says the link expired", "ok that worked, thanks", "can i change my email too"]
    assert median_edit(chain) < 0.3 < median_edit(talk)


def test_features_separate_a_prober_from_a_sweeper():
    rng = np.random.default_rng(3)
    ref = make_reference(rng)
    values = {}
    for name, points in {
        "prober": ref.transform(CENTERS[0] + rng.normal(scale=0.01, size=(60, 6))),
        "sweeper": ref.transform(rng.uniform(-15, 15, size=(60, 6))),
    }.items():
        state = ClientState()
        regions, _ = ref.regions(points)
        novelty = ref.novelty(points)
        for i, vec in enumerate(points):
            event = AccessEvent(ts=1795428000 + i * 2.0, client_id=name, features=[0.0] * 6)
            state.learn_one(event, "numeric:6", vec, int(regions[i]), float(novelty[i]))
        values[name] = dict(zip(FEATURE_NAMES, extract_features(state, {"numeric:6": ref})))
    prober, sweeper = values["prober"], values["sweeper"]
    assert prober["near_dup_rate"] > 0.8 > sweeper["near_dup_rate"]
    assert prober["diversity"] < 0.01 < sweeper["diversity"]
    assert sweeper["coverage_ratio"] > prober["coverage_ratio"]
    assert sweeper["ood_rate"] > prober["ood_rate"]
    assert prober["gap_cv"] == pytest.approx(0.0, abs=1e-9)


def test_timing_features_need_enough_events():
    state = ClientState()
    state.learn_one(AccessEvent(ts=1795428000, client_id="k"))
    features = dict(zip(FEATURE_NAMES, extract_features(state, {})))
    assert np.isnan(features["gap_cv"]) and np.isnan(features["rate_per_min"]) and np.isnan(features["diversity"])


def test_follow_up_share_counts_only_requests_that_say_how_deep_they_are():
    """A chat request with earlier answers in it is a follow-up; a request whose log does not
    say (a completion, a classifier call) neither counts for nor against."""
    state = ClientState()
    for i, turns in enumerate([0, 1, 2, None, None, 0, 3, None]):
        state.learn_one(AccessEvent(ts=1795428000 + i, client_id="k", prompt=f"question {i}", turns=turns))
    assert dict(zip(FEATURE_NAMES, extract_features(state, {})))["followup_share"] == pytest.approx(3 / 5)
    silent = ClientState()
    silent.learn_one(AccessEvent(ts=1795428000, client_id="k", prompt="classify this"))
    assert np.isnan(dict(zip(FEATURE_NAMES, extract_features(silent, {})))["followup_share"])
    with pytest.raises(ValueError, match="turns"):
        AccessEvent(ts=1795428000, client_id="k", turns=-1)


def test_shapiro_w_is_scipys_statistic_exactly():
    from scipy.stats import shapiro

    from detectors.features import shapiro_w

    rng = np.random.default_rng(1)
    for n in (3, 4, 11, 50, 200):
        for _ in range(50):
            x = rng.lognormal(size=n).astype(np.float32)  # as the features pass them: float32 distances
            if rng.random() < 0.3:
                x = np.round(x, 1)  # ties
            if np.ptp(x) > 0:
                assert shapiro_w(x) == float(shapiro(x).statistic)
