"""Simulated API clients: the gateway plumbing every client shares, and benign personas.

A :class:`World` describes one deployment (start time, window length, which optional
fields its gateway logs, the numeric model's data distribution). A :class:`Client` is one
API key: it turns requests into canonical access records, with realistic status codes,
latency, token counts, retries and the gateway's per-key rate limit.

Benign personas build a client and drive it through a day. Several of them are
deliberately hard negatives for extraction detectors: batch jobs with machine-regular
timing at temperature 0, eval harnesses asking for logprobs across many topics, app
backends that aggregate many end users, labellers who resubmit slightly edited inputs.
Attacks (``attacks.py``) use the same plumbing, address pools and user agents.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from clonewatch.lab.simulate import text

DAY = 86_400.0

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
CLASSIFY = "/v1/classify"
PREDICT = "/v1/models/fraud:predict"
GENERATIVE = (CHAT, COMPLETIONS)

CHAT_MODELS = ("aurora-70b-chat", "aurora-8b-chat")
INSTRUCT_MODELS = ("aurora-70b-instruct", "aurora-8b-instruct")
SENTIMENT_MODEL = "sentiment-v2"
INTENT_MODEL = "ticket-intent-v3"
FRAUD_MODEL = "fraud-gbm-v5"

SDK_AGENTS = (
    "OpenAI/Python 1.54.3", "OpenAI/Python 1.40.6", "AsyncOpenAI/Python 1.54.3",
    "python-requests/2.32.3", "python-requests/2.31.0", "python-httpx/0.27.2",
    "aiohttp/3.10.10", "OpenAI/JS 4.67.3", "axios/1.7.7", "node-fetch/1.0",
    "curl/8.5.0", "Go-http-client/2.0", "okhttp/4.12.0", "Java-http-client/17.0.12",
)
BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/129.0.0.0 Safari/537.36",
)
ALL_AGENTS = SDK_AGENTS + BROWSER_AGENTS
TIMEZONES = (-8.0, -7.0, -6.0, -5.0, -3.0, 0.0, 1.0, 2.0, 3.0, 5.5, 8.0, 9.0, 10.0)

# ------------------------------------------------------------------------ the network

ASNS: dict[str, tuple[int, ...]] = {
    "residential": (7922, 701, 20115, 22773, 3320, 2856, 3215, 6830, 5089, 12322, 7545, 4766),
    "mobile": (21928, 22394, 12430, 3209),
    "cloud": (16509, 15169, 8075, 14061, 24940, 16276, 63949, 20473),
    "business": (7018, 174, 3356, 6939, 1299),
}


def _prefix_table() -> dict[int, tuple[tuple[int, int], ...]]:
    """Three public-looking /16 prefixes per ASN, fixed and disjoint."""
    rng = random.Random("clonewatch-asn-table")
    taken: set[tuple[int, int]] = set()
    table: dict[int, tuple[tuple[int, int], ...]] = {}
    for asn in sorted(a for group in ASNS.values() for a in group):
        prefixes: list[tuple[int, int]] = []
        while len(prefixes) < 3:
            first = rng.choice([n for n in range(11, 224) if n not in (100, 127, 169, 172, 192)])
            prefix = (first, rng.randrange(256))
            if prefix not in taken:
                taken.add(prefix)
                prefixes.append(prefix)
        table[asn] = tuple(prefixes)
    return table


_PREFIXES = _prefix_table()


def subnet(rng: random.Random, asn: int) -> str:
    """A random /24 (as ``"a.b.c"``) inside one of the ASN's address blocks."""
    first, second = rng.choice(_PREFIXES[asn])
    return f"{first}.{second}.{rng.randrange(256)}"


def address(rng: random.Random, asn: int, net24: str | None = None) -> str:
    """A host address in the ASN (inside ``net24`` when given); mobile and home lines
    sometimes get IPv6."""
    if net24 is None and asn in ASNS["residential"] + ASNS["mobile"] and rng.random() < 0.15:
        first, second = _PREFIXES[asn][0]
        site, host = rng.getrandbits(16), rng.getrandbits(16)
        return f"2a{first:02x}:{second:x}{asn % 97:02x}:{site:x}::{host:x}"
    return f"{net24 or subnet(rng, asn)}.{rng.randint(2, 254)}"


# --------------------------------------------------------------------- world and clients


@dataclass(frozen=True)
class Gateway:
    """Which optional fields this deployment's gateway logs, and its per-key rate limit."""

    log_asn: bool = True
    log_key_created: bool = True
    log_tokens: bool = True
    log_user_agent: bool = True
    rate_limit: int = 120  # accepted requests per key per rolling minute


