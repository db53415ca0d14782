"""Campaigns across keys: clients that one operator runs together, scored as one client.

Attackers rotate keys and addresses so that each key stays small and under the rate
limits. :class:`CampaignTracker` groups clients into candidate campaigns by what ties
them, in four dimensions:

- network: the same /24 (IPv4) or /48 (IPv6), or the same ``asn``;
- user agent: the same ``user_agent`` string;
- key creation: ``key_created`` in the same ``key_span_s`` bucket;
- coverage: the members' codebook regions overlap less than strangers' would, while their
  union covers far more than each member does.

Every tie is weighed against the population the tracker has seen, not against a fixed
count. Two facets of different dimensions (a /24 and a user agent, say) tie the clients
that share both when more clients share both than independence explains. One facet
alone (a /24, /48 or key-creation bucket) ties its clients when it is far larger than
the facets of its dimension usually are (so where corporate NATs are common, a big /24
is not), or when its clients' coverage is complementary. Each test is a Poisson tail
against ``alpha``. A tie that may hold clients by chance admits only the clients that a
second tie covers too: a pair of facets that one client or more is expected to share by
chance (a hosting ASN and a popular SDK, say), a pair without a network (an ISP and a browser
version go together in one country's traffic far more than independence says), or a
key-creation bucket (other customers sign up in the same hour). Only a network holds all its
clients by being one.

A campaign keeps a merged :class:`ClientState` that learns every member's events from
the moment it joins, as if the campaign were one client, so the same features and risk
model score it (:meth:`CampaignTracker.view`). Features that merging many people
distorts by itself are left out of that score (:data:`MERGE_ARTIFACTS`), and so is the
breadth of the union (:data:`BREADTH`) unless the group has evidence from at least two
dimensions, coverage included: a crowd behind one carrier NAT covers a lot together too.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

import msgspec
import numpy as np
from scipy.special import pdtr, pdtrc  # Poisson lower tail P(X <= k) and upper tail P(X > k)

from detectors.client_state import ClientState
from detectors.features import FEATURE_NAMES, extract_features
from detectors.reference import SpaceReference
from schemas import AccessEvent, to_epoch

# Facet kinds and the dimension each belongs to; a tie of two facets needs two dimensions.
DIMENSION = {"net": "network", "asn": "network", "ua": "user agent", "born": "key creation time"}
COVERAGE = "complementary coverage"  # the fourth dimension, from queries rather than metadata
SINGLE_KINDS = ("net", "born")  # fine enough that one facet alone may tie its clients
MAX_FACETS_PER_KIND = 4  # addresses, agents... remembered per client
MAX_TIES = 32  # signatures remembered per campaign (for explanation only)
MAX_LINKS = 8  # ties remembered per client that cannot admit it alone
COMPLEMENTARY_OVERLAP = 0.5  # complementary members overlap at most this share of strangers' overlap
DISPERSION_SAMPLE = 48  # recently active clients whose pairwise overlaps calibrate the overlap test

# Features of a merged state that measure how many people were merged rather than how
# they behave: superposed request streams look fast and irregular;
# many people's queries lie close to one another's and mix distances and edits from
# several clients.
MERGE_ARTIFACTS = frozenset({
    "rate_per_min", "gap_cv", "nearest_distance", "nearest_cv", "near_dup_rate", "near_dup_count",
    "exact_dup_rate", "edit_distance", "prada_w",
})  # fmt: skip
# Breadth of the union: evidence only for a group tied in two dimensions or more, since
# strangers' union is broad too.
BREADTH = frozenset({"coverage_ratio", "region_entropy", "diversity"})


@dataclass(frozen=True)
class Coverage:
    """How a group's codebook regions overlap, against strangers drawn from the population.

    ``overlap`` counts pairs of members touching the same region; ``expected_overlap`` is
    that count for strangers who touch as many regions each, drawn by region popularity.
    ``p_value`` is the chance of an overlap this low among strangers (Poisson, in units of
    the population's overlap dispersion). ``space`` and ``events`` (the members' queries
    in it) are filled in by the tracker.
    """

    members: int
    union: int
    mean_member: float
    overlap: float
    expected_overlap: float
    p_value: float
    space: str = ""
    events: int = 0

    def complementary(self, alpha: float) -> bool:
        """Union far beyond each member, overlap well below (and significantly below) strangers'."""
        return (
            self.union >= 2 * self.mean_member
            and self.overlap <= COMPLEMENTARY_OVERLAP * self.expected_overlap
            and self.p_value <= alpha
        )


