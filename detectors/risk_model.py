"""Risk in 0..1 from per-client feature vectors, with the signals that drove it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from sklearn.ensemble import IsolationForest

from detectors.calibration import TailCalibrator
from detectors.isolation_paths import IsolationPaths
from detectors.neighbors import NeighborIndex, kth_nearest_distance, sample_rows
from detectors.spread import robust_spread

SIDES = ("high", "low", "both", "context", "kind")
CONTEXT_BAND = float(np.log(2.0))  # tails come from reference rows whose context is this close (age within a factor of 2)
MIN_PEERS = 20  # fewest reference clients a context band holds; it widens until it does
_DERIVED = ("_paths", "_band_keys_cache", "_neighbor_index")  # made from the fitted state on first use, never saved


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float
    share_beyond: float  # share of reference clients at least this extreme
    direction: str  # "high" or "low"


class RiskModel:
    """Three detectors over the per-client feature vector, calibrated on benign clients.

    - **Tail evidence**: how far the two most extreme features lie in the reference's
      tails (one signal far outside the benign range, which a model over many features
      dilutes).
    - **Nearest benign clients**: the distance from the client to the ``n_neighbors``-th
      nearest reference snapshot of another client, with every feature mapped to a
      normal score of the reference. Benign clients come in kinds (a developer re-running
      prompts is close to other developers); an attacker is far from every kind. At most
      ``max_neighbors`` snapshots (a random sample) are kept to measure it, so that
      fitting and scoring cost the same per row whatever the baseline's size.
    - **Isolation forest**: unusual combinations of raw feature values.

    Each detector's score is calibrated to the share of reference rows below it. Tail and
    neighbor evidence add up (both must agree for a very high risk, and either alone
    can carry a clear case), the forest can only raise it, and the result is calibrated
    again: a risk of 0.99 means "more anomalous than 99% of the reference".

    ``suspicious_side`` says per feature which side of the reference is suspicious:
    "high", "low", "both" (the default), "context" or "kind". Values on the harmless side are
    clipped to the reference median, so they neither isolate a client nor count as
    evidence. A context feature (how many events a client has sent, say) is never
    evidence; it chooses which benign clients a client is compared with: the nearest
    neighbors are found with it, and the tails are those of reference rows whose context
    lies within ``CONTEXT_BAND`` of the client's. A rate measured over ten events spreads
    far wider than one over two hundred, so an old client's 90% must not be compared with
    a young client's 3 out of 3. A "kind" feature (whether a client follows up on answers,
    say) is not evidence either, on either side: it says what kind of client this is, so
    the neighbors and the forest see it, unclipped, and the tails do not.

    >>> rng = np.random.default_rng(0)
    >>> X, groups = rng.normal(size=(500, 3)), np.arange(500) // 5
    >>> model = RiskModel(n_estimators=50).fit(X, ["a", "b", "c"], {"b": "high"}, groups)
    >>> risk = model.risk(np.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, -9.0, 0.0]]))
    >>> bool(risk[0] < 0.9), bool(risk[1] > 0.999), bool(risk[2] < 0.9)
    (True, True, True)
    >>> model.explain(np.array([0.0, 9.0, 0.0]))[0].feature
    'b'
    """

    def __init__(
        self,
        n_estimators: int = 200,
        max_samples: int | str = 256,
        n_neighbors: int = 5,
        max_neighbors: int = 16384,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.n_neighbors = n_neighbors
        self.max_neighbors = max_neighbors
        self.random_state = random_state

    def fit(
        self,
        X: np.ndarray,
        feature_names: list[str] | tuple[str, ...],
        suspicious_side: dict[str, str] | None = None,
        groups: np.ndarray | list | None = None,
    ) -> RiskModel:
        """Fit on reference rows; ``groups`` names the client of each row (default: one each).

        Rows of one client are not independent, so the per-feature tails resolve no
        finer than the number of distinct clients: a value beyond every reference client
        is evidence in proportion to how many clients the reference has. Neighbors are
        always other clients' rows.
        """
        X = self._validate(X, expected=len(feature_names))
        groups = np.asarray(groups) if groups is not None else np.arange(len(X))
        if len(groups) != len(X):
            raise ValueError("groups must name the client of every row")
        self.n_clients_ = len(np.unique(groups))
        if self.n_clients_ < 2:
            raise ValueError("the reference needs rows from at least 2 clients")
        self.feature_names_ = tuple(feature_names)
        sides = suspicious_side or {}
        unknown = set(sides.values()) - set(SIDES)
        if unknown:
            raise ValueError(f"suspicious_side values must be one of {', '.join(SIDES)}, not {sorted(unknown)}")
        side = np.array([sides.get(f, "both") for f in self.feature_names_])
        self.clip_high_, self.clip_low_ = side == "low", side == "high"
        self.evidence_ = (side != "context") & (side != "kind")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns get 0
            medians = np.nanmedian(X, axis=0)
        self.fill_ = np.where(np.isnan(medians), 0.0, medians)
        Xf = self._impute(X)
        self.spread_ = robust_spread(Xf)
        self._fit_peer_bands(Xf, groups, side == "context")

        max_samples = min(self.max_samples, len(Xf)) if isinstance(self.max_samples, int) else self.max_samples  # as sklearn would, unwarned
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, max_samples=max_samples, random_state=self.random_state).fit(Xf)
        self.forest_calibrator_ = TailCalibrator().fit(-self._forest_scores(Xf))
        self.tail_calibrator_ = TailCalibrator().fit(self._tail_evidence(Xf))
        Z = self._normal_scores(Xf).astype(np.float32)
        kept = sample_rows(len(Z), self.max_neighbors, self.random_state)
        self.neighbors_, self.neighbor_groups_ = Z[kept], groups[kept]
        largest_group = np.unique(self.neighbor_groups_, return_counts=True)[1].max()
        self.neighbor_k_ = max(1, min(self.n_neighbors, len(kept) - largest_group))
        self.neighbor_calibrator_ = TailCalibrator().fit(self._neighbor_distance(Z, groups))
        self.risk_calibrator_ = TailCalibrator().fit(self._combined(Xf, groups))
        self.n_reference_ = len(Xf)
        return self

    def calibrate(self, scores: np.ndarray, clients: np.ndarray | None = None) -> RiskModel:
        """Calibrate risk on other reference scores (of :meth:`score_samples`, negated).

        ``fit`` calibrates on its own rows. Training recalibrates on each benign client's
        sustained peak, scored by a model that did not see that client, so a risk of 0.99
        means "beyond the peak of 99% of benign clients" for a new client.

        ``clients`` (one per score) is for a model fitted on the traffic it scores: each of
        those clients is then calibrated without its own peak, so an attacker in the
        warm-up is compared with the others, not capped by its own peak.
        """
        scores = np.asarray(scores, dtype=np.float64)
        self.risk_calibrator_ = TailCalibrator().fit(scores)
        self.leave_out_calibrators_: dict[str, TailCalibrator] = {}
        if clients is not None:
            clients = np.asarray(clients)
            for client in np.unique(clients):
                others = scores[clients != client]
                if len(others) >= 2:
                    self.leave_out_calibrators_[str(client)] = TailCalibrator().fit(others)
        return self

    def __getstate__(self) -> dict:
        """What a model file holds: the fitted state, without the arrays made from it for speed."""
        return {k: v for k, v in self.__dict__.items() if k not in _DERIVED}

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Scikit-learn convention: the lower, the more abnormal."""
        return -self._combined(self._impute(self._validate(X)))

    def risk(self, X: np.ndarray) -> np.ndarray:
        """Share of the calibration reference less anomalous than each row, in 0..1."""
        return self.calibrated(-self.score_samples(X))

    def scores_and_profiles(self, X: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores (:meth:`score_samples`, negated) and where each row puts its client among
        the benign clients: the normal scores the neighbor detector compares. With ``groups``
        (the rows' clients), a client's own reference rows are never its neighbors."""
        Xf = self._impute(self._validate(X))
        Z = self._normal_scores(Xf)
        return self._combined(Xf, groups, Z), Z

    def calibrated(self, scores: np.ndarray, clients: np.ndarray | None = None) -> np.ndarray:
        """Risk of raw scores (of :meth:`score_samples`, negated); with ``clients``, each
        client that was calibrated on is calibrated without its own peak."""
        risk = self.risk_calibrator_.transform(scores)
        leave_out = getattr(self, "leave_out_calibrators_", None)
        if clients is not None and leave_out:
            for i, client in enumerate(clients):
                calibrator = leave_out.get(client)
                if calibrator is not None:
                    risk[i] = calibrator.transform(np.asarray(scores[i : i + 1], dtype=np.float64))[0]
        return risk

    def explain(self, x: np.ndarray, max_reasons: int = 3, max_share: float = 0.05) -> list[Reason]:
        """The features of one row that lie furthest out in the reference's tails."""
        return self.explain_rows(np.atleast_2d(x), max_reasons, max_share)[0]

    def explain_rows(self, X: np.ndarray, max_reasons: int = 3, max_share: float = 0.05) -> list[list[Reason]]:
        """:meth:`explain` for each row of ``X``, the tails looked up once for all of them."""
        raw = np.atleast_2d(X)
        shares, highs = self._tail_share(self._impute(self._validate(raw)))
        shares = np.where(self.evidence_[None, :], shares, np.inf)
        out = []
        for x, share, high in zip(raw, shares, highs):
            order = np.argsort(share)
            out.append([
                Reason(self.feature_names_[j], float(x[j]), float(share[j]), "high" if high[j] else "low")
                for j in order[:max_reasons]
                if share[j] <= max_share and not np.isnan(x[j])
            ])  # fmt: skip
        return out

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

    def _fit_peer_bands(self, Xf: np.ndarray, groups: np.ndarray, is_context: np.ndarray) -> None:
        """Sorted reference values per band of the context feature (one band without one)."""
        context = np.flatnonzero(is_context)
        self.context_column_ = int(context[0]) if len(context) else None
        if self.context_column_ is None:
            self.band_centers_ = np.zeros(1)
            self.band_sorted_, self.band_clients_ = [np.sort(Xf, axis=0)], [self.n_clients_]
            self.band_spread_ = [self.spread_]
            return
        c = Xf[:, self.context_column_]
        self.context_sorted_ = np.sort(c)
        step = CONTEXT_BAND / 2
        self.band_centers_ = np.arange(c.min(), c.max() + step, step)
        self.band_sorted_, self.band_clients_, self.band_spread_ = [], [], []
        peers_needed = min(MIN_PEERS, self.n_clients_)
        for center in self.band_centers_:
            width = CONTEXT_BAND
            while True:
                peers = np.abs(c - center) <= width
                clients = len(np.unique(groups[peers]))
                if clients >= peers_needed:
                    break
                width *= 1.5
            self.band_sorted_.append(np.sort(Xf[peers], axis=0))
            self.band_clients_.append(clients)
            self.band_spread_.append(robust_spread(Xf[peers], fallback=self.spread_))

    def _band_of(self, X: np.ndarray) -> np.ndarray:
        if self.context_column_ is None:
            return np.zeros(len(X), dtype=np.int64)
        centers = self.band_centers_
        step = centers[1] - centers[0] if len(centers) > 1 else 1.0
        return np.clip(np.rint((X[:, self.context_column_] - centers[0]) / step), 0, len(centers) - 1).astype(np.int64)

    def _tails(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Share of peer reference values below and above each value, on the client scale.

        Peers are the reference rows of the row's context band. Beyond their range the
        share keeps shrinking in proportion to the distance, in units of the peers'
        spread, so far-out values still rank. The decay is deliberately slow (harmonic,
        not exponential): the reference says nothing about its own tail, and a small
        baseline must not turn one odd value into overwhelming evidence.
        """
        lower, upper = np.empty_like(X), np.empty_like(X)
        bands = self._band_of(X)
        for band in np.unique(bands):
            rows = np.flatnonzero(bands == band)
            reference, m, spread = self.band_sorted_[band], self.band_clients_[band], self.band_spread_[band]
            n = len(reference)
            values = X[rows]
            keys, query = self._band_keys(band), _column_keys(values)
            start = np.arange(X.shape[1]) * n
            below = np.searchsorted(keys, query, side="left") - start
            equal = np.searchsorted(keys, query, side="right") - start - below
            lower[rows] = ((below + 0.5 * equal) / n * m + 0.5) / (m + 1)
            upper[rows] = ((n - below - 0.5 * equal) / n * m + 0.5) / (m + 1)
            upper[rows] /= 1.0 + np.maximum(values - reference[-1], 0.0) / spread
            lower[rows] /= 1.0 + np.maximum(reference[0] - values, 0.0) / spread
        return lower, upper

    def _band_keys(self, band: int) -> np.ndarray:
        """The band's sorted reference, every column in one sorted array (:func:`_column_keys`),
        so one search places a row's every value; made on first use."""
        cache = self.__dict__.setdefault("_band_keys_cache", {})
        if band not in cache:
            cache[band] = _column_keys(self.band_sorted_[band]).T.ravel()
        return cache[band]

    def _tail_share(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided share of reference values at least as extreme as each value, and whether it is the high side."""
        lower, upper = self._tails(X)
        return np.minimum(lower, upper), upper < lower

    def _normal_scores(self, X: np.ndarray) -> np.ndarray:
        """Each value as the standard-normal quantile of its place among its peers; the
        context itself by its place in the whole reference, so that neighbors are peers."""
        lower, upper = self._tails(X)
        Z = np.where(upper < lower, -norm.ppf(upper), norm.ppf(lower))
        if self.context_column_ is not None:
            everyone = self.context_sorted_
            c = X[:, self.context_column_]
            place = (np.searchsorted(everyone, c, side="left") + np.searchsorted(everyone, c, side="right")) / 2
            Z[:, self.context_column_] = norm.ppf((place + 0.5) / (len(everyone) + 1))
        return Z

    def _tail_evidence(self, X: np.ndarray) -> np.ndarray:
        """Evidence from the two most extreme features together.

        One odd habit (a rare parameter, say) moves a client into the tail of one
        feature; extraction and probing move several at once, so the second-most
        extreme feature counts as much as the first.
        """
        share, _ = self._tail_share(X)
        logs = -np.log(share[:, self.evidence_])
        top_two = np.sort(logs, axis=1)[:, -2:] if logs.shape[1] > 1 else logs
        return top_two.sum(axis=1)

    def _forest_scores(self, X: np.ndarray) -> np.ndarray:
        """The isolation forest's ``score_samples``, all trees at once; its arrays are made on first use."""
        paths = self.__dict__.get("_paths")
        if paths is None:
            paths = self.__dict__["_paths"] = IsolationPaths(self.forest_)
        return paths.score_samples(X)

    def _neighbor_distance(self, Z: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Distance from each normal-score row to its n_neighbors-th nearest reference row of another client."""
        index = NeighborIndex.kept_on(self, self.neighbors_)
        return kth_nearest_distance(Z, index, self.neighbor_k_, groups, self.neighbor_groups_)

    def _combined(self, X: np.ndarray, groups: np.ndarray | None = None, Z: np.ndarray | None = None) -> np.ndarray:
        """Combined evidence, on a -log(1 - percentile) scale that keeps resolution near 1.

        ``groups`` is only given for the reference's own rows, whose neighbors must be other clients.
        """
        def evidence(calibrator: TailCalibrator, scores: np.ndarray) -> np.ndarray:
            return -np.log1p(-np.minimum(calibrator.transform(scores), 1 - 1e-12))

        forest = evidence(self.forest_calibrator_, -self._forest_scores(X))
        tail = evidence(self.tail_calibrator_, self._tail_evidence(X))
        Z = self._normal_scores(X) if Z is None else Z
        neighbors = evidence(self.neighbor_calibrator_, self._neighbor_distance(Z, groups))
        return np.maximum(forest, tail + neighbors)


def _column_keys(values: np.ndarray) -> np.ndarray:
    """Each value of a 2-d array as a complex number: its column as the real part, itself as the
    imaginary. numpy orders complex numbers by real part, then imaginary, so columns sorted
    one after another form one sorted array, and one ``searchsorted`` finds a row's every
    value in its own column (exactly: the imaginary part is the value itself)."""
    keys = np.empty(values.shape, dtype=np.complex128)
    keys.real = np.arange(values.shape[1])[None, :]
    keys.imag = values
    return keys
