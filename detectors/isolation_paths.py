"""An isolation forest's scores for a batch of rows, as array operations over all trees at once.

scikit-learn's ``IsolationForest.score_samples`` walks its trees one by one, each through a
joblib call; for the batches of a few hundred events that stream scoring sends, that
per-tree overhead is most of its cost. :class:`IsolationPaths` copies a fitted forest's
trees into padded arrays (one row per tree) and moves every (row, tree) pair one level
down per step, so a batch costs a tree's depth of numpy operations. The scores are
scikit-learn's own: the same float32 view of the input, the same comparisons, the same
path lengths, added up in the same order: the same floats to the bit.

>>> from sklearn.ensemble import IsolationForest
>>> X = np.random.default_rng(0).normal(size=(500, 4))
>>> forest = IsolationForest(n_estimators=20, random_state=0).fit(X)
>>> bool(np.array_equal(IsolationPaths(forest).score_samples(X), forest.score_samples(X)))
True
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length


class IsolationPaths:
    """The trees of a fitted :class:`~sklearn.ensemble.IsolationForest` as arrays.

    Learned state: ``feature_``, ``threshold_``, ``left_``, ``right_`` and ``leaf_length_``
    (trees x nodes, padded; a leaf's children are itself, so a path that has arrived stays),
    ``depth_`` (the deepest tree) and ``denominator_`` (the normaliser of the mean path length).
    """

    def __init__(self, forest: IsolationForest) -> None:
        n_features = forest.n_features_in_
        if any(len(features) != n_features for features in forest.estimators_features_):
            raise ValueError("IsolationPaths needs a forest whose trees see every feature (max_features=1.0)")
        trees = [estimator.tree_ for estimator in forest.estimators_]
        width = max(tree.node_count for tree in trees)
        shape = (len(trees), width)
        self.feature_ = np.zeros(shape, dtype=np.intp)
        self.threshold_ = np.zeros(shape, dtype=np.float64)
        self.left_ = np.tile(np.arange(width, dtype=np.intp), (len(trees), 1))
        self.right_ = self.left_.copy()
        self.leaf_length_ = np.zeros(shape, dtype=np.float64)
        for t, tree in enumerate(trees):
            n = tree.node_count
            inner = tree.children_left[:n] != -1
            self.feature_[t, :n] = np.where(inner, tree.feature[:n], 0)
            self.threshold_[t, :n] = tree.threshold[:n]
            self.left_[t, :n] = np.where(inner, tree.children_left[:n], np.arange(n))
            self.right_[t, :n] = np.where(inner, tree.children_right[:n], np.arange(n))
            self.leaf_length_[t, :n] = forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t] - 1.0
        self.depth_ = max(tree.max_depth for tree in trees)
        self.denominator_ = len(trees) * float(_average_path_length([forest._max_samples])[0])
        self.n_features_in_ = n_features
        offset = (np.arange(len(trees), dtype=np.intp) * width)[:, None]
        self._feature, self._threshold = self.feature_.ravel(), self.threshold_.ravel()
        self._left, self._right = (self.left_ + offset).ravel(), (self.right_ + offset).ravel()
        self._leaf_length = self.leaf_length_.ravel()

    def score_samples(self, X: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """``IsolationForest.score_samples`` of the rows of ``X`` (no missing values), ``chunk`` rows at a time."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected rows of {self.n_features_in_} features, got shape {X.shape}")
        if self.denominator_ == 0:  # trees of one sample: scikit-learn's path ratio is then 1
            return np.full(len(X), -0.5)
        depths = np.concatenate([self._path_lengths(X[start : start + chunk]) for start in range(0, len(X), chunk)] or [np.empty(0)])
        return -(2.0 ** (-depths / self.denominator_))

    def _path_lengths(self, X: np.ndarray) -> np.ndarray:
        """Each row's path length summed over the trees."""
        n_trees, width = self.feature_.shape
        # Nodes numbered across trees (tree t's node j is t * width + j), values across rows.
        node = np.broadcast_to(np.arange(n_trees, dtype=np.intp) * width, (len(X), n_trees)).copy()
        row_start = (np.arange(len(X), dtype=np.intp) * X.shape[1])[:, None]
        values = X.astype(np.float64).ravel()
        for _ in range(self.depth_):
            value = values.take(row_start + self._feature.take(node))
            node = np.where(value <= self._threshold.take(node), self._left.take(node), self._right.take(node))
        depths = np.zeros(len(X))
        for per_tree in self._leaf_length.take(node).T:  # tree after tree, as scikit-learn adds them: the same sums to the bit
            depths += per_tree
        return depths