@dataclass
class Campaign:
    """A candidate campaign: its members, what tied them, and its merged state."""

    campaign_id: str
    state: ClientState
    members: set[str] = field(default_factory=set)
    ties: set[str] = field(default_factory=set)  # e.g. "net:203.0.113.0/24 & ua:scraper/1.0"
    # member -> the logs of its own e-process's components (one per bet of the mixture)
    evidence: dict[str, list[float]] = field(default_factory=dict)

    def log_evidence(self) -> float:
        """The campaign's evidence: its members' e-processes multiplied bet by bet, then mixed.

        Different customers behind one NAT are independent under the null, and a product of
        independent e-values is an e-value: benign members, whose evidence decays, keep it
        small, while keys that are each only mildly unusual multiply into certainty. The
        mixture over bets is taken once, over the products, not per member: keys of one
        operator behave alike, so one bet fits them all, and mixing per member would pay
        the mixture's cost (up to a factor of the number of bets) once per key.
        """
        if not self.evidence:
            return 0.0
        width = max(len(v) for v in self.evidence.values())
        log_m = np.sum([_widened(v, width) for v in self.evidence.values()], axis=0)
        top = float(np.max(log_m))
        return top + float(np.log(np.mean(np.exp(log_m - top))))

    def dimensions(self) -> list[str]:
        """The dimensions that tied the members, in a fixed order."""
        kinds = {part.split(":", 1)[0] for tie in self.ties for part in tie.split(" & ")}
        names = {DIMENSION.get(kind, COVERAGE) for kind in kinds}
        return [name for name in (*dict.fromkeys(DIMENSION.values()), COVERAGE) if name in names]


@dataclass(frozen=True)
class CampaignView:
    """A campaign as the risk model sees it after one member event."""

    campaign_id: str
    row: np.ndarray  # feature row of the merged state, merge artifacts set to NaN
    events_seen: int  # member events the merged state has learned
    summary: str  # "14 keys tied by network, user agent; union coverage 5.2x benign, overlap 0.31x strangers'"
    plain_row: np.ndarray | None = None  # the row without the union's breadth, as benign groups were measured in training


@dataclass
class _Client:
    facets: set[str] = field(default_factory=set)
    regions: dict[str, int] = field(default_factory=dict)  # space -> bit mask of codebook regions
    queries: dict[str, int] = field(default_factory=dict)  # space -> events with a region
    links: set[str] = field(default_factory=set)  # ties that cover the client but may hold clients by chance
    last_ts: float = 0.0
    campaign: str | None = None
    seen: tuple[str | None, int | None, str | None, str | None] | None = None  # (ip, asn, agent, key_created) last read


def network_of(ip: str | None) -> str | None:
    """The /24 of an IPv4 address or the /48 of an IPv6 address; None if not an address.

    >>> network_of("203.0.113.7"), network_of("2001:db8:1:2::5")
    ('203.0.113.0/24', '2001:db8:1::/48')
    """
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def facets_of(event: AccessEvent, key_span_s: float) -> set[str]:
    """The ``kind:value`` facets an event reveals about its client."""
    facets = set()
    if (net := network_of(event.ip)) is not None:
        facets.add(f"net:{net}")
    if event.asn is not None:
        facets.add(f"asn:{event.asn}")
    if event.user_agent:
        facets.add(f"ua:{event.user_agent}")
    if event.key_created:
        try:
            facets.add(f"born:{int(to_epoch(event.key_created) // key_span_s)}")
        except ValueError:
            pass  # an unparseable creation time reveals nothing
    return facets


