"""Evidence that accumulates: a per-client e-process over per-event p-values.

A snapshot score ("this client is beyond 99% of benign clients now") cannot become more
certain with time, and with a baseline of a hundred clients it cannot even resolve 99.9%.
Here each event's risk score becomes a conformal p-value among the baseline's *events* of
the benign clients nearest to the client now (its kind: a day of a hundred customers holds
tens of thousands of events, so the p-values resolve far below 1/100), each p-value becomes
a betting factor, and the factors multiply:

    log M_n = log M_{n-1} + w * log e(p_n),  e(p) = kappa * p ** (kappa - 1)

For p-values that are uniform and independent under the null, ``e(p)`` has mean 1, so
does ``e(p) ** w`` at most (Jensen, ``w <= 1``), and M is a test supermartingale: by
Ville's inequality a benign client's M *ever* reaches ``1 / alpha`` with probability at
most ``alpha``, however often it is looked at. The threshold means the same for any
baseline size; it needs no counting of rare baseline clients.

Three things adapt this to clients, whose scores are not independent from event to event
(they are measured over a sliding window):

- a mixture over several ``kappa`` (bold bets for tiny p-values, cautious ones for mild);
- the step weight ``w = 1 / tau``, where ``tau`` is the integrated autocorrelation time of
  log p-values within a benign client (the upper quartile over the baseline's clients,
  measured out of fold): ``tau`` successive events carry about as much information as one
  independent event;
- a floor: evidence never falls below ``1 / restart`` of its start, so a long benign past
  does not hide a client that turns. Each rise from the floor is a fresh test at a
  ``restart`` times higher bar, so over ``n`` events the false-alarm bound is
  ``alpha * (1 + n / restart)``;
- a second process of full bets, one every ``tau`` events from the first event a client
  can be acted on (its 10th): p-values ``tau`` events apart are about independent, so each
  block bet is one observation's worth, placed where the smoothed process spreads it over
  the next ``tau`` events. A client far beyond its kind from its first queries (a key of a
  campaign that sends a few dozen queries each) is then judged on its first observation at
  once instead of on half of one. The e-value is the mean of the two processes' (a mean of
  e-values is one), which costs the smoothed process at most a factor of two.

Beyond the largest score of its kind, a p-value keeps shrinking along an exponential fit
of that kind's upper tail (peaks over threshold), so a client far beyond every benign
event gathers evidence quickly instead of at the reference's resolution.

>>> rng = np.random.default_rng(0)
>>> test = SequentialTest(weight=0.5)
>>> benign, attacker = test.initial(), test.initial()
>>> for p in rng.uniform(size=300):
...     benign = test.update(benign, p)
>>> for _ in range(30):
...     attacker = test.update(attacker, 1e-3)
>>> bool(test.evidence(benign) < 1.0), bool(test.evidence(attacker) > 1000.0)
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import chi2

DEFAULT_KAPPAS = (0.1, 0.3, 0.6)
DEFAULT_RESTART = 1000.0
MAX_LAG = 500  # longest lag over which the autocorrelation of a client's p-values is summed
MIN_EVENTS_FOR_TAU = 100  # clients with fewer events say little about how long evidence echoes
TAU_QUANTILE = 0.75  # the memory of three clients in four: those with longer memory are the false alarms
MIN_TAIL_EVENTS = 10  # a kind with fewer events in its upper tail borrows the scale of all benign events' tail
FIRST_BLOCK_BET = 10  # the block process's first full bet: the first event a client can be acted on (the policy's minimum)
MAX_KIND_SCALES = 65536  # kinds whose tail scale is remembered; the memo starts over when full


def _autocorrelation_time(x: np.ndarray, centre: float | None = None, variance: float | None = None) -> float:
    """1 + 2 * the autocorrelations of ``x`` summed until one falls below 0.05: centred on its
    own mean and scaled by its own variance, unless ``centre`` and ``variance`` say otherwise.

    >>> rng = np.random.default_rng(0)
    >>> round(_autocorrelation_time(rng.normal(size=5000)), 1)
    1.0
    >>> ar = np.zeros(20000)
    >>> for i in range(1, len(ar)):
    ...     ar[i] = 0.9 * ar[i - 1] + rng.normal()
    >>> 14 < _autocorrelation_time(ar) < 20  # 1 + 2 * 0.9 / (1 - 0.9) = 19, less the cut tail
    True
    """
    x = x - (x.mean() if centre is None else centre)
    variance = float(x @ x) / len(x) if variance is None else variance
    if variance <= 0:
        return 1.0
    tau = 1.0
    for lag in range(1, min(MAX_LAG, len(x) - 1) + 1):
        rho = float(x[:-lag] @ x[lag:]) / (len(x) - lag) / variance
        if rho < 0.05:
            break
        tau += 2.0 * rho
    return tau


def _between_clients(sequences: Sequence[np.ndarray]) -> tuple[float, float]:
    """How much of the variation of log p is each client's own persistent level, which no
    autocorrelation time centred on each client sees: the share of the variance of log p
    that lies between clients' means, and the :data:`TAU_QUANTILE` quantile of the
    autocorrelation time centred on all clients' mean instead (each client's long-run
    offset then counts as memory).

    >>> rng = np.random.default_rng(0)
    >>> offsets = [rng.uniform(size=400) + level for level in rng.normal(scale=2.0, size=20)]  # habits, no memory
    >>> share, pooled = _between_clients(offsets)
    >>> round(_autocorrelation_time(offsets[0]), 1), share > 0.9, pooled > 100
    (1.0, True, True)
    """
    everything = np.concatenate(sequences)
    centre, variance = float(everything.mean()), float(everything.var())
    if variance <= 0:
        return 0.0, 1.0
    between = float(sum(len(x) * (x.mean() - centre) ** 2 for x in sequences)) / len(everything) / variance
    taus = [_autocorrelation_time(x, centre, variance) for x in sequences]
    return between, float(np.quantile(taus, TAU_QUANTILE))


def _log_mean_exp(log_values: np.ndarray) -> float:
    top = float(log_values.max())
    return min(top + float(np.log(np.mean(np.exp(log_values - top)))), 700.0)


def _tail_excesses(scores: np.ndarray, tail_fraction: float) -> np.ndarray:
    """How far the scores above the ``1 - tail_fraction`` quantile lie beyond it."""
    threshold = np.quantile(scores, 1.0 - tail_fraction)
    return scores[scores > threshold] - threshold


def _mean_excess(sorted_scores: np.ndarray, tail_fraction: float) -> float:
    excess = _tail_excesses(sorted_scores, tail_fraction)
    if len(excess) and excess.mean() > 0:
        return float(excess.mean())
    return float(np.ptp(sorted_scores)) or 1.0


def _tail_scale_upper(scores: np.ndarray, tail_fraction: float) -> float | None:
    """The upper 95% confidence bound of the exponential scale of ``scores``' upper tail
    (their excesses over the ``1 - tail_fraction`` quantile), or None when fewer than
    :data:`MIN_TAIL_EVENTS` lie in it. The sum of n exponential excesses of scale s is
    s/2 * chi2(2n), hence the bound: a kind with a short tail is not taken to end sooner
    than its few events show.

    >>> rng = np.random.default_rng(0)
    >>> round(_tail_scale_upper(rng.exponential(2.0, size=20000), 0.1), 1)  # 2000 excesses of scale 2
    2.1
    >>> _tail_scale_upper(rng.exponential(2.0, size=50), 0.1) is None
    True
    """
    excess = _tail_excesses(scores, tail_fraction)
    if len(excess) < MIN_TAIL_EVENTS or excess.sum() <= 0:
        return None
    return float(2.0 * excess.sum() / chi2.ppf(0.05, 2 * len(excess)))


class SequentialTest:
    """A mixture of floored power e-processes; the per-client state is a small array of logs.

    Parameters in ``__init__``; the state of one client (``initial()``, then ``update``)
    is ``2 * len(kappas)`` floats (the smoothed and the block process), stored with the client. :meth:`fit` learns the p-value
    reference and the step weight from benign clients' scores.
    """

    def __init__(
        self, kappas: Sequence[float] = DEFAULT_KAPPAS, weight: float = 1.0, restart: float = DEFAULT_RESTART
    ) -> None:
        if not all(0.0 < k < 1.0 for k in kappas) or not 0.0 < weight <= 1.0 or restart < 1.0:
            raise ValueError("need 0 < kappa < 1, 0 < weight <= 1 and restart >= 1")
        self.kappas = tuple(kappas)
        self.weight = weight
        self.restart = restart

    @property
    def block(self) -> int:
        """Events between two full bets of the block process: the autocorrelation time."""
        return max(1, int(round(1.0 / self.weight)))

    def initial(self) -> np.ndarray:
        """The logs of both processes' components: the smoothed bets, then the block bets."""
        return np.zeros(2 * len(self.kappas))

    def steps(self, p_values: np.ndarray) -> np.ndarray:
        """log e(p) of each p-value (rows) under each kappa (columns): a full bet, unweighted."""
        k = np.asarray(self.kappas)[None, :]
        p = np.clip(np.asarray(p_values, dtype=np.float64), 1e-300, 1.0)[:, None]
        return np.log(k) + (k - 1.0) * np.log(p)

    def update(self, log_m: np.ndarray | Sequence[float], p_value: float, events_seen: int | None = None) -> np.ndarray:
        """The state after one more p-value, the client's ``events_seen``-th (without it, only
        the smoothed process bets); an empty state (never scored) is the start, and a state of
        the smoothed process alone (saved before the block process: a log per kappa, or one log
        for all of them) starts its block bets now.

        >>> test = SequentialTest(kappas=(0.1, 0.5))
        >>> test.update([-1.0], 1.0).round(2).tolist(), test.update([-1.0, -2.0], 1.0).round(2).tolist()
        ([-3.3, -1.69, 0.0, 0.0], [-3.3, -2.69, 0.0, 0.0])
        """
        k = len(self.kappas)
        log_m = np.asarray(log_m, dtype=np.float64)
        if len(log_m) == 0:
            log_m = self.initial()
        elif len(log_m) < 2 * k:
            smoothed = np.broadcast_to(log_m, (k,)) if len(log_m) == 1 else log_m[:k]
            log_m = np.concatenate([smoothed, np.zeros(k)])
        full = self.steps(np.array([p_value]))[0]
        step = np.concatenate([self.weight * full, full if self._block_bet(events_seen) else np.zeros_like(full)])
        return np.maximum(log_m + step, -np.log(self.restart))

    def _block_bet(self, events_seen: int | None) -> bool:
        return events_seen is not None and events_seen >= FIRST_BLOCK_BET and (events_seen - FIRST_BLOCK_BET) % self.block == 0

    def evidence(self, log_m: np.ndarray) -> float:
        """The e-value: the mean of the components' e-values (the mean of the two processes' mixtures)."""
        return float(np.exp(_log_mean_exp(np.asarray(log_m))))

    def paths(self, p_values: np.ndarray) -> np.ndarray:
        """The e-value after each p-value of one client's sequence, from its first event."""
        log_m = self.initial()
        out = np.empty(len(p_values))
        for i, p in enumerate(p_values):
            log_m = self.update(log_m, p, events_seen=i + 1)
            out[i] = self.evidence(log_m)
        return out

    def fit(
        self,
        scores: np.ndarray,
        profiles: np.ndarray,
        clients: Sequence[str] | np.ndarray,
        folds: np.ndarray | None = None,
    ) -> SequentialTest:
        """Learn the p-value reference and the step weight from benign events in arrival order.

        ``scores`` are the risk model's raw scores of the baseline's events, each measured by
        a model that did not see its client, ``profiles`` where each event puts its client
        (the risk model's normal scores). ``folds`` (one per event) keep each client's own
        fold out of the kinds its sequence is tested against. The deployed reference holds
        every baseline event.
        """
        scores, profiles, clients = np.asarray(scores, np.float64), np.asarray(profiles, np.float32), np.asarray(clients)
        self.reference_ = KindPValues().fit(scores, profiles, clients)
        p = np.empty(len(scores))
        if folds is None:
            p[:] = self.reference_.p_values(scores, profiles)
        else:
            fold_of_client = np.array([folds[clients == c][0] for c in self.reference_.clients_])
            for k in np.unique(folds):
                inside = np.flatnonzero(folds == k)
                for chunk in np.array_split(inside, max(1, len(inside) // 2048)):
                    excluded = np.broadcast_to(fold_of_client == k, (len(chunk), len(fold_of_client)))
                    p[chunk] = self.reference_.p_values(scores[chunk], profiles[chunk], excluded)
        order = np.argsort(clients, kind="stable")
        cuts = np.flatnonzero(clients[order][1:] != clients[order][:-1]) + 1
        self._fit_weight([p[rows] for rows in np.split(order, cuts)])
        return self

    def p_values(self, scores: np.ndarray, profiles: np.ndarray, clients: Sequence[str] | None = None) -> np.ndarray:
        """P-values among each row's nearest baseline clients; with ``clients``, a row's own
        client is never among them (for a model fitted on the traffic it scores)."""
        excluded = None
        if clients is not None:
            excluded = np.asarray(clients)[:, None] == self.reference_.clients_[None, :]
        return self.reference_.p_values(scores, profiles, excluded)

    def _fit_weight(self, p_values_by_client: Sequence[np.ndarray]) -> None:
        """weight = 1 / the integrated autocorrelation time of log p within a client.

        Each client's sequence is centred on its own mean, so that what is measured is how
        long one moment's evidence echoes in the next ones, not how clients differ. Its
        autocorrelation is summed over lags until it falls below 0.05 (or to
        :data:`MAX_LAG`). Clients differ: the :data:`TAU_QUANTILE` quantile over clients with
        at least :data:`MIN_EVENTS_FOR_TAU` events (in a baseline without such clients, its
        longest) is used, since a client whose evidence echoes longer than assumed is a false
        alarm waiting to happen (with the median, 2 of 180 held-out benign numeric customers
        were throttled). A pooled estimate is no
        better: it follows the one or two clients whose scores swing the most (64 and 168
        on two baselines of a hundred clients).
        """
        sequences = [np.log(np.asarray(s, dtype=np.float64)) for s in p_values_by_client if len(s) >= 2]
        if not sequences:
            self.tau_, self.weight = 1.0, 1.0
            self.between_clients_share_, self.tau_across_clients_ = 0.0, 1.0
            return
        long_enough = min(MIN_EVENTS_FOR_TAU, max(len(x) for x in sequences))  # a small baseline: its longest clients
        used = [x for x in sequences if len(x) >= long_enough]
        self.tau_ = float(np.quantile([_autocorrelation_time(x) for x in used], TAU_QUANTILE))
        self.weight = 1.0 / self.tau_
        # Not used to bet: a record of how far the weight is from a guarantee on this baseline.
        self.between_clients_share_, self.tau_across_clients_ = _between_clients(used)


class KindPValues:
    """Conformal p-values of a score among the events of the nearest benign clients (Mondrian by kind).

    Benign clients come in kinds that are persistently unusual in their own way (an
    evaluation harness repeats templates at temperature 0, a batch job resends its
    documents): pooled with everyone, such a client's every event looks extreme, and
    evidence would pile up against a customer. Here each score is compared with the events
    of the ``n_clients`` baseline clients whose snapshots lie nearest to the client's
    profile now, so a customer is compared with its own kind, and an attacker, far from
    every kind, still stands out among its nearest ones. Beyond the kind's largest score
    the p-value falls along the exponential tail of the kind's own events (the upper
    confidence bound of its scale): kinds differ in how far their scores spread, and the
    tail of all benign events pooled is set by the most spread-out kinds, which would leave
    a client far beyond its kind barely less likely than the kind's top event.

    >>> rng = np.random.default_rng(0)
    >>> kinds = np.repeat([0.0, 5.0], 500)  # two kinds of client; the second scores high
    >>> clients = np.repeat(np.arange(10), 100)
    >>> pv = KindPValues(n_clients=3).fit(kinds + rng.normal(size=1000), kinds[:, None], clients)
    >>> [f"{p:.2g}" for p in pv.p_values(np.array([5.0, 5.0, 12.0]), np.array([[0.0], [5.0], [5.0]]))]
    ['0.00013', '0.49', '8.6e-07']
    """

    def __init__(self, n_clients: int = 5, max_profiles_per_client: int = 64, tail_fraction: float = 0.1) -> None:
        self.n_clients = n_clients
        self.max_profiles_per_client = max_profiles_per_client
        self.tail_fraction = tail_fraction

    def fit(self, scores: np.ndarray, profiles: np.ndarray, clients: np.ndarray) -> KindPValues:
        scores, profiles, clients = np.asarray(scores, np.float64), np.asarray(profiles, np.float32), np.asarray(clients)
        self.clients_, codes = np.unique(clients, return_inverse=True)
        if len(self.clients_) < 2:
            raise ValueError("need the events of at least 2 clients")
        self.sorted_ = [np.sort(scores[codes == c]) for c in range(len(self.clients_))]
        keep = []
        for c in range(len(self.clients_)):
            rows = np.flatnonzero(codes == c)
            step = max(1, int(np.ceil(len(rows) / self.max_profiles_per_client)))
            keep.append(rows[::step])
        keep = np.concatenate(keep)
        self.profiles_, self.profile_client_ = profiles[keep], codes[keep]
        self.starts_ = np.flatnonzero(np.r_[True, self.profile_client_[1:] != self.profile_client_[:-1]])
        self.tail_scale_ = _mean_excess(np.sort(scores), self.tail_fraction)
        self._kind_scales: dict[bytes, float] = {}
        return self

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_kind_scales"}  # a memo, not learned state

    def _kind_scale(self, kind: np.ndarray) -> float:
        """The tail scale of one kind (its clients' codes, sorted), remembered."""
        memo = self.__dict__.setdefault("_kind_scales", {})
        key = kind.tobytes()
        if key not in memo:
            if len(memo) >= MAX_KIND_SCALES:
                memo.clear()
            upper = _tail_scale_upper(np.concatenate([self.sorted_[c] for c in kind]), self.tail_fraction)
            memo[key] = self.tail_scale_ if upper is None else upper
        return memo[key]

    def kinds(self, profiles: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
        """The codes of each profile's ``n_clients`` nearest clients; ``excluded`` (queries x clients) masks some out."""
        q = np.asarray(profiles, np.float32)
        ref = self.profiles_
        d2 = (q**2).sum(1)[:, None] - 2.0 * q @ ref.T + (ref**2).sum(1)[None, :]
        per_client = np.minimum.reduceat(d2, self.starts_, axis=1)
        if excluded is not None:
            per_client = np.where(excluded, np.inf, per_client)
        m = min(self.n_clients, per_client.shape[1])
        return np.argpartition(per_client, m - 1, axis=1)[:, :m]

    def p_values(self, scores: np.ndarray, profiles: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
        scores = np.asarray(scores, np.float64)
        kinds = self.kinds(profiles, excluded)
        at_least = np.zeros(len(scores))
        total = np.zeros(len(scores))
        top = np.full(len(scores), -np.inf)
        for c in np.unique(kinds):
            rows = np.flatnonzero((kinds == c).any(axis=1))
            ref = self.sorted_[c]
            at_least[rows] += len(ref) - np.searchsorted(ref, scores[rows], side="left")
            total[rows] += len(ref)
            top[rows] = np.maximum(top[rows], ref[-1])
        distinct, which = np.unique(np.sort(kinds, axis=1), axis=0, return_inverse=True)
        scale = np.array([self._kind_scale(kind) for kind in distinct])[which.ravel()]
        beyond = np.maximum(scores - top, 0.0) / scale
        return (1.0 + at_least) / (total + 1.0) * np.exp(-beyond)
