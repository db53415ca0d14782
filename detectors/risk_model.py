"""Risk in 0..1 from per-client feature vectors, with the signals that drove it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

from detectors.calibration import TailCalibrator


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float
    share_beyond: float  # share of reference clients at least this extreme
    direction: str  # "high" or "low"


class RiskModel:
    """Isolation forest plus per-feature tail evidence, calibrated on benign clients.

    The anomaly score of a client is the larger of two percentiles against the
    reference: the isolation forest's (unusual combinations of signals) and that of
    the most extreme single feature (one signal far outside the benign range, which a
    forest over many features dilutes). That score is calibrated again, so a risk of
    0.99 means "more anomalous than 99% of reference clients".

    ``suspicious_side`` says per feature which side of the reference is suspicious
    ("high", "low" or "both", the default); values on the harmless side are clipped
    to the reference median, so they neither isolate a client nor count as evidence.

    >>> rng = np.random.default_rng(0)
    >>> model = RiskModel(n_estimators=50).fit(rng.normal(size=(500, 3)), ["a", "b", "c"], {"b": "high"})
    >>> risk = model.risk(np.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, -9.0, 0.0]]))
    >>> bool(risk[0] < 0.9), bool(risk[1] > 0.999), bool(risk[2] < 0.9)
    (True, True, True)
    >>> model.explain(np.array([0.0, 9.0, 0.0]))[0].feature
    'b'
    """

    def __init__(self, n_estimators: int = 200, max_samples: int | str = 256, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(
        self,
        X: np.ndarray,
        feature_names: list[str] | tuple[str, ...],
        suspicious_side: dict[str, str] | None = None,
        groups: np.ndarray | list | None = None,
    ) -> RiskModel:
        """Fit on reference rows; ``groups`` names the client of each row.

        Rows of one client are not independent, so the per-feature tails resolve no
        finer than the number of distinct clients: a value beyond every reference client
        is evidence in proportion to how many clients the reference has.
        """
        X = self._validate(X, expected=len(feature_names))
        self.n_clients_ = len(set(groups)) if groups is not None else len(X)
        self.feature_names_ = tuple(feature_names)
        sides = suspicious_side or {}
        unknown = set(sides.values()) - {"high", "low", "both"}
        if unknown:
            raise ValueError(f"suspicious_side values must be high, low or both, not {sorted(unknown)}")
        self.clip_high_ = np.array([sides.get(f, "both") == "low" for f in self.feature_names_])
        self.clip_low_ = np.array([sides.get(f, "both") == "high" for f in self.feature_names_])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns get 0
            medians = np.nanmedian(X, axis=0)
        self.fill_ = np.where(np.isnan(medians), 0.0, medians)
        Xf = self._impute(X)
        self.sorted_ = np.sort(Xf, axis=0)
        q25, q75 = np.percentile(Xf, [25, 75], axis=0)
        spread = np.maximum(q75 - q25, (self.sorted_[-1] - self.sorted_[0]) / 10)
        self.spread_ = np.where(spread > 1e-12, spread, 1.0)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, random_state=self.random_state
        ).fit(Xf)
        self.forest_calibrator_ = TailCalibrator().fit(-self.forest_.score_samples(Xf))
        self.tail_calibrator_ = TailCalibrator().fit(self._tail_evidence(Xf))
        self.risk_calibrator_ = TailCalibrator().fit(self._combined(Xf))
        self.n_reference_ = len(Xf)
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Scikit-learn convention: the lower, the more abnormal."""
        return -self._combined(self._impute(self._validate(X)))

    def risk(self, X: np.ndarray) -> np.ndarray:
        """Share of reference clients less anomalous than each row, in 0..1."""
        return self.risk_calibrator_.transform(-self.score_samples(X))

    def explain(self, x: np.ndarray, max_reasons: int = 3, max_share: float = 0.05) -> list[Reason]:
        """The features of one row that lie furthest out in the reference's tails."""
        row = self._impute(self._validate(np.atleast_2d(x)))
        share, high = self._tail_share(row)
        order = np.argsort(share[0])
        return [
            Reason(self.feature_names_[j], float(np.atleast_2d(x)[0, j]), float(share[0, j]), "high" if high[0, j] else "low")
            for j in order[:max_reasons]
            if share[0, j] <= max_share and not np.isnan(np.atleast_2d(x)[0, j])
        ]

    def _validate(self, X: np.ndarray, expected: int | None = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-d feature matrix, got shape {X.shape}")
        n_features = expected if expected is not None else len(self.feature_names_)
        if X.shape[1] != n_features:
            raise ValueError(f"expected {n_features} features, got {X.shape[1]}")
        return X

    def _impute(self, X: np.ndarray) -> np.ndarray:
        """Fill unknown values with the reference median; clip the harmless side to it."""
        X = np.where(np.isnan(X), self.fill_, X)
        X = np.where(self.clip_low_ & (X < self.fill_), self.fill_, X)
        return np.where(self.clip_high_ & (X > self.fill_), self.fill_, X)

    def _tail_share(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided share of reference values at least as extreme as each value.

        Beyond the reference range the share keeps shrinking in proportion to the
        distance, in units of the feature's spread, so far-out values still rank. The
        decay is deliberately slow (harmonic, not exponential): the reference says
        nothing about its own tail, and a small baseline must not turn one odd value
        into overwhelming evidence.
        """
        n = len(self.sorted_)
        m = self.n_clients_
        share = np.empty_like(X)
        high = np.empty(X.shape, dtype=bool)
        for j in range(X.shape[1]):
            col, ref = X[:, j], self.sorted_[:, j]
            below = np.searchsorted(ref, col, side="left")
            equal = np.searchsorted(ref, col, side="right") - below
            lower = ((below + 0.5 * equal) / n * m + 0.5) / (m + 1)
            upper = ((n - below - 0.5 * equal) / n * m + 0.5) / (m + 1)
            beyond_high = np.maximum(col - ref[-1], 0.0) / self.spread_[j]
            beyond_low = np.maximum(ref[0] - col, 0.0) / self.spread_[j]
            upper = upper / (1.0 + beyond_high)
            lower = lower / (1.0 + beyond_low)
            share[:, j] = np.minimum(lower, upper)
            high[:, j] = upper < lower
        return share, high

    def _tail_evidence(self, X: np.ndarray) -> np.ndarray:
        """Evidence from the two most extreme features together.

        One odd habit (a rare parameter, say) moves a client into the tail of one
        feature; extraction and probing move several at once, so the second-most
        extreme feature counts as much as the first.
        """
        share, _ = self._tail_share(X)
        logs = -np.log(share)
        top_two = np.sort(logs, axis=1)[:, -2:] if logs.shape[1] > 1 else logs
        return top_two.sum(axis=1)

    def _combined(self, X: np.ndarray) -> np.ndarray:
        forest = self.forest_calibrator_.transform(-self.forest_.score_samples(X))
        tail = self.tail_calibrator_.transform(self._tail_evidence(X))
        # Ranked on -log(1 - percentile) so the calibrated tail keeps its resolution near 1.
        return -np.log1p(-np.minimum(np.maximum(forest, tail), 1 - 1e-12))