@dataclass(frozen=True)
class Device:
    """Where a key's requests come from: one address and the software sending them."""

    ip: str
    asn: int
    agent: str


@dataclass
class Identity:
    """An API key and the devices that use it."""

    client_id: str
    key_created: float  # seconds relative to the window start (negative: before it)
    devices: list[Device]
    stickiness: float = 0.9  # chance a request comes from the primary device

    def device(self, rng: random.Random) -> Device:
        """The device sending the next request."""
        if len(self.devices) == 1 or rng.random() < self.stickiness:
            return self.devices[0]
        return rng.choice(self.devices)


@dataclass
class Request:
    """What a client sends. Exactly one of ``prompt`` and ``features`` is set."""

    path: str
    model: str
    prompt: str | None = None
    features: list[float] | None = None
    params: dict[str, float | int | bool] | None = None
    context_tokens: int = 0  # earlier turns of the conversation sent along with the prompt
    turns: int = 0  # earlier answers among them (a chat request's assistant messages)


@dataclass(frozen=True)
class Reply:
    """When the final response arrived and how long it was."""

    done: float
    tokens_out: int


@dataclass
class Record:
    """One logged request before timestamps are rendered; ``topic`` and ``role`` are
    ground truth that never reaches the log."""

    t: float
    event: dict
    topic: str | None
    role: str  # "benign", "attack" or "cover" (benign-looking traffic of an attacker)


@dataclass
class World:
    """One simulated deployment."""

    seed: int
    start: datetime
    duration: float
    gateway: Gateway
    tabular: TabularModel
    _keys: set[str] = field(default_factory=set)

    def new_key(self, rng: random.Random) -> str:
        """A fresh, unique API key id (the format says nothing about who owns it)."""
        while True:
            key = f"key_{rng.getrandbits(48):012x}"
            if key not in self._keys:
                self._keys.add(key)
                return key

    def timestamp(self, t: float) -> str:
        """RFC 3339 (UTC, milliseconds) of window offset ``t``; monotone in ``t``."""
        moment = self.start + timedelta(milliseconds=math.floor(t * 1000))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def local_hour(self, t: float, tz: float) -> float:
        """Hour of day (0-24) at window offset ``t`` in a timezone ``tz`` hours from UTC."""
        base = self.start.hour + self.start.minute / 60
        return (base + t / 3600 + tz) % 24


def tokens(prompt: str) -> int:
    """Approximate BPE token count of an English string."""
    return max(1, round(len(prompt) / 3.8))


_ERRORS = ((500, 0.003), (503, 0.002), (400, 0.002))


class Client:
    """One API key: turns requests into access records as the gateway would log them."""

    def __init__(self, world: World, identity: Identity, rng: random.Random, retries: int = 2):
        self.world = world
        self.identity = identity
        self.rng = rng
        self.retries = retries
        self.records: list[Record] = []
        self._accepted: list[float] = []
        self._key_created = world.timestamp(identity.key_created)

    @property
    def client_id(self) -> str:
        return self.identity.client_id

    def send(
        self, t: float, request: Request, topic: str | None = None, role: str = "benign",
        device: int | None = None,
    ) -> Reply:
        """Log ``request`` sent at ``t``, retrying 429/5xx with backoff; return the final reply."""
        reply = Reply(t, 0)
        for attempt in range(self.retries + 1):
            status = self._status(t)
            out = self._completion_tokens(request) if status == 200 else 0
            latency = _latency(self.rng, request, status, out)
            self.records.append(
                Record(t, self._event(t, request, status, latency, out, device), topic, role)
            )
            reply = Reply(t + latency / 1000, out)
            if status in (200, 400):
                break
            wait = 20.0 if status == 429 else 1.0
            t = reply.done + wait * 2**attempt * self.rng.uniform(0.8, 1.6)
        return reply

    def _status(self, t: float) -> int:
        # Personas generate sessions out of time order, so keep all accepted send times
        # sorted and count those in the minute before ``t``.
        accepted = self._accepted
        in_last_minute = bisect_right(accepted, t) - bisect_right(accepted, t - 60)
        if in_last_minute >= self.world.gateway.rate_limit:
            return 429
        insort(accepted, t)
        roll = self.rng.random()
        for status, share in _ERRORS:
            if roll < share:
                return status
            roll -= share
        return 200

    def _completion_tokens(self, request: Request) -> int:
        if request.path not in GENERATIVE:
            return 0
        params = request.params or {}
        cap = int(params.get("max_tokens", 4096))
        wanted = int(self.rng.lognormvariate(math.log(170), 0.75))
        return max(1, min(cap, wanted)) * int(params.get("n", 1))

    def _event(
        self, t: float, request: Request, status: int, latency: float, out: int,
        device_index: int | None,
    ) -> dict:
        gateway = self.world.gateway
        device = (
            self.identity.devices[device_index] if device_index is not None
            else self.identity.device(self.rng)
        )
        event: dict = {
            "ts": t,  # replaced by the RFC 3339 string when the traffic is assembled
            "client_id": self.client_id,
            "ip": device.ip,
            "method": "POST",
            "path": request.path,
            "status": status,
            "latency_ms": round(latency, 1),
            "model": request.model,
        }
        if request.prompt is not None:
            event["prompt"] = request.prompt
        else:
            event["features"] = request.features
        if request.params:
            event["params"] = dict(request.params)
        if request.path == CHAT:  # a chat request's messages say how deep into a conversation it is
            event["turns"] = request.turns
        if gateway.log_tokens and request.prompt is not None and status != 429:
            event["tokens_in"] = tokens(request.prompt) + request.context_tokens
            if request.path in GENERATIVE:
                event["tokens_out"] = out
        if gateway.log_user_agent:
            event["user_agent"] = device.agent
        event["request_id"] = f"req_{self.rng.getrandbits(96):024x}"
        if gateway.log_asn:
            event["asn"] = device.asn
        if gateway.log_key_created:
            event["key_created"] = self._key_created
        return event


