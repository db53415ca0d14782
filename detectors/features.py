"""The per-client feature vector: timing, request shape and query geometry.

Geometric features are relative to the benign reference of the client's main space
(see :class:`detectors.reference.SpaceReference`). A feature that cannot be measured
yet (too few events, no vectors) is NaN; the risk model imputes it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from scipy.stats import shapiro

try:  # scipy's Shapiro-Wilk routine itself: scipy.stats.shapiro's argument handling costs ten times more per call
    from scipy.stats._ansari_swilk_statistics import swilk as _swilk
except ImportError:  # another scipy layout: the public function, slower
    _swilk = None

from detectors.activity_window import SHAPE_COLUMNS
from detectors.client_state import ClientState
from detectors.reference import SpaceReference

FEATURE_NAMES: tuple[str, ...] = (
    "rate_per_min",
    "gap_cv",
    "diversity",
    "nearest_distance",
    "nearest_cv",
    "near_dup_rate",
    "near_dup_count",
    "exact_dup_rate",
    "chain_rate",
    "edit_distance",
    "prada_w",
    "coverage_ratio",
    "region_entropy",
    "ood_rate",
    "temp0_share",
    "logprobs_share",
    "multi_n_share",
    "error_rate",
    "prompt_len_cv",
    "prefix_reuse",
    "followup_share",
    "events_seen_log",
)

FEATURE_LABELS: dict[str, str] = {
    "rate_per_min": "requests per minute",
    "gap_cv": "inter-arrival variation (CV)",
    "diversity": "query spread",
    "nearest_distance": "distance to own nearest earlier query",
    "nearest_cv": "variation of distance to own nearest query (CV)",
    "near_dup_rate": "near-duplicate rate",
    "near_dup_count": "near-duplicates in window (log)",
    "exact_dup_rate": "exact repeat rate",
    "chain_rate": "small-step chain rate",
    "edit_distance": "words changed from a recent prompt",
    "prada_w": "PRADA normality W",
    "coverage_ratio": "input-space coverage vs benign",
    "region_entropy": "region entropy",
    "ood_rate": "out-of-distribution rate",
    "temp0_share": "temperature-0 share",
    "logprobs_share": "logprobs share",
    "multi_n_share": "n>1 share",
    "error_rate": "error rate",
    "prompt_len_cv": "prompt length variation",
    "prefix_reuse": "template (prompt opening) reuse",
    "followup_share": "follow-up share (chat requests carrying earlier answers)",
    "events_seen_log": "events seen (log)",
}

# Which side of the benign distribution is suspicious. Humans are bursty (high gap CV),
# repeat themselves now and then and follow up on answers; machines are regular, broad and
# precise, and an extraction script asks each question once, without the conversation. Values
# on the harmless side are clipped to the reference median before scoring, so an
# unusually human client is never flagged for it. A client's age is context, never
# evidence: it picks the benign clients of a similar age to compare with. Whether a client
# follows up is its kind, never evidence alone (batch jobs never follow up either): a
# client that asks like a chat user and never follows up is far from every benign kind.
FEATURE_SUSPICIOUS_SIDE: dict[str, str] = {
    "rate_per_min": "high",
    "gap_cv": "low",
    "diversity": "both",
    "nearest_distance": "both",
    "nearest_cv": "low",
    "near_dup_rate": "high",
    "near_dup_count": "high",
    "exact_dup_rate": "high",
    "chain_rate": "high",
    "edit_distance": "low",
    "prada_w": "low",
    "coverage_ratio": "high",
    "region_entropy": "high",
    "ood_rate": "high",
    "temp0_share": "high",
    "logprobs_share": "high",
    "multi_n_share": "high",
    "error_rate": "high",
    "prompt_len_cv": "both",
    "prefix_reuse": "high",
    "followup_share": "kind",
    "events_seen_log": "context",
}

PRADA_MIN_SAMPLES = 8


def extract_features(state: ClientState, references: Mapping[str, SpaceReference]) -> np.ndarray:
    """The feature vector of one client now, ordered as :data:`FEATURE_NAMES`."""
    values = dict.fromkeys(FEATURE_NAMES, np.nan)
    values["events_seen_log"] = float(np.log(max(state.events_seen, 1)))
    values.update(_timing(state))
    values.update(_shape(state))
    values.update(_words(state))
    space = state.main_space()
    if space is not None and space in references:
        values.update(_geometry(state, references[space]))
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)


def _timing(state: ClientState) -> dict[str, float]:
    gaps = state.activity.gaps()
    if len(gaps) == 0:
        return {}
    span = max(float(gaps.sum()), 1.0)
    return {"rate_per_min": float(np.log1p(60.0 * len(gaps) / span)), "gap_cv": _cv(gaps)}


def _normalised_entropy(counts: np.ndarray) -> float:
    """Entropy of a histogram, as a share of the most its items could reach over its bins."""
    n = int(counts.sum())
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum() / np.log(min(n, len(counts))))


def _median(x: np.ndarray) -> np.floating:
    """``np.median`` of a non-empty array without missing values, a scalar of its dtype, without
    its overhead on short arrays: the middle value, or the mean of the middle two.

    >>> x = np.array([3.0, 1.0, 4.0, 1.5], dtype=np.float32)
    >>> _median(x) == np.median(x), _median(x[:3]) == np.median(x[:3]), _median(x).dtype
    (np.True_, np.True_, dtype('float32'))
    """
    k = len(x) // 2
    if len(x) % 2:
        return np.partition(x, k)[k]
    part = np.partition(x, (k - 1, k))
    return (part[k - 1] + part[k]) / 2


def _mean_and_std(x: np.ndarray) -> tuple[np.floating, np.floating]:
    """``x.mean()`` and ``x.std()`` of a non-empty 1-d float array, each as numpy computes it
    (the same pairwise sums and divisions, in the array's precision), without their overhead
    on short arrays.

    >>> column = np.random.default_rng(0).gamma(2.0, size=(300, 3)).astype(np.float32)[:, 1]  # strided, as the window's
    >>> [_mean_and_std(x) == (x.mean(), x.std()) for x in (column, column.astype(np.float64))]
    [True, True]
    """
    n, kind = np.intp(len(x)), x.dtype.type
    mean = kind(np.add.reduce(x) / n)
    deviations = x - mean
    return mean, kind(np.sqrt(kind(np.add.reduce(deviations * deviations) / n)))


def _cv(x: np.ndarray) -> float:
    """Standard deviation over mean, of at least 3 values with a positive mean; else nan."""
    if len(x) < 3:
        return np.nan
    mean, std = _mean_and_std(x)
    return float(std / mean) if mean > 0 else np.nan


def _rate(mask: np.ndarray) -> float:
    """Share of True in a boolean array: ``mask.mean()``, without its overhead on short arrays."""
    return np.count_nonzero(mask) / len(mask)


_SHARES = {"temp0_share": "temp0", "logprobs_share": "logprobs", "multi_n_share": "multi_n", "error_rate": "error", "followup_share": "followup"}
_SHARE_COLUMNS = [SHAPE_COLUMNS.index(column) for column in _SHARES.values()]
_PROMPT_CHARS = SHAPE_COLUMNS.index("prompt_chars")


def _shape(state: ClientState) -> dict[str, float]:
    shapes = state.activity.shapes[: state.activity.count]
    flags = shapes[:, _SHARE_COLUMNS]  # share of each 0/1 column's known values that are 1, in float32
    known = np.count_nonzero(~np.isnan(flags), axis=0).astype(np.float32)
    ones = np.count_nonzero(flags == 1.0, axis=0).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(known > 0, ones / known, np.float32(np.nan))
    out = dict(zip(_SHARES, shares.tolist()))
    lengths = shapes[:, _PROMPT_CHARS]
    out["prompt_len_cv"] = _cv(lengths[~np.isnan(lengths)])
    return out


def _words(state: ClientState) -> dict[str, float]:
    p = state.prompts
    edits = p.edit_distances()
    return {
        "edit_distance": float(_median(edits)) if len(edits) >= 3 else np.nan,
        "prefix_reuse": p.prefix_reuse() if p.count >= 3 else np.nan,
    }


def _geometry(state: ClientState, ref: SpaceReference) -> dict[str, float]:
    w = state.geometry[state.main_space()]
    out = {"diversity": w.mean_pairwise_sq_distance() / ref.typical_sq_distance_}
    regions = w.window_regions
    counts = np.bincount(regions, minlength=ref.n_regions_)
    out["coverage_ratio"] = float(np.count_nonzero(counts) / ref.expected_regions(w.count))
    if w.count >= 2:
        out["region_entropy"] = _normalised_entropy(counts)
    out["ood_rate"] = _rate(w.novelties > ref.ood_radius_)

    nearest = w.nearest
    nearest = nearest[~np.isnan(nearest)]
    if len(nearest):
        exact = nearest <= ref.exact_radius
        out["exact_dup_rate"] = _rate(exact)
        near = ~exact & (nearest <= ref.near_dup_radius_)
        out["near_dup_rate"] = _rate(near)
        # Probing needs volume: a developer's handful of edits and a prober's hundreds
        # have similar rates but very different counts.
        out["near_dup_count"] = float(np.log1p(np.count_nonzero(near)))
        out["nearest_distance"] = float(_median(nearest) / ref.unit_)
        steps = w.steps
        steps = steps[~np.isnan(steps)]
        out["chain_rate"] = _rate((steps > ref.exact_radius) & (steps <= ref.near_dup_radius_))
    fresh = nearest[nearest > ref.exact_radius]
    if len(fresh) >= PRADA_MIN_SAMPLES:
        # Machine-made queries step by a fixed amount (augmentation, sweeps); people do not.
        out["nearest_cv"] = _cv(fresh)
    if len(fresh) >= PRADA_MIN_SAMPLES and np.ptp(fresh) > 0:
        out["prada_w"] = shapiro_w(fresh)
    return out


def shapiro_w(x: np.ndarray) -> float:
    """The Shapiro-Wilk W of ``x`` (at least 3 values), computed as ``scipy.stats.shapiro`` does.

    >>> x = np.random.default_rng(0).normal(size=50)
    >>> shapiro_w(x) == float(shapiro(x).statistic)
    True
    """
    if _swilk is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(shapiro(x).statistic)
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.sort(x)
    y -= x[len(x) // 2]  # as scipy does (gh-15777)
    return float(_swilk(y, np.zeros(len(x) // 2), 0)[0])