def pair_signature(a: str, b: str) -> str:
    """The one name of the tie of two facets, whichever of them a client revealed last: a tie
    that may hold clients by chance admits a client only when a second, different tie covers it.

    >>> pair_signature("ua:sdk/1.0", "asn:64500") == pair_signature("asn:64500", "ua:sdk/1.0")
    True
    """
    return " & ".join(sorted((a, b)))


def _kind(facet: str) -> str:
    return facet.split(":", 1)[0]


def _bits(mask: int, width: int) -> np.ndarray:
    """The first ``width`` bits of a bit mask as a boolean array."""
    packed = np.frombuffer(mask.to_bytes((width + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(packed, bitorder="little")[:width].astype(bool)


def overlap_test(members: np.ndarray, population_counts: np.ndarray, population: int, dispersion: float = 1.0) -> Coverage:
    """Compare a group's region overlap with that of strangers from the rest of the population.

    ``members`` is a boolean (member x region) matrix; ``population_counts`` how many of
    the other ``population`` clients touched each region. ``dispersion`` is how clumped
    strangers' overlaps are (variance over mean of a pair's shared regions: people who
    share a topic share several regions at once); the Poisson test counts in its units.

    >>> disjoint = np.eye(8, 16, dtype=bool) | np.eye(8, 16, k=8, dtype=bool)
    >>> cov = overlap_test(disjoint, np.full(16, 25), 100)
    >>> cov.union, cov.overlap, round(cov.expected_overlap, 1), cov.complementary(0.01)
    (16, 0.0, 8.2, True)
    """
    sizes = members.sum(axis=1).astype(np.float64)
    touched = members.sum(axis=0).astype(np.float64)
    popularity = (population_counts + 0.5) / (population + 1)
    stranger_size = max(float(population_counts.sum()) / max(population, 1), 1.0)
    q = 1.0 - (1.0 - popularity[None, :]) ** (sizes[:, None] / stranger_size)
    expected = float(((q.sum(axis=0) ** 2 - (q**2).sum(axis=0)) / 2).sum())
    observed = float((touched * (touched - 1) / 2).sum())
    return Coverage(
        members=len(sizes),
        union=int(np.count_nonzero(touched)),
        mean_member=float(sizes.mean()),
        overlap=observed,
        expected_overlap=expected,
        p_value=float(pdtr(observed / dispersion, expected / dispersion)),
    )


def union_coverage(coverage: Coverage, references: Mapping[str, SpaceReference]) -> float:
    """Regions the members touched together, over those a benign client with as many queries touches.

    Counted over the members' whole tracked history, as the reference's coverage curve is,
    since a slow campaign's keys are seldom active in the same window.
    """
    ref = references.get(coverage.space)
    return float(coverage.union / ref.expected_regions(coverage.events)) if ref is not None else np.nan


def campaign_row(
    state: ClientState, references: Mapping[str, SpaceReference], coverage: Coverage | None, breadth: bool
) -> np.ndarray:
    """The merged state's feature row, without what merging alone distorts.

    With ``breadth`` the union's breadth counts, and coverage is the members' union's
    (when known); without, breadth features are unknown.
    """
    return _masked(extract_features(state, references), references, coverage, breadth)


def _masked(row: np.ndarray, references: Mapping[str, SpaceReference], coverage: Coverage | None, breadth: bool) -> np.ndarray:
    row = row.copy()
    masked = MERGE_ARTIFACTS if breadth else MERGE_ARTIFACTS | BREADTH
    row[[FEATURE_NAMES.index(name) for name in masked]] = np.nan
    if breadth and coverage is not None:
        row[FEATURE_NAMES.index("coverage_ratio")] = union_coverage(coverage, references)
    return row


class CampaignTracker:
    """Groups clients into candidate campaigns, event by event (River style ``learn_one``).

    Parameters
    ----------
    window : size of each campaign's merged state windows (use the model's window).
    min_members : fewest clients a tie needs.
    alpha : significance of every tie (Poisson tail against the observed population).
    key_span_s : keys created in the same bucket of this many seconds share a facet.
    idle_s : clients with no event for this long are forgotten.
    max_clients : most clients remembered; the least recently active go first.
    max_group : largest single-facet group whose coverage is tested.
    min_population : fewest other clients with regions before coverage is compared.

    >>> tracker = CampaignTracker(min_members=3)
    >>> crowd = [AccessEvent(ts=1795428000 + i, client_id=f"user{i}", ip=f"10.{i}.0.9", user_agent=f"app/{i % 7}")
    ...          for i in range(60)]
    >>> ring = [AccessEvent(ts=1795428100 + i, client_id=f"bot{i}", ip=f"203.0.113.{i + 2}", user_agent="scraper/0.1")
    ...         for i in range(5)]
    >>> [tracker.learn_one(event) for event in crowd + ring][-5:]
    [None, None, None, 'camp-f2b198b9', 'camp-f2b198b9']
    >>> campaign = tracker.campaigns["camp-f2b198b9"]
    >>> sorted(campaign.members), campaign.dimensions()
    (['bot0', 'bot1', 'bot2', 'bot3', 'bot4'], ['network', 'user agent'])
    >>> CampaignTracker.from_bytes(tracker.to_bytes()).campaign_of("bot0")
    'camp-f2b198b9'
    """

    def __init__(
        self,
        window: int = 200,
        min_members: int = 3,
        alpha: float = 1e-4,
        key_span_s: float = 3600.0,
        idle_s: float = 7 * 86400.0,
        max_clients: int = 200_000,
        max_group: int = 500,
        min_population: int = 20,
    ) -> None:
        if min_members < 2:
            raise ValueError("a campaign needs min_members >= 2")
        self.window = window
        self.min_members = min_members
        self.alpha = alpha
        self.key_span_s = key_span_s
        self.idle_s = idle_s
        self.max_clients = max_clients
        self.max_group = max_group
        self.min_population = min_population
        self.campaigns: dict[str, Campaign] = {}
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # least recently active first
        self._index: dict[str, set[str]] = {}  # facet -> clients
        self._pairs: dict[str, int] = {}  # kind -> sum over facets of n(n - 1)
        self._incidence: dict[str, int] = {}  # kind -> sum over facets of n
        self._region_clients: dict[str, np.ndarray] = {}  # space -> clients touching each region
        self._space_clients: dict[str, int] = {}  # space -> clients with any region in it

    # ------------------------------------------------------------------ learning

    def learn_one(
        self,
        event: AccessEvent,
        region: int | None = None,
        *,
        space: str | None = None,
        vector: np.ndarray | None = None,
        novelty: float = 0.0,
    ) -> str | None:
        """Learn one event (with its codebook region, if any); return the client's campaign id."""
        self._expire(event.ts)
        client = self._touch(event.client_id, event.ts)
        self._learn_facets(event, client)
        if region is not None:
            space = space or ""
            client.queries[space] = client.queries.get(space, 0) + 1
            self._learn_region(client, space, int(region))
        if client.campaign is None:
            return None
        campaign = self.campaigns[client.campaign]
        campaign.state.learn_one(event, space, vector, 0 if region is None else int(region), novelty)
        return campaign.campaign_id

    def campaign_of(self, client_id: str) -> str | None:
        """The id of the client's campaign, or None."""
        client = self._clients.get(client_id)
        return client.campaign if client else None

    def __len__(self) -> int:
        """How many clients are remembered."""
        return len(self._clients)

    def _touch(self, client_id: str, ts: float) -> _Client:
        client = self._clients.get(client_id)
        if client is None:
            client = self._clients[client_id] = _Client()
            while len(self._clients) > self.max_clients:
                self._forget(next(iter(self._clients)))
        else:
            self._clients.move_to_end(client_id)
        client.last_ts = max(client.last_ts, ts)
        return client

    def _expire(self, now: float) -> None:
        while self._clients:
            oldest, client = next(iter(self._clients.items()))
            if client.last_ts >= now - self.idle_s:
                return
            self._forget(oldest)

    def _forget(self, client_id: str) -> None:
        client = self._clients.pop(client_id)
        for facet in client.facets:
            self._unindex(facet, client_id)
        for space, mask in client.regions.items():
            self._region_clients[space][_bits(mask, len(self._region_clients[space]))] -= 1
            self._space_clients[space] -= 1
        if client.campaign is not None:
            campaign = self.campaigns[client.campaign]
            campaign.members.discard(client_id)
            if not campaign.members:
                del self.campaigns[client.campaign]

    def _learn_facets(self, event: AccessEvent, client: _Client) -> None:
        seen = (event.ip, event.asn, event.user_agent, event.key_created)
        if seen == client.seen:
            return
        client.seen = seen
        new = []
        for facet in sorted(facets_of(event, self.key_span_s) - client.facets):
            kind = _kind(facet)
            if sum(_kind(f) == kind for f in client.facets) < MAX_FACETS_PER_KIND:
                client.facets.add(facet)
                self._reindex(facet, event.client_id)
                new.append(facet)
        for facet in new:
            self._check_facet(facet, client.facets, new)

    def _reindex(self, facet: str, client_id: str) -> None:
        members = self._index.setdefault(facet, set())
        kind = _kind(facet)
        self._pairs[kind] = self._pairs.get(kind, 0) + 2 * len(members)
        self._incidence[kind] = self._incidence.get(kind, 0) + 1
        members.add(client_id)

    def _unindex(self, facet: str, client_id: str) -> None:
        members = self._index[facet]
        members.discard(client_id)
        kind = _kind(facet)
        self._pairs[kind] -= 2 * len(members)
        self._incidence[kind] -= 1
        if not members:
            del self._index[facet]

    def _learn_region(self, client: _Client, space: str, region: int) -> None:
        if not self._count_region(client, space, region):
            return
        for facet in client.facets:
            if _kind(facet) in SINGLE_KINDS and self.min_members <= len(self._index[facet]) <= self.max_group:
                coverage = self.coverage(self._index[facet])
                if coverage is not None and coverage.complementary(self.alpha):
                    self._tie(self._index[facet], f"{facet} & coverage", clean=_kind(facet) == "net")

    def _count_region(self, client: _Client, space: str, region: int) -> bool:
        """Record that the client touched a region; False if it had already."""
        mask = client.regions.get(space, 0)
        if mask >> region & 1:
            return False
        counts = self._region_clients.get(space, np.zeros(0, dtype=np.int64))
        if region >= len(counts):
            counts = np.concatenate([counts, np.zeros(region + 1 - len(counts), dtype=np.int64)])
        counts[region] += 1
        self._region_clients[space] = counts
        self._space_clients[space] = self._space_clients.get(space, 0) + (mask == 0)
        client.regions[space] = mask | (1 << region)
        return True

    # ------------------------------------------------------------------ ties

    def _check_facet(self, facet: str, facets: Collection[str], new: list[str]) -> None:
        """Test the ties a client's new facet may complete: with each other dimension, and alone."""
        for other in facets:
            if DIMENSION[_kind(other)] != DIMENSION[_kind(facet)] and (other not in new or other > facet):
                self._check_pair(facet, other)
        if _kind(facet) in SINGLE_KINDS:
            self._check_single(facet)

    def _check_pair(self, a: str, b: str) -> None:
        small, large = sorted((self._index[a], self._index[b]), key=len)
        shared = {c for c in small if c in large}
        if len(shared) < self.min_members:
            return
        expected = len(small) * len(large) / len(self._clients)
        if pdtrc(len(shared) - 1, expected) <= self.alpha:
            # Coarse facets (an ASN, a user agent, a creation hour) go together through geography
            # and time far more than independence says: only a pair with a network is clean.
            self._tie(shared, pair_signature(a, b), clean=expected < 1 and "net" in (_kind(a), _kind(b)))

    def _check_single(self, facet: str) -> None:
        """A facet far larger than its kind's base rate of co-members explains."""
        size = len(self._index[facet])
        if size < self.min_members:
            return
        kind = _kind(facet)
        # Mean co-members of a client outside this facet, smoothed by one pair seen.
        others = self._incidence[kind] - size + 2
        rate = (self._pairs[kind] - size * (size - 1) + 2) / others
        if pdtrc(size - 2, rate) <= self.alpha:
            self._tie(self._index[facet], facet, clean=_kind(facet) == "net")

    def _linked(self, shared: Collection[str], signature: str) -> set[str]:
        """Remember the tie for each client; return those that a second such tie covers too."""
        admitted = set()
        for cid in shared:
            client = self._clients[cid]
            if len(client.links) < MAX_LINKS:
                client.links.add(signature)
            if len(client.links) >= 2:
                admitted.add(cid)
        return admitted

    def _tie(self, members: Collection[str], signature: str, clean: bool) -> None:
        """Put ``members`` in one campaign, merging the campaigns they already belong to.

        A tie that is not ``clean`` (it may hold clients by chance) takes only the members
        that another such tie covers too.
        """
        if not clean:
            members = self._linked(members, signature)
        if len(members) < self.min_members:
            return
        owners = sorted(
            {self._clients[m].campaign for m in members} - {None},
            key=lambda cid: (-len(self.campaigns[cid].members), cid),
        )
        if owners:
            campaign = self.campaigns[owners[0]]
            for other in owners[1:]:
                self._absorb(campaign, self.campaigns.pop(other))
        else:
            cid = "camp-" + hashlib.sha256(signature.encode()).hexdigest()[:8]
            campaign = self.campaigns.setdefault(cid, Campaign(cid, ClientState(window=self.window)))
        for member in members:
            campaign.members.add(member)
            self._clients[member].campaign = campaign.campaign_id
        if len(campaign.ties) < MAX_TIES:
            campaign.ties.add(signature)

    def _absorb(self, campaign: Campaign, other: Campaign) -> None:
        """The larger campaign keeps its id and merged state; the other's members move in."""
        for member in other.members:
            self._clients[member].campaign = campaign.campaign_id
        campaign.members |= other.members
        campaign.evidence.update(other.evidence)
        campaign.ties |= set(sorted(other.ties)[: max(0, MAX_TIES - len(campaign.ties))])

    # ------------------------------------------------------------------ scoring

    def coverage(self, members: Collection[str]) -> Coverage | None:
        """Overlap test of the members' regions in their main space (None without enough data)."""
        spaces = [space for m in members for space in self._clients[m].regions]
        if not spaces:
            return None
        space = max(set(spaces), key=lambda s: (spaces.count(s), s))
        clients = [self._clients[m] for m in members if self._clients[m].regions.get(space)]
        population = self._space_clients[space] - len(clients)
        if len(clients) < self.min_members or population < self.min_population:
            return None
        width = len(self._region_clients[space])
        matrix = np.array([_bits(c.regions[space], width) for c in clients])
        dispersion = self._dispersion(space, members)
        coverage = overlap_test(matrix, self._region_clients[space] - matrix.sum(axis=0), population, dispersion)
        return replace(coverage, space=space, events=sum(c.queries[space] for c in clients))

    def _dispersion(self, space: str, exclude: Collection[str]) -> float:
        """Variance over mean of the regions two recently active strangers share (at least 1)."""
        masks = []
        for cid in reversed(self._clients):
            mask = self._clients[cid].regions.get(space, 0)
            if mask and cid not in exclude:
                masks.append(mask)
                if len(masks) == DISPERSION_SAMPLE:
                    break
        width = len(self._region_clients[space])
        matrix = np.array([_bits(mask, width) for mask in masks], dtype=np.float64).reshape(len(masks), width)
        shared = (matrix @ matrix.T)[np.triu_indices(len(masks), k=1)]
        if len(shared) < 2 or shared.mean() == 0:
            return 1.0
        return max(1.0, float(shared.var() / shared.mean()))

    def view(self, campaign_id: str, references: Mapping[str, SpaceReference]) -> CampaignView:
        """The campaign's merged state as one client: its feature row and a one-line summary."""
        campaign = self.campaigns[campaign_id]
        coverage = self.coverage(campaign.members)
        dimensions = campaign.dimensions()
        if coverage is not None and coverage.complementary(self.alpha) and COVERAGE not in dimensions:
            dimensions.append(COVERAGE)
        features = extract_features(campaign.state, references)
        row = _masked(features, references, coverage, breadth=len(dimensions) >= 2)
        summary = self._summary(campaign, dimensions, references, coverage)
        return CampaignView(campaign_id, row, campaign.state.events_seen, summary, _masked(features, references, None, breadth=False))

    def _summary(
        self, campaign: Campaign, dimensions: list[str], references: Mapping[str, SpaceReference], coverage: Coverage | None
    ) -> str:
        parts = [f"{len(campaign.members)} keys tied by {', '.join(dimensions)}"]
        if coverage is not None:
            ratio = union_coverage(coverage, references)
            overlap = f"overlap {coverage.overlap / max(coverage.expected_overlap, 1e-9):.2f}x strangers'"
            parts.append(overlap if np.isnan(ratio) else f"union coverage {ratio:.1f}x benign, {overlap}")
        return "; ".join(parts)

    # ------------------------------------------------------------------ storage

    def to_bytes(self) -> bytes:
        """Everything the tracker remembers, for a Faust table or any key-value store."""
        return msgspec.msgpack.encode({
            "config": {
                "window": self.window, "min_members": self.min_members, "alpha": self.alpha,
                "key_span_s": self.key_span_s, "idle_s": self.idle_s, "max_clients": self.max_clients,
                "max_group": self.max_group, "min_population": self.min_population,
            },
            "clients": [
                [cid, sorted(c.facets), {s: m.to_bytes((m.bit_length() + 7) // 8, "little") for s, m in c.regions.items()},
                 c.queries, sorted(c.links), c.last_ts, c.campaign]
                for cid, c in self._clients.items()
            ],
            "campaigns": [[c.campaign_id, sorted(c.members), sorted(c.ties), c.state.to_bytes(), c.evidence] for c in self.campaigns.values()],
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> CampaignTracker:
        raw = msgspec.msgpack.decode(data)
        tracker = cls(**raw["config"])
        for cid, facets, regions, queries, links, last_ts, campaign in raw["clients"]:
            links = {_renamed(link) for link in links}  # saved before pair ties had one name each
            client = tracker._clients[cid] = _Client(queries=queries, links=links, last_ts=last_ts, campaign=campaign)
            for facet in facets:
                client.facets.add(facet)
                tracker._reindex(facet, cid)
            for space, packed in regions.items():
                for region in np.flatnonzero(_bits(int.from_bytes(packed, "little"), 8 * len(packed))):
                    tracker._count_region(client, space, int(region))
        for cid, members, ties, state, *evidence in raw["campaigns"]:
            tracker.campaigns[cid] = Campaign(cid, ClientState.from_bytes(state), set(members), set(ties), _components(*evidence))
        return tracker


def _renamed(tie: str) -> str:
    """A tie's signature as :func:`pair_signature` names it ("facet & coverage" ties keep theirs).

    >>> _renamed("ua:sdk/1.0 & asn:64500"), _renamed("born:7 & coverage")
    ('asn:64500 & ua:sdk/1.0', 'born:7 & coverage')
    """
    parts = tie.split(" & ")
    return pair_signature(*parts) if len(parts) == 2 and parts[1] != "coverage" else tie


def _widened(components: list[float], width: int) -> np.ndarray:
    """A member's components as ``width`` logs: one log (older trackers) bets on every kappa,
    and a smoothed process saved without its block process has made no block bet yet.

    >>> _widened([1.0], 4).tolist(), _widened([1.0, 2.0], 4).tolist()
    ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 0.0, 0.0])
    """
    v = np.asarray(components, dtype=np.float64)
    if len(v) == 1:
        return np.broadcast_to(v, (width,))
    return np.concatenate([v, np.zeros(width - len(v))])


def _components(evidence: Mapping[str, float | list[float]] | None = None) -> dict[str, list[float]]:
    """Members' evidence as saved; a tracker saved before evidence had components held one log each."""
    return {m: list(v) if isinstance(v, list) else [float(v)] for m, v in (evidence or {}).items()}