def _latency(rng: random.Random, request: Request, status: int, out: int) -> float:
    """Milliseconds until the response: time to first token plus decoding time."""
    if status == 429:
        return rng.lognormvariate(math.log(4), 0.4)
    if status == 400:
        return rng.lognormvariate(math.log(15), 0.4)
    if status == 503:
        return rng.lognormvariate(math.log(40), 0.5)
    if status == 500:
        return rng.lognormvariate(math.log(900), 0.8)
    if request.path == PREDICT:
        return rng.lognormvariate(math.log(9), 0.35)
    if request.path == CLASSIFY:
        return rng.lognormvariate(math.log(32), 0.3) + 0.04 * tokens(request.prompt or "")
    large = "70b" in request.model
    first = rng.lognormvariate(math.log(420 if large else 180), 0.35)
    first += 0.08 * request.context_tokens
    per_token = (24 if large else 9) * rng.lognormvariate(0, 0.12)
    n = int((request.params or {}).get("n", 1))
    return first + per_token * out / n


# --------------------------------------------------------------------------- identities


def key_age(rng: random.Random, new_share: float = 0.1) -> float:
    """When a key was created, in seconds relative to the window start (always before it)."""
    if rng.random() < new_share:
        return -rng.uniform(0.1, 5) * DAY
    return -min(1500.0, rng.lognormvariate(math.log(140), 0.9)) * DAY


def identity(
    world: World, rng: random.Random, network: str, agents: tuple[str, ...],
    devices: int = 1, new_share: float = 0.1,
) -> Identity:
    """A new key used from ``devices`` addresses in one /24 of one kind of network."""
    asn = rng.choice(ASNS[network])
    net24 = subnet(rng, asn) if devices > 1 else None
    agent = rng.choice(agents)
    made = [Device(address(rng, asn, net24), asn, agent) for _ in range(devices)]
    return Identity(world.new_key(rng), key_age(rng, new_share), made)


# ------------------------------------------------------------------------------ timing

# Relative activity by local hour: people chat in the day and evening, offices work 8-18.
_HUMAN = (0.15, 0.08, 0.05, 0.04, 0.04, 0.07, 0.2, 0.45, 0.7, 0.85, 0.95, 1.0, 0.9, 0.95,
          1.0, 1.0, 0.95, 0.85, 0.75, 0.75, 0.8, 0.7, 0.5, 0.3)
_OFFICE = (0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.3, 0.8, 1.0, 1.0, 0.95, 0.7, 0.9,
           1.0, 1.0, 0.9, 0.6, 0.25, 0.1, 0.06, 0.04, 0.02, 0.01)


def active_time(
    rng: random.Random, world: World, tz: float, office: bool = False, until: float = 1.0
) -> float:
    """A moment in the first ``until`` share of the window, weighted by local activity."""
    profile = _OFFICE if office else _HUMAN
    while True:
        t = rng.uniform(0, world.duration * until)
        if rng.random() < profile[int(world.local_hour(t, tz))]:
            return t


def think_time(rng: random.Random, median: float = 35.0) -> float:
    """A human gap between requests: reading, thinking, typing; sometimes a break."""
    if rng.random() < 0.07:
        return rng.lognormvariate(math.log(600), 0.7)
    return rng.lognormvariate(math.log(median), 0.8)


def regular_gap(rng: random.Random, period: float, jitter: float) -> float:
    """A machine gap: ``period`` seconds with relative ``jitter``."""
    return max(0.01, period * (1 + rng.gauss(0, jitter)))


