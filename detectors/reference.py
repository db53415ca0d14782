"""The benign envelope of one vector space, learned from reference traffic.

Every geometric signal is measured relative to it: distances are in units of the
reference's own spread, "near-duplicate" means closer than benign customers' queries
usually come to their own earlier queries, and coverage is compared with what a benign
client with the same number of queries reaches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import QuantileTransformer

from detectors.neighbors import NeighborIndex, kth_nearest_distance, sample_rows
from detectors.spread import robust_spread

_BOUND = 1e-7  # scikit-learn's BOUNDS_THRESHOLD: inputs this close to a column's range end map to its end
_NORMAL_LOW, _NORMAL_HIGH = float(ndtri(_BOUND - np.spacing(1))), float(ndtri(1 - (_BOUND - np.spacing(1))))  # its clip


def normal_scores(marginals: QuantileTransformer, x: np.ndarray) -> np.ndarray:
    """``marginals.transform(x)`` for a transformer fitted with ``output_distribution="normal"``,
    its normal quantile function applied to all columns at once instead of column by column:
    1,024 columns (a sketched image) took 0.62 s for 256 rows, most of it the per-column call.

    >>> rng = np.random.default_rng(0)
    >>> data = rng.normal(size=(500, 3))
    >>> data[:, 2] = np.round(data[:, 2])  # a column of few values: repeated quantiles
    >>> fitted = QuantileTransformer(n_quantiles=100, output_distribution="normal").fit(data)
    >>> x = np.r_[rng.normal(size=(20, 3)) * 3, [[0.0, 0.0, 0.0]]]  # beyond the range too
    >>> bool(np.array_equal(normal_scores(fitted, x), fitted.transform(x)))
    True
    """
    quantiles, references = marginals.quantiles_, marginals.references_
    uniform = np.empty_like(x, dtype=np.float64)
    for j in range(x.shape[1]):
        column, q = x[:, j], quantiles[:, j]
        # Both directions, averaged, as scikit-learn does: repeated quantiles map to their middle.
        uniform[:, j] = 0.5 * (np.interp(column, q, references) - np.interp(-column, -q[::-1], -references[::-1]))
    uniform[x + _BOUND > quantiles[-1]] = 1.0
    uniform[x - _BOUND < quantiles[0]] = 0.0
    return np.clip(ndtri(uniform, out=uniform), _NORMAL_LOW, _NORMAL_HIGH, out=uniform)


class SpaceReference:
    """Projection, scale, codebook and benign distance quantiles for one vector space.

    Parameters
    ----------
    n_regions : codebook size (k-means clusters) used for coverage.
    n_components : vectors are projected to at most this many principal components,
        which keeps per-client state small.
    near_dup_quantile : share of benign within-client nearest distances that count as
        near-duplicates; the radius is that quantile of the reference.
    ood_quantile : a query's novelty is its distance to the ``n_neighbors``-th nearest
        reference query after whitening (a local Mahalanobis distance, so queries that
        break the correlations of real data stand out even inside its ranges); queries
        more novel than this quantile of the reference's own (leave-one-out) count as
        out-of-distribution.
    n_neighbors, max_neighbors : the k of that distance, and how many reference queries
        (a random sample) are kept to measure it.
    n_kernel_features : random Fourier features of the Gaussian kernel (bandwidth: the
        reference's typical distance) in which a client's window is compared with benign
        traffic as a whole (:meth:`mmd`).
    normal_scores : first map each input dimension to normal scores through its quantiles in
        the reference (numeric features). Real tabular columns are skewed, bounded and
        discrete; on this scale a value that real data rarely takes is far out whatever its
        units, so random and synthetic queries stand out even inside each column's range.

    >>> rng = np.random.default_rng(0)
    >>> ref = SpaceReference(n_regions=8, n_components=4).fit(rng.normal(size=(400, 6)), [i % 20 for i in range(400)])
    >>> ref.transform(rng.normal(size=(3, 6))).shape
    (3, 4)
    """

    def __init__(
        self,
        n_regions: int = 64,
        n_components: int = 64,
        near_dup_quantile: float = 0.02,
        ood_quantile: float = 0.99,
        n_neighbors: int = 5,
        max_neighbors: int = 4096,
        n_kernel_features: int = 128,
        normal_scores: bool = False,
        random_state: int = 0,
    ) -> None:
        self.n_regions = n_regions
        self.n_components = n_components
        self.near_dup_quantile = near_dup_quantile
        self.ood_quantile = ood_quantile
        self.n_neighbors = n_neighbors
        self.max_neighbors = max_neighbors
        self.n_kernel_features = n_kernel_features
        self.normal_scores = normal_scores
        self.random_state = random_state

    def fit(self, vectors: np.ndarray, client_ids: Sequence[str]) -> SpaceReference:
        """Learn the envelope from reference vectors, in arrival order, with their clients."""
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need a 2-d array of at least 2 reference vectors, got shape {x.shape}")
        if len(client_ids) != len(x):
            raise ValueError("client_ids must have one entry per vector")
        self.input_dim_ = x.shape[1]
        self.marginals_ = None
        if self.normal_scores:
            self.marginals_ = QuantileTransformer(
                n_quantiles=min(1000, len(x)), output_distribution="normal", random_state=self.random_state
            ).fit(x)
            self.low_, self.high_ = x.min(axis=0), x.max(axis=0)
            self.spread_ = robust_spread(x)
        z = self._marginal_scores(x)
        n_components = min(self.n_components, z.shape[1], len(z))
        self.pca_ = PCA(n_components=n_components, random_state=self.random_state).fit(z)
        p = self.pca_.transform(z).astype(np.float32)

        centered = p - p.mean(axis=0)
        self.typical_sq_distance_ = float(2.0 * (centered**2).sum(axis=1).mean())
        self.unit_ = float(np.sqrt(self.typical_sq_distance_)) or 1.0

        self._fit_kernel_features(p)

        k = max(2, min(self.n_regions, len(p) // 5))
        self.codebook_ = KMeans(n_clusters=k, n_init=3, random_state=self.random_state).fit(p)
        self.centroids_ = self.codebook_.cluster_centers_.astype(np.float32)
        regions, _ = self._nearest_region(p)

        variance = self.pca_.explained_variance_
        self.whiten_ = (1.0 / np.sqrt(np.maximum(variance, 1e-6 * variance.max()))).astype(np.float32)
        self.neighbors_ = p[sample_rows(len(p), self.max_neighbors, self.random_state)] * self.whiten_
        itself = np.arange(len(self.neighbors_))
        own = kth_nearest_distance(self.neighbors_, self.neighbors_, self.n_neighbors, itself, itself)
        self.ood_radius_ = float(np.quantile(own, self.ood_quantile))

        own_nearest, touched_curve = self._client_histories(p, regions, client_ids)
        positive = own_nearest[own_nearest > self.exact_radius]
        self.near_dup_radius_ = float(np.quantile(positive, self.near_dup_quantile)) if len(positive) else self.unit_ * 0.05
        self.coverage_coef_ = self._fit_coverage_curve(touched_curve)
        return self

    def __getstate__(self) -> dict:
        """What a model file holds: the fitted state, without the search index made from it."""
        return {k: v for k, v in self.__dict__.items() if k != "_neighbor_index"}

    @property
    def n_regions_(self) -> int:
        return len(self.centroids_)

    @property
    def dim_(self) -> int:
        return self.pca_.n_components_

    @property
    def exact_radius(self) -> float:
        """Distances below this are the same query sent again."""
        return 1e-4 * getattr(self, "unit_", 1.0)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Map and project raw vectors into the reference space (float32)."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        return self.pca_.transform(self._marginal_scores(x)).astype(np.float32)

    def _marginal_scores(self, x: np.ndarray) -> np.ndarray:
        """Normal scores; beyond the reference's range (where they stop) the distance past
        its edge, in units of the column's spread, keeps counting."""
        if self.marginals_ is None:
            return x
        beyond = np.maximum(x - self.high_, 0.0) - np.maximum(self.low_ - x, 0.0)
        return normal_scores(self.marginals_, x) + beyond / self.spread_

    def regions(self, projected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codebook region of each projected vector and its distance to that region's centre."""
        return self._nearest_region(projected)

    def novelty(self, projected: np.ndarray) -> np.ndarray:
        """Whitened distance of each projected vector to its ``n_neighbors``-th nearest reference query."""
        index = NeighborIndex.kept_on(self, self.neighbors_)
        return kth_nearest_distance(np.atleast_2d(projected) * self.whiten_, index, self.n_neighbors)

    def mmd(self, window: np.ndarray) -> float:
        """Squared maximum mean discrepancy between a client's projected vectors and benign traffic.

        The distribution-level test of a window (arXiv 2606.05725): a Gaussian kernel in
        random Fourier features, the client's vectors against the mean embedding of every
        reference query, unbiased in the window (its pairs i != j), so a short window is not
        pushed up by its own size. A customer keeps to its own topics (large); a client
        sending inputs from elsewhere is large too; a client whose queries look like all of
        benign traffic at once, a public data set of the domain, is small.

        >>> rng = np.random.default_rng(0)
        >>> ref = SpaceReference(n_regions=8, n_components=4).fit(rng.normal(size=(2000, 4)), [i % 50 for i in range(2000)])
        >>> everyone = ref.transform(rng.normal(size=(200, 4)))
        >>> one_topic = ref.transform(rng.normal(loc=1.5, scale=0.3, size=(200, 4)))
        >>> abs(ref.mmd(everyone)) < 0.01 < ref.mmd(one_topic)
        True
        """
        x = np.atleast_2d(np.asarray(window, dtype=np.float32))
        n = len(x)
        if n < 2:
            return float("nan")
        phi = self._kernel_features(x)
        total = phi.sum(axis=0)
        within = (float(total @ total) - float((phi * phi).sum())) / (n * (n - 1))
        return within - 2.0 * float(total @ self.kernel_mean_) / n + float(self.kernel_mean_ @ self.kernel_mean_)

    def _fit_kernel_features(self, p: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        bandwidth = np.sqrt(self.typical_sq_distance_ / 2.0) or 1.0
        self.kernel_weights_ = (rng.normal(size=(p.shape[1], self.n_kernel_features)) / bandwidth).astype(np.float32)
        self.kernel_phases_ = rng.uniform(0.0, 2.0 * np.pi, self.n_kernel_features).astype(np.float32)
        self.kernel_mean_ = self._kernel_features(p).mean(axis=0)

    def _kernel_features(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(2.0 / self.n_kernel_features) * np.cos(x @ self.kernel_weights_ + self.kernel_phases_)

    def expected_regions(self, n: int | np.ndarray) -> np.ndarray:
        """Regions a benign client with ``n`` queries is expected to touch (power-law fit)."""
        a, b = self.coverage_coef_
        return np.minimum(np.exp(a) * np.power(np.maximum(n, 1), b), self.n_regions_)

    def _nearest_region(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d2 = (p**2).sum(axis=1)[:, None] - 2 * p @ self.centroids_.T + (self.centroids_**2).sum(axis=1)[None, :]
        idx = d2.argmin(axis=1)
        return idx.astype(np.int16), np.sqrt(np.maximum(d2[np.arange(len(p)), idx], 0.0))

    def _client_histories(self, p, regions, client_ids, max_history: int = 200):
        by_client: dict[str, list[int]] = defaultdict(list)
        for i, client in enumerate(client_ids):
            by_client[client].append(i)
        nearest: list[np.ndarray] = []
        curve: list[tuple[int, int]] = []
        for rows in by_client.values():
            vecs = p[rows]
            for j in range(1, len(rows)):
                earlier = vecs[max(0, j - max_history) : j]
                nearest.append(np.sqrt(((earlier - vecs[j]) ** 2).sum(axis=1).min(keepdims=True)))
            seen: set[int] = set()
            for j, region in enumerate(regions[rows], start=1):
                seen.add(int(region))
                curve.append((j, len(seen)))
        return (np.concatenate(nearest) if nearest else np.empty(0)), curve

    @staticmethod
    def _fit_coverage_curve(curve: list[tuple[int, int]]) -> tuple[float, float]:
        if len(curve) < 2:
            return 0.0, 0.5
        n, touched = np.array(curve, dtype=np.float64).T
        b, a = np.polyfit(np.log(n), np.log(touched), 1)
        return float(a), float(max(b, 0.0))