# ------------------------------------------------------------------ numeric (tabular) API

# name, transform of (location + scale * latent), clip range low-high, decimals when stored
_COLUMNS: tuple[tuple[str, str, float, float, float, float, int], ...] = (
    ("amount", "exp", 3.6, 1.1, 0.5, 25000, 2),
    ("hour", "lin", 14, 4.5, 0, 23, 0),
    ("merchant_category", "lin", 4.5, 2.6, 0, 9, 0),
    ("card_present", "bin", 0.4, 1, 0, 1, 0),
    ("international", "bin", -1.4, 1, 0, 1, 0),
    ("account_age_days", "exp", 5.6, 1.0, 1, 7300, 0),
    ("tx_count_24h", "exp", 1.1, 0.8, 0, 80, 0),
    ("avg_amount_30d", "exp", 3.8, 0.9, 1, 10000, 2),
    ("distance_km", "exp", 2.3, 1.5, 0, 12000, 1),
    ("device_trust", "unit", 1.5, 1.2, 0, 1, 3),
    ("ip_risk", "unit", -2.0, 1.1, 0, 1, 3),
    ("velocity_1h", "exp", 0.3, 0.9, 0, 40, 2),
    ("chargebacks_1y", "exp", -2.0, 1.0, 0, 6, 0),
    ("credit_limit", "exp", 8.3, 0.6, 300, 50000, 0),
    ("utilization", "unit", -0.6, 1.0, 0, 1, 3),
    ("customer_age", "lin", 41, 13, 18, 90, 0),
)
FEATURE_NAMES = tuple(column[0] for column in _COLUMNS)
DIM = len(_COLUMNS)
_FRAUD_WEIGHTS = {"amount": 0.8, "international": 0.9, "account_age_days": -0.7,
                  "distance_km": 0.8, "device_trust": -1.1, "ip_risk": 1.3, "velocity_1h": 0.7,
                  "chargebacks_1y": 0.6, "utilization": 0.4, "card_present": -0.6}


class TabularModel:
    """The fraud model's input distribution (a mixture of correlated Gaussians pushed
    through realistic column transforms) and the deployed classifier itself."""

    def __init__(self, seed: int, components: int = 6):
        rng = np.random.default_rng([seed, 7331])
        self.means = rng.normal(0, 0.9, (components, DIM))
        loadings = rng.normal(0, 0.5, (components, DIM, 3))
        self.chols = np.linalg.cholesky(
            loadings @ loadings.transpose(0, 2, 1) + 0.3 * np.eye(DIM)
        )
        self.weights = rng.dirichlet(np.full(components, 3.0))
        self.decimals = np.array([column[6] for column in _COLUMNS])
        self.low = np.array([column[4] for column in _COLUMNS], dtype=float)
        self.high = np.array([column[5] for column in _COLUMNS], dtype=float)
        reference = self.population(rng, 5000)
        self.mean = reference.mean(axis=0)  # public statistics an attacker may know
        self.std = reference.std(axis=0) + 1e-9
        logs = np.log1p(reference)
        self._center, self._spread = logs.mean(axis=0), logs.std(axis=0) + 1e-9
        self._w = np.array([_FRAUD_WEIGHTS.get(name, 0.0) for name in FEATURE_NAMES])
        self._cut = float(np.quantile(self._score(reference), 0.96))  # ~4% flagged

    def latent(self, rng: np.random.Generator, components: np.ndarray) -> np.ndarray:
        """Latent draws, one per entry of ``components`` (which mixture component)."""
        noise = rng.standard_normal((len(components), DIM))
        return self.means[components] + np.einsum("nij,nj->ni", self.chols[components], noise)

    def transform(self, z: np.ndarray) -> np.ndarray:
        """Map latent draws to feature values (amounts, counts, flags, scores); counts and
        categories are whole numbers, the rest keeps full precision (see :meth:`render`)."""
        out = np.empty_like(z)
        for j, (_, kind, loc, scale, low, high, decimals) in enumerate(_COLUMNS):
            v = loc + scale * z[:, j]
            if kind == "exp":
                v = np.exp(v)
            elif kind == "bin":
                v = (v > 0).astype(float)
            elif kind == "unit":
                v = 1 / (1 + np.exp(-v))
            v = np.clip(v, low, high)
            out[:, j] = np.round(v) if decimals == 0 else v
        return out

    def render(self, x: np.ndarray, style: str) -> np.ndarray:
        """Feature values as a client serialises them, by ``style`` (one of FORMATS):
        ``stored`` rounds each column like a database would (cents, 3-digit scores),
        ``computed`` rounds only whole-number columns, ``fixed4``/``fixed6`` print a fixed
        number of decimals, ``raw`` sends floats exactly as computed."""
        if style == "stored":
            return np.column_stack([np.round(x[:, j], d) for j, d in enumerate(self.decimals)])
        if style == "computed":
            return np.where(self.decimals == 0, np.round(x), x)
        if style.startswith("fixed"):
            return np.round(x, int(style.removeprefix("fixed")))
        return x

    def _score(self, x: np.ndarray) -> np.ndarray:
        return ((np.log1p(np.maximum(x, 0)) - self._center) / self._spread) @ self._w

    def margin(self, x: np.ndarray) -> np.ndarray:
        """How far each row's fraud score lies above the classifier's cut (negative: below)."""
        return self._score(x) - self._cut

    def label(self, x: np.ndarray) -> np.ndarray:
        """The deployed classifier's decision (1 = fraud) for each row."""
        return (self.margin(x) > 0).astype(int)

    def population(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` rows from the whole customer base."""
        return self.transform(self.latent(rng, rng.choice(len(self.weights), n, p=self.weights)))


class Subpopulation:
    """One numeric-API customer's own slice of the data: a home mixture component,
    a shift, and for merchants a fixed merchant category."""

    def __init__(self, model: TabularModel, rng: np.random.Generator):
        self.model = model
        self.home = int(rng.choice(len(model.weights), p=model.weights))
        self.other = int(rng.integers(len(model.weights)))
        self.shift = rng.normal(0, 0.25, DIM)
        self.category = float(rng.integers(10)) if rng.random() < 0.6 else None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` rows a customer like this would send."""
        components = np.where(rng.random(n) < 0.85, self.home, self.other)
        rows = self.model.transform(self.model.latent(rng, components) + self.shift)
        if self.category is not None:
            rows[:, FEATURE_NAMES.index("merchant_category")] = self.category
        return rows


FORMATS = ("stored", "computed", "fixed6", "fixed4", "raw")


def rows_to_lists(rows: np.ndarray) -> list[list[float]]:
    """Feature rows as JSON-ready lists of floats."""
    return [[float(v) for v in row] for row in rows]


# ---------------------------------------------------------------------- benign personas

Persona = Callable[[World, random.Random], Client]


class ClientRandom(random.Random):
    """A customer's random stream: first who it is (its habits: key, network, agents, topics,
    models, parameters), then what it does on the simulated day. On day 0 both are one stream,
    as they always were; on a later day the habits are drawn the same and the day from a
    stream of its own, so the same customers come back and do new things.

    >>> monday, tuesday = (chat_user(World(0, datetime(2026, 11, 23), DAY, Gateway(), None), ClientRandom("c/0", day=d))
    ...                    for d in (0, 1))
    >>> monday.client_id == tuesday.client_id, monday.records[0].event["prompt"] == tuesday.records[0].event["prompt"]
    (True, False)
    """

    def __init__(self, name: str, day: int = 0) -> None:
        super().__init__(name)
        self.name = name
        self.day = day

    def start_day(self) -> bool:
        if self.day:
            self.seed(f"{self.name}/day/{self.day}")
        return bool(self.day)


def start_day(rng: random.Random) -> bool:
    """The habits of the client that ``rng`` draws are set; what follows is its day
    (:class:`ClientRandom`). True on a later day, whose draws come from a stream of its own."""
    return isinstance(rng, ClientRandom) and rng.start_day()


def conversation(
    client: Client, t: float, topic_id: str, model: str, params: dict | None, turns: int,
    role: str = "benign", first: text.Prompt | None = None,
) -> float:
    """A chat with follow-ups: each turn resends the history; returns when it ended."""
    rng = client.rng
    prompt = first or text.question(rng, topic_id)
    history = 0
    for turn in range(turns):
        reply = client.send(t, Request(CHAT, model, prompt.text, None, params, history, turn),
                            topic_id, role)
        history += tokens(prompt.text) + reply.tokens_out
        prompt = text.follow_up(rng, prompt)
        t = reply.done + think_time(rng) + len(prompt.text) / 5
    return t


def _turns(rng: random.Random, mean: float = 4.0) -> int:
    """Geometric number of turns in a conversation (at least one)."""
    turns = 1
    while rng.random() > 1 / mean and turns < 25:
        turns += 1
    return turns


_CHAT_PARAMS: tuple[dict, ...] = (
    {}, {"temperature": 0.7}, {"temperature": 1.0, "max_tokens": 1024},
    {"temperature": 0.7, "max_tokens": 2048}, {"temperature": 0.5},
)


def chat_user(world: World, rng: random.Random) -> Client:
    """A person using a chat front end: a few sessions in their daytime on 1-3 topics."""
    agents = BROWSER_AGENTS if rng.random() < 0.6 else SDK_AGENTS
    network = "mobile" if rng.random() < 0.15 else "residential"
    client = Client(world, identity(world, rng, network, agents, new_share=0.15), rng, retries=1)
    tz = rng.choice(TIMEZONES)
    topics = text.popular_topics(rng, rng.choice((1, 1, 2, 2, 3)))
    model = rng.choice(CHAT_MODELS)
    params = rng.choice(_CHAT_PARAMS)
    start_day(rng)
    sessions = rng.choice((1, 2, 2, 3, 3, 4, 6, 10))
    for _ in range(sessions):
        conversation(client, active_time(rng, world, tz), rng.choice(topics), model, params,
                     _turns(rng))
    return client


def app_backend(world: World, rng: random.Random) -> Client:
    """A consumer app's server relaying many end users' chats through one key: broad
    topics and high volume, but each conversation is focused and human-paced."""
    client = Client(world, identity(world, rng, "cloud", SDK_AGENTS, devices=rng.randint(2, 4)),
                    rng, retries=2)
    params = {"temperature": rng.choice((0.7, 0.8, 1.0)), "max_tokens": rng.choice((600, 800))}
    model = rng.choice(CHAT_MODELS)
    start_day(rng)
    for _ in range(rng.randint(50, 220)):
        topic_id = text.popular_topics(rng, 1)[0]
        start = active_time(rng, world, rng.choice(TIMEZONES))
        conversation(client, start, topic_id, model, params, _turns(rng, 3.0))
    return client


def side_random(client: Client, purpose: str) -> random.Random:
    """A generator of its own for a habit added to a persona later, seeded by the client's key,
    so that drawing it leaves every other draw of the client (and its traffic) as it was."""
    return random.Random(f"{client.client_id}/{purpose}")


def token_bias(rng: random.Random, tokens: int) -> dict[str, float]:
    """A ``logit_bias`` of ``tokens`` token ids, each +100: kept on every request, it holds a
    classifier's answer to its label tokens (as OpenAI's documentation suggests); drawn afresh
    for each request, it pushes a new block of tokens into the top few (logit recovery)."""
    return {str(rng.randrange(100, 100_000)): 100.0 for _ in range(tokens)}


def developer(world: World, rng: random.Random) -> Client:
    """A developer iterating on a prompt (many near-identical versions, varied
    parameters, retries), often with a CI suite replaying fixed prompts at temperature 0;
    one in six builds a classifier and keeps the answer to its labels with a fixed ``logit_bias``."""
    network = rng.choice(("business", "residential"))
    ident = identity(world, rng, network, SDK_AGENTS, new_share=0.2)
    ci = rng.random() < 0.4
    if ci:  # the CI runner is a second device on a cloud network
        asn = rng.choice(ASNS["cloud"])
        ident.devices.append(Device(address(rng, asn), asn, rng.choice(SDK_AGENTS)))
    client = Client(world, ident, rng, retries=3)
    tz = rng.choice(TIMEZONES)
    topics = text.popular_topics(rng, rng.choice((1, 2)))
    path = COMPLETIONS if rng.random() < 0.2 else CHAT
    models = CHAT_MODELS if path == CHAT else INSTRUCT_MODELS
    debug_logprobs = rng.random() < 0.25
    side = side_random(client, "logit_bias")
    bias = token_bias(side, side.randint(2, 6)) if side.random() < 1 / 6 else None
    start_day(rng)
    for _ in range(rng.randint(1, 3)):
        t = active_time(rng, world, tz, office=True)
        prompt = text.dev_task(rng, rng.choice(topics))
        for _ in range(rng.randint(3, 12)):
            params: dict = {"temperature": rng.choice((0.0, 0.2, 0.7, 1.0)),
                            "max_tokens": rng.choice((256, 512, 1024))}
            if debug_logprobs and rng.random() < 0.5:
                params.update({"logprobs": True, "top_logprobs": 5} if path == CHAT
                              else {"logprobs": 5})
            if rng.random() < 0.15:  # sample several candidates at once
                params["n"] = rng.choice((2, 3, 4, 5))
            if bias is not None and path == CHAT:
                params["logit_bias"] = bias
            for _ in range(rng.randint(1, 4)):
                reply = client.send(t, Request(path, rng.choice(models), prompt.text, None, params),
                                    prompt.topic, device=0)
                t = reply.done + rng.lognormvariate(math.log(15), 0.9)
            prompt = text.revise_task(rng, prompt)
            t += rng.lognormvariate(math.log(150), 0.7)
    if ci:
        _ci_suite(client, rng, topics, path, rng.choice(models))
    return client


def _ci_suite(client: Client, rng: random.Random, topics: list[str], path: str, model: str):
    """A test suite replaying the same fixed prompts at temperature 0 a few times a day."""
    suite = [text.dev_task(rng, rng.choice(topics)) for _ in range(rng.randint(8, 30))]
    params = {"temperature": 0.0, "max_tokens": 256}
    for _ in range(rng.randint(1, 6)):
        t = rng.uniform(0, client.world.duration)
        for prompt in suite:
            reply = client.send(t, Request(path, model, prompt.text, None, params), prompt.topic,
                                device=len(client.identity.devices) - 1)
            t = reply.done + regular_gap(rng, 0.4, 0.2)


def rag_batch(world: World, rng: random.Random) -> Client:
    """A scheduled RAG / document-processing pipeline: one domain, temperature 0,
    machine-regular timing, heavy volume, some questions repeated run after run."""
    ident = identity(world, rng, "cloud", SDK_AGENTS, devices=rng.randint(1, 3))
    client = Client(world, ident, rng, retries=5)
    topic_id = text.popular_topics(rng, 1)[0]
    path = COMPLETIONS if rng.random() < 0.2 else CHAT
    model = rng.choice(CHAT_MODELS if path == CHAT else INSTRUCT_MODELS)
    params = {"temperature": 0.0, "max_tokens": rng.choice((256, 512))}
    period = rng.choice((900.0, 1800.0, 3600.0, 7200.0, 14400.0))
    runs = int(world.duration // period)
    per_run = max(5, rng.randint(250, 1200) // runs)
    gap = rng.uniform(0.6, 2.5)
    start_day(rng)
    known: list[text.Prompt] = []
    t = rng.uniform(0, period)
    while t < world.duration:
        clock = t
        for _ in range(per_run):
            if known and rng.random() < 0.3:
                prompt = rng.choice(known)
            else:
                prompt = text.rag_prompt(rng, topic_id)
                known.append(prompt)
            reply = client.send(clock, Request(path, model, prompt.text, None, params), topic_id)
            clock = max(clock + regular_gap(rng, gap, 0.08), reply.done)
        t += regular_gap(rng, period, 0.002)
    return client


def eval_harness(world: World, rng: random.Random) -> Client:
    """An evaluation harness: a fixed benchmark (sometimes spanning a dozen or more
    subjects) sent at temperature 0 with logprobs, repeated across runs and models; over the
    chat API, half keep the answer to the option letters with a fixed ``logit_bias``."""
    client = Client(world, identity(world, rng, rng.choice(("cloud", "business")), SDK_AGENTS),
                    rng, retries=4)
    broad = rng.random() < 0.3
    subjects = rng.sample(text.TOPIC_IDS, rng.randint(12, 24) if broad else rng.randint(2, 5))
    fmt = rng.randrange(3)
    items = [text.benchmark_item(rng, rng.choice(subjects), fmt)
             for _ in range(rng.randint(50, 200))]
    path = COMPLETIONS if rng.random() < 0.6 else CHAT
    top = rng.choice((1, 5, 5, 10, 20))
    logprobs: dict = {"logprobs": top} if path == COMPLETIONS else {"logprobs": True,
                                                                     "top_logprobs": top}
    params = {"temperature": 0.0, "max_tokens": 1, **logprobs}
    side = side_random(client, "logit_bias")
    if path == CHAT and side.random() < 0.5:
        params["logit_bias"] = token_bias(side, side.choice((2, 4, 5)))
    models = rng.sample(INSTRUCT_MODELS if path == COMPLETIONS else CHAT_MODELS,
                        rng.randint(1, 2))
    gap = rng.choice((0.3, 0.5, 0.8, 1.2))
    start_day(rng)
    for _ in range(rng.randint(1, 3)):
        t = rng.uniform(0, world.duration * 0.8)
        for model in models:
            for item in items:
                reply = client.send(t, Request(path, model, item.text, None, params), item.topic)
                t = max(reply.done, t + regular_gap(rng, gap, 0.1))
    return client


def ticket_classifier(world: World, rng: random.Random) -> Client:
    """A helpdesk integration sending every new support ticket to the intent classifier;
    webhook retries occasionally resend a ticket verbatim."""
    agents = ("Go-http-client/2.0", "Java-http-client/17.0.12", "python-requests/2.32.3",
              "axios/1.7.7", "okhttp/4.12.0")
    client = Client(world, identity(world, rng, "cloud", agents, devices=rng.randint(1, 2)), rng)
    tz = rng.choice(TIMEZONES)
    weights = [rng.random() ** 2 for _ in text.TICKET_INTENTS]
    params = {"logprobs": True} if rng.random() < 0.3 else None
    start_day(rng)
    for t in sorted(active_time(rng, world, tz, office=True) for _ in range(rng.randint(30, 300))):
        item = text.ticket(rng, rng.choices(text.TICKET_INTENTS, weights)[0])
        reply = client.send(t, Request(CLASSIFY, INTENT_MODEL, item.text, None, params), item.topic)
        if rng.random() < 0.03:
            client.send(reply.done + rng.uniform(1, 30),
                        Request(CLASSIFY, INTENT_MODEL, item.text, None, params), item.topic)
    return client


def labelling_team(world: World, rng: random.Random) -> Client:
    """An annotation team sharing one key from an office: every labeller classifies a
    stream of texts and sometimes resubmits an item after fixing a typo or a word."""
    people = rng.randint(3, 8)
    ident = identity(world, rng, "business", BROWSER_AGENTS, devices=people)
    for i, device in enumerate(ident.devices):  # each labeller has their own browser
        ident.devices[i] = Device(device.ip, device.asn, rng.choice(BROWSER_AGENTS))
    client = Client(world, ident, rng, retries=1)
    reviews = rng.random() < 0.6
    model = SENTIMENT_MODEL if reviews else INTENT_MODEL
    pool = text.REVIEW_CATEGORIES if reviews else text.TICKET_INTENTS
    focus = rng.sample(pool, rng.randint(1, 3))
    tz = rng.choice(TIMEZONES)
    params = {"logprobs": True} if rng.random() < 0.3 else None
    start_day(rng)
    for person in range(people):
        t = active_time(rng, world, tz, office=True, until=0.7)
        for _ in range(rng.randint(15, 80)):
            item = text.review(rng, rng.choice(focus)) if reviews else text.ticket(
                rng, rng.choice(focus))
            body = item.text
            for _ in range(rng.choice((1,) * 12 + (2, 3))):
                reply = client.send(t, Request(CLASSIFY, model, body, None, params), item.topic,
                                    device=person)
                body = text.perturb(rng, body, "char,synonym,delete,insert")
                t = reply.done + rng.lognormvariate(math.log(12), 0.6)
            t += think_time(rng, median=20)
    return client


def numeric_customer(world: World, rng: random.Random) -> Client:
    """A bank or merchant scoring its own transactions with the fraud model, either
    in real time or in periodic batches; some transactions are re-scored later with
    updated counters."""
    agents = ("Java-http-client/17.0.12", "Go-http-client/2.0", "python-requests/2.32.3",
              "okhttp/4.12.0", "python-httpx/0.27.2")
    client = Client(world, identity(world, rng, rng.choice(("cloud", "business")), agents), rng)
    nrng = np.random.default_rng(rng.getrandbits(64))
    population = Subpopulation(world.tabular, nrng)
    style = rng.choices(FORMATS[:4], (5, 3, 1, 1))[0]
    tz = rng.choice(TIMEZONES)
    batches = rng.random() < 0.35
    if start_day(rng):
        nrng = np.random.default_rng(rng.getrandbits(64))  # the same kind of transactions, not the same ones
    if batches:
        times = _batch_times(rng, world)
    else:
        times = sorted(active_time(rng, world, tz) for _ in range(rng.randint(30, 350)))
    rows = population.sample(nrng, len(times))
    rescored = rows.copy()  # settlement re-score: same transaction, updated counters
    rescored[:, [FEATURE_NAMES.index("tx_count_24h"), FEATURE_NAMES.index("velocity_1h")]] += 1
    sent = rows_to_lists(world.tabular.render(rows, style))
    resent = rows_to_lists(world.tabular.render(rescored, style))
    for t, features, later in zip(times, sent, resent, strict=True):
        client.send(t, Request(PREDICT, FRAUD_MODEL, None, features))
        if rng.random() < 0.05:
            client.send(t + rng.uniform(60, 3600), Request(PREDICT, FRAUD_MODEL, None, later))
    return client


def _batch_times(rng: random.Random, world: World) -> list[float]:
    """Send times of a periodic batch scorer: a burst of records every so often."""
    period = rng.choice((1200.0, 1800.0, 3600.0, 7200.0))
    size = max(3, rng.randint(100, 700) // int(world.duration // period))
    times: list[float] = []
    t = rng.uniform(0, period)
    while t < world.duration:
        clock = t
        for _ in range(size):
            times.append(clock)
            clock += regular_gap(rng, 0.6, 0.15)
        t += period
    return times


PERSONAS: dict[str, Persona] = {
    "chat_user": chat_user,
    "app_backend": app_backend,
    "developer": developer,
    "rag_batch": rag_batch,
    "eval_harness": eval_harness,
    "ticket_classifier": ticket_classifier,
    "labelling_team": labelling_team,
    "numeric_customer": numeric_customer,
}
