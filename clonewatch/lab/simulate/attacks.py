"""Model-extraction attacks, built on the same client plumbing as benign personas.

Attackers draw addresses, user agents and parameters from the same pools as honest
customers; what gives them away is behaviour (coverage, chains of near-identical
inputs, pacing, campaigns split over keys), never a marker in the record format.

Single-key attacks have the signature ``(world, rng, variant, size) -> Client`` where
``size`` is the query budget; :func:`campaign` returns one client per key.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import numpy as np

from clonewatch.lab.simulate import text
from clonewatch.lab.simulate.personas import (
    ALL_AGENTS, ASNS, BROWSER_AGENTS, FORMATS, CHAT, CHAT_MODELS, CLASSIFY, COMPLETIONS, DAY, DIM,
    FRAUD_MODEL, INSTRUCT_MODELS, INTENT_MODEL, PREDICT, SDK_AGENTS, SENTIMENT_MODEL,
    TIMEZONES, Client, Device, Identity, Request, Subpopulation, TabularModel, World,
    active_time, address, identity, regular_gap, rows_to_lists, subnet, think_time, token_bias, tokens,
)

Step = tuple[Request, str | None]  # a request and its (never logged) topic
Attack = Callable[[World, random.Random, str, int], Client]


# ------------------------------------------------------------------------ pacing


def run_machine(
    client: Client, t: float, steps: Iterator[Step], gap: float, jitter: float,
    concurrent: bool, role: str = "attack",
) -> float:
    """Send ``steps`` like a script: at a fixed rate (``concurrent``) or waiting for each
    reply and then sleeping; now and then the script stalls (crash, restart, cool-down)."""
    rng = client.rng
    for request, topic in steps:
        reply = client.send(t, request, topic, role)
        t = (t if concurrent else reply.done) + regular_gap(rng, gap, jitter)
        if rng.random() < 0.003:
            t += rng.uniform(120, 1500)
    return t


def run_human(
    client: Client, steps: Iterator[Step], tz: float, median_gap: float, session: tuple[int, int],
    role: str = "attack",
) -> None:
    """Send ``steps`` in human-looking sessions at daytime hours of timezone ``tz``."""
    rng = client.rng
    step = next(steps, None)
    while step is not None:
        t = active_time(rng, client.world, tz)
        for _ in range(rng.randint(*session)):
            if step is None:
                break
            reply = client.send(t, step[0], step[1], role)
            t = reply.done + think_time(rng, median_gap)
            step = next(steps, None)


def _target(rng: random.Random, models: tuple[str, ...]) -> str:
    """The model to copy: usually the biggest one."""
    return models[0] if rng.random() < 0.8 else rng.choice(models)


def attacker_key(world: World, rng: random.Random, human: bool) -> Client:
    """A fresh or aged key on a hosting network, a home line or a residential proxy."""
    network = rng.choice(("residential", "mobile")) if human else rng.choice(
        ("cloud", "cloud", "residential", "business"))
    agents = BROWSER_AGENTS + SDK_AGENTS[:3] if human else SDK_AGENTS
    return Client(world, identity(world, rng, network, agents, new_share=0.5), rng, retries=3)


# ------------------------------------------------------------------ text extraction


def sweep_prompt(rng: random.Random, topic_id: str) -> text.Prompt:
    """One query of a distillation sweep: a question or an instruction task."""
    if rng.random() < 0.75:
        return text.question(rng, topic_id, generic_share=0.5)
    return text.dev_task(rng, topic_id)


def sweep_topics(rng: random.Random, n: int, topics: tuple[str, ...] = text.TOPIC_IDS) -> list[str]:
    """Topic of each of ``n`` sweep queries: uniform at random, or cycling systematically."""
    if rng.random() < 0.5:
        return [rng.choice(topics) for _ in range(n)]
    order = list(topics)
    rng.shuffle(order)
    return [order[i % len(order)] for i in range(n)]


def _generation_params(rng: random.Random, path: str, logprobs: bool) -> dict:
    """Greedy decoding with long outputs and, usually, the top alternatives per token."""
    params: dict = {"temperature": 0.0, "max_tokens": rng.choice((512, 1024, 2048))}
    if logprobs:
        params.update({"logprobs": True, "top_logprobs": rng.choice((5, 10, 20))}
                      if path == CHAT else {"logprobs": rng.choice((1, 5))})
    return params


def _text_steps(
    rng: random.Random, topics: list[str], path: str, model: str, params: dict
) -> Iterator[Step]:
    """One sweep query per entry of ``topics``."""
    for topic_id in topics:
        yield Request(path, model, sweep_prompt(rng, topic_id).text, None, params), topic_id


def extraction(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Distillation sweep over many topics.

    ``logprobs``: temperature 0 with top logprobs, scripted pacing, the big model.
    ``stealth``: temperature 0.7 or defaults, no logprobs, human-paced daytime sessions.
    ``paraphrase``: seed prompts each followed by several rewordings, often with ``n`` > 1.
    """
    client = attacker_key(world, rng, human=variant == "stealth")
    path = COMPLETIONS if rng.random() < 0.25 else CHAT
    model = _target(rng, INSTRUCT_MODELS if path == COMPLETIONS else CHAT_MODELS)
    start = rng.uniform(0, world.duration * 0.3)
    if variant == "logprobs":
        steps = _text_steps(rng, sweep_topics(rng, size), path, model,
                            _generation_params(rng, path, logprobs=True))
        run_machine(client, start, steps, rng.uniform(0.7, 2.5), rng.uniform(0.02, 0.2),
                    concurrent=rng.random() < 0.5)
    elif variant == "stealth":
        params = rng.choice(({"temperature": 0.7}, {}, {"temperature": 0.7, "max_tokens": 2048}))
        steps = _text_steps(rng, sweep_topics(rng, size), CHAT, _target(rng, CHAT_MODELS), params)
        run_human(client, steps, rng.choice(TIMEZONES), rng.uniform(15, 40), (8, 40))
    else:
        params = (_generation_params(rng, path, logprobs=True) if rng.random() < 0.4
                  else {"temperature": 1.0, "n": rng.choice((2, 3, 4, 5)), "max_tokens": 1024})
        run_machine(client, start, _paraphrase_steps(rng, size, path, model, params),
                    rng.uniform(1.0, 4.0), 0.15, concurrent=False)
    return client


def _paraphrase_steps(
    rng: random.Random, size: int, path: str, model: str, params: dict
) -> Iterator[Step]:
    """``size`` queries: seed prompts, each followed by a few rewordings of it."""
    sent = 0
    for topic_id in sweep_topics(rng, size):
        seed = sweep_prompt(rng, topic_id).text
        for i in range(rng.randint(3, 7)):
            if sent >= size:
                return
            prompt = seed if i == 0 else text.paraphrase(rng, seed)
            yield Request(path, model, prompt, None, params), topic_id
            sent += 1


# -------------------------------------------------------------- text boundary probing


def _classifier_input(rng: random.Random, model: str) -> text.Prompt:
    """A fresh input for the text classifier ``model``."""
    return text.review(rng) if model == SENTIMENT_MODEL else text.ticket(rng)


def chain_steps(
    rng: random.Random, model: str, params: dict | None, ops: str, width: int, size: int
) -> Iterator[Step]:
    """Chains of small perturbations: from a seed input, try ``width`` edits per step and
    continue from one of them (greedy word/char substitution attacks)."""
    sent = 0
    while sent < size:
        seed = _classifier_input(rng, model)
        current = seed.text
        yield Request(CLASSIFY, model, current, None, params), seed.topic
        sent += 1
        for _ in range(rng.randint(8, 40)):
            candidates = [text.perturb(rng, current, ops) for _ in range(width)]
            for candidate in candidates:
                yield Request(CLASSIFY, model, candidate, None, params), seed.topic
            sent += width
            current = rng.choice(candidates)
            if sent >= size:
                return


def boundary(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Decision-boundary probing of a text classifier with chains of tiny edits.

    ``greedy``: several candidate edits per step (word swaps, synonyms, typos, inserts,
    deletes). ``walk``: one edit per step. ``char``: character-level edits only.
    """
    client = attacker_key(world, rng, human=False)
    model = rng.choice((SENTIMENT_MODEL, INTENT_MODEL))
    params = {"logprobs": True} if rng.random() < 0.6 else None
    ops = "char" if variant == "char" else "swap,synonym,char,insert,delete"
    width = 1 if variant == "walk" else rng.randint(2, 4)
    steps = chain_steps(rng, model, params, ops, width, size)
    start = rng.uniform(0, world.duration * 0.4)
    if rng.random() < 0.3:  # semi-manual probing from a notebook
        run_human(client, steps, rng.choice(TIMEZONES), rng.uniform(4, 10), (30, 120))
    else:
        run_machine(client, start, steps, rng.uniform(0.3, 1.5), 0.1, rng.random() < 0.5)
    return client


# ---------------------------------------------------------------------- numeric model


def numeric_steps(rows: np.ndarray) -> Iterator[Step]:
    """One fraud-model request per (already serialised) feature row."""
    for features in rows_to_lists(rows):
        yield Request(PREDICT, FRAUD_MODEL, None, features), None


def _style(rng: random.Random) -> str:
    """How an attack script serialises features: often raw floats, but a careful attacker
    formats them like customers do."""
    return rng.choices(FORMATS, (2, 2, 1, 1, 4))[0]


def numeric_random(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Random queries across the feature space.

    ``uniform``: uniform in the documented feature box. ``gaussian``: independent normals
    with the public per-column mean and spread, rounded like real data.
    """
    client = attacker_key(world, rng, human=False)
    model = world.tabular
    nrng = np.random.default_rng(rng.getrandbits(64))
    if variant == "uniform":
        rows = model.render(nrng.uniform(model.low, model.high, (size, DIM)), _style(rng))
    else:
        rows = nrng.normal(model.mean, model.std, (size, DIM))
        rows = model.render(np.clip(rows, model.low, model.high), "stored")
    run_machine(client, rng.uniform(0, world.duration * 0.4), numeric_steps(rows),
                rng.uniform(0.4, 2.0), 0.1, rng.random() < 0.5)
    return client


def synthetic(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Papernot-style Jacobian augmentation: a small seed set, then rounds that add
    ``x + lambda * sign(direction)`` for every point, with pauses to retrain the substitute.

    ``jacobian``: the whole set is augmented each round. ``reservoir``: only a random
    subset of bounded size is augmented each round.
    """
    client = attacker_key(world, rng, human=False)
    model = world.tabular
    nrng = np.random.default_rng(rng.getrandbits(64))
    points = Subpopulation(model, nrng).sample(nrng, rng.randint(20, 60))
    step = rng.uniform(0.05, 0.2) * model.std
    style = _style(rng)
    t = rng.uniform(0, world.duration * 0.3)
    batch, sent, rounds = points, 0, 0
    while sent < size:
        batch = batch[: size - sent]
        steps = numeric_steps(model.render(batch, style))
        t = run_machine(client, t, steps, rng.uniform(0.3, 1.0), 0.1, concurrent=True)
        sent += len(batch)
        rounds += 1
        t += rng.uniform(180, 1200)  # train the substitute model on the new labels
        parents = points
        if variant == "reservoir" and len(points) > 150:
            parents = points[nrng.choice(len(points), 150, replace=False)]
        substitute = nrng.normal(0, 1, (2, DIM))  # sign of the substitute's Jacobian
        direction = np.sign(substitute[model.label(parents)] + nrng.normal(0, 0.5, parents.shape))
        sign = -1 if (rounds // 3) % 2 else 1  # periodic step-size flip (Papernot et al.)
        batch = np.clip(parents + sign * step * direction, model.low, model.high)
        points = np.vstack([points, batch])
    return client


def boundary_search(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Locate the numeric classifier's decision boundary.

    ``bisect``: binary search between pairs of points the model labels differently.
    ``line``: walk from a point along a random direction until the label flips, then bisect.
    Both produce long runs of nearly identical points.
    """
    client = attacker_key(world, rng, human=False)
    nrng = np.random.default_rng(rng.getrandbits(64))
    steps = numeric_steps(world.tabular.render(probe_rows(world, nrng, variant, size),
                                                _style(rng)))
    run_machine(client, rng.uniform(0, world.duration * 0.4), steps, rng.uniform(0.3, 1.5), 0.08,
                rng.random() < 0.5)
    return client


def probe_rows(world: World, nrng: np.random.Generator, variant: str, size: int) -> np.ndarray:
    """``size`` boundary-search queries (see :func:`boundary_search` for the variants)."""
    model = world.tabular
    pool = model.population(nrng, 3000)
    labels = model.label(pool)
    negatives, positives = pool[labels == 0], pool[labels == 1]
    rows: list[np.ndarray] = []
    while len(rows) < size:
        a = negatives[nrng.integers(len(negatives))]
        if variant == "line":
            direction = nrng.normal(0, 1, DIM) * model.std * nrng.uniform(0.1, 0.4)
            b = a
            for _ in range(25):
                a, b = b, np.clip(b + direction, model.low, model.high)
                rows.append(b)
                if model.label(b[None])[0] == 1:
                    break
        else:
            b = positives[nrng.integers(len(positives))]
            rows += [a, b]
        rows += _bisect(model, a, b, int(nrng.integers(8, 17)))
    return np.array(rows[:size])


def _bisect(model: TabularModel, a: np.ndarray, b: np.ndarray, steps: int) -> list[np.ndarray]:
    """Midpoints queried by a binary search for the label change between ``a`` and ``b``."""
    side_a = model.label(a[None])[0]
    queried = []
    for _ in range(steps):
        mid = (a + b) / 2
        queried.append(mid)
        if model.label(mid[None])[0] == side_a:
            a = mid
        else:
            b = mid
    return queried


# ----------------------------------------------------------------- mixed with cover


def _interleave(
    rng: random.Random, attack: Iterator[Step], cover: Iterator[Step], cover_share: float
) -> Iterator[tuple[Step, str]]:
    """Steps from ``attack``, with benign-looking ``cover`` steps mixed in."""
    while True:
        if rng.random() < cover_share:
            yield next(cover), "cover"
        else:
            step = next(attack, None)
            if step is None:
                return
            yield step, "attack"


def _chat_cover(
    rng: random.Random, topics: list[str], model: str, params: dict, history: bool = False
) -> Iterator[Step]:
    """Endless focused chat on a couple of topics, with follow-ups: sent as isolated
    prompts by a script, or with ``history``, each follow-up carrying the conversation
    so far, as a chat front end sends it."""
    prompt = text.question(rng, rng.choice(topics))
    turn, context = 0, 0
    while True:
        request = Request(CHAT, model, prompt.text, None, params)
        if history:
            request.turns, request.context_tokens = turn, context
        yield request, prompt.topic
        if rng.random() < 0.6:
            if history:
                context += tokens(prompt.text) + int(rng.lognormvariate(math.log(170), 0.75))
            prompt, turn = text.follow_up(rng, prompt), turn + 1
        else:
            prompt, turn, context = text.question(rng, rng.choice(topics)), 0, 0


def _with_made_up_history(rng: random.Random, steps: Iterator[Step], share: float) -> Iterator[Step]:
    """Chat requests that carry a made-up earlier exchange or two ``share`` of the time,
    so that they look like follow-ups in a conversation."""
    for request, topic in steps:
        if request.path == CHAT and rng.random() < share:
            request.turns = rng.choice((1, 1, 2, 3))
            request.context_tokens = request.turns * int(rng.lognormvariate(math.log(220), 0.5))
        yield request, topic


def _classify_cover(rng: random.Random, model: str, params: dict | None) -> Iterator[Step]:
    """Endless ordinary tickets or reviews from two categories."""
    focus = rng.sample(text.TICKET_INTENTS if model == INTENT_MODEL else text.REVIEW_CATEGORIES, 2)
    while True:
        item = (text.ticket(rng, rng.choice(focus)) if model == INTENT_MODEL
                else text.review(rng, rng.choice(focus)))
        yield Request(CLASSIFY, model, item.text, None, params), item.topic


def _numeric_cover(world: World, nrng: np.random.Generator, style: str) -> Iterator[Step]:
    """Endless realistic rows of one customer-like sub-population."""
    population = Subpopulation(world.tabular, nrng)
    while True:
        yield from numeric_steps(world.tabular.render(population.sample(nrng, 64), style))


def mixed(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """An attacker hiding extraction among 30-50% benign-looking queries on one key.

    ``extraction``: focused chat with follow-ups mixed with a topic sweep, human-paced.
    ``boundary``: ordinary tickets or reviews mixed with perturbation chains.
    ``numeric``: one customer's realistic rows mixed with boundary bisection.
    """
    client = attacker_key(world, rng, human=variant == "extraction")
    share = rng.uniform(0.3, 0.5)
    attack_size = int(size * (1 - share))
    tz = rng.choice(TIMEZONES)
    if variant == "extraction":
        params = rng.choice(({"temperature": 0.7}, {"temperature": 0.0, "logprobs": True,
                                                    "top_logprobs": 5}))
        model = _target(rng, CHAT_MODELS)
        attack = _text_steps(rng, sweep_topics(rng, attack_size), CHAT, model, params)
        cover = _chat_cover(rng, text.popular_topics(rng, 2), model, params)
    elif variant == "boundary":
        model = rng.choice((SENTIMENT_MODEL, INTENT_MODEL))
        params = {"logprobs": True} if rng.random() < 0.5 else None
        attack = chain_steps(rng, model, params, "swap,synonym,char,insert,delete",
                             rng.randint(1, 3), attack_size)
        cover = _classify_cover(rng, model, params)
    else:
        nrng = np.random.default_rng(rng.getrandbits(64))
        style = _style(rng)
        probes = probe_rows(world, nrng, "bisect", attack_size)
        attack = numeric_steps(world.tabular.render(probes, style))
        cover = _numeric_cover(world, nrng, style)
    steps = list(_interleave(rng, attack, cover, share))
    if variant == "extraction":
        _sessions(client, steps, tz)
    else:  # arrivals spread over office hours, like an integration's traffic
        times = sorted(active_time(rng, world, tz, office=True) for _ in steps)
        for t, ((request, topic), role) in zip(times, steps, strict=True):
            client.send(t, request, topic, role)
    return client


def _sessions(client: Client, steps: list[tuple[Step, str]], tz: float) -> None:
    """Human-paced sessions (about 25 requests each) over steps carrying their own role."""
    rng = client.rng
    t = active_time(rng, client.world, tz)
    for (request, topic), role in steps:
        reply = client.send(t, request, topic, role)
        t = reply.done + think_time(rng, 25)
        if rng.random() < 1 / 25:
            t = active_time(rng, client.world, tz)


# ------------------------------------------------------ attackers that look natural


def natural(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Queries that are each an ordinary in-domain input, drawn from a public data set.

    Knockoff Nets (Orekondy et al., CVPR 2019) and Copycat CNN (Correia-Silva et al., 2018)
    query the victim with natural samples of the problem domain, not synthetic ones: no
    single query is unusual. What accumulates is how the set is drawn: evenly over the
    whole domain (the "random" strategy), one question each (no conversation), at volume.

    ``knockoff``: chat questions sampled uniformly over all topics, default parameters.
    ``copycat``: natural reviews and tickets for a text classifier, scripted.
    ``numeric``: real rows of the tabular domain from every customer segment.
    """
    client = attacker_key(world, rng, human=False)
    start = rng.uniform(0, world.duration * 0.4)
    if variant == "knockoff":
        model = _target(rng, CHAT_MODELS)
        params = rng.choice(({}, {"temperature": 0.7}, {"max_tokens": 1024}))
        steps = ((Request(CHAT, model, text.question(rng, t, generic_share=0.35).text, None, params), t)
                 for t in (rng.choice(text.TOPIC_IDS) for _ in range(size)))
        run_machine(client, start, steps, rng.uniform(3.0, 12.0), 0.4, concurrent=False)
    elif variant == "copycat":
        model = rng.choice((SENTIMENT_MODEL, INTENT_MODEL))
        steps = (((item := _classifier_input(rng, model)) and (Request(CLASSIFY, model, item.text, None, None), item.topic))
                 for _ in range(size))
        run_machine(client, start, steps, rng.uniform(1.0, 5.0), 0.3, concurrent=rng.random() < 0.5)
    else:
        nrng = np.random.default_rng(rng.getrandbits(64))
        segments = [Subpopulation(world.tabular, nrng) for _ in range(12)]
        rows = np.concatenate([segments[i % len(segments)].sample(nrng, 1) for i in range(size)])
        run_machine(client, start, numeric_steps(world.tabular.render(rows, _style(rng))),
                    rng.uniform(2.0, 8.0), 0.3, concurrent=False)
    return client


_SELF_INSTRUCT_VERBS = (
    "Write", "Explain", "Summarize", "List", "Classify", "Rewrite", "Generate", "Translate",
    "Describe", "Compare", "Give an example of", "Create a short quiz about", "Outline",
)


def instruction(rng: random.Random, topic_id: str) -> text.Prompt:
    """One machine-written instruction in the Self-Instruct manner: a task verb, an object
    drawn from a seed question or task, sometimes an input to work on."""
    seed = text.question(rng, topic_id, generic_share=0.5) if rng.random() < 0.6 else text.dev_task(rng, topic_id)
    body = seed.text.rstrip("?.").lower()
    prompt = f"{rng.choice(_SELF_INSTRUCT_VERBS)} {body}."
    if rng.random() < 0.4:
        prompt += f"\nInput: {text.passage(rng, topic_id, rng.randint(1, 3))}"
    return text.Prompt(prompt, topic_id, seed.focus)


def distill(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Instruction distillation: an LLM writes diverse instructions, the victim answers them.

    Self-Instruct (Wang et al., ACL 2023) and Alpaca (Taori et al., 2023) generate tens of
    thousands of instructions from a few seed tasks and keep the teacher's answers. Each
    prompt is a plausible request; the set is diverse by construction (near-duplicates are
    filtered out), spans every topic, and arrives from a pipeline.

    ``selfinstruct``: batches of instructions sent in bursts, temperature 0.7-1.
    ``alpaca``: a steady stream with long outputs at temperature 1.
    """
    client = attacker_key(world, rng, human=False)
    model = _target(rng, CHAT_MODELS)
    start = rng.uniform(0, world.duration * 0.4)
    topics = sweep_topics(rng, size)
    if variant == "selfinstruct":
        params = {"temperature": rng.choice((0.7, 1.0)), "max_tokens": rng.choice((512, 1024))}
        steps = ((Request(CHAT, model, instruction(rng, t).text, None, params), t) for t in topics)
        run_machine(client, start, steps, rng.uniform(0.5, 2.0), 0.3, concurrent=True)
    else:
        params = {"temperature": 1.0, "max_tokens": rng.choice((1024, 2048))}
        steps = ((Request(CHAT, model, instruction(rng, t).text, None, params), t) for t in topics)
        run_machine(client, start, steps, rng.uniform(4.0, 10.0), 0.2, concurrent=False)
    return client


def logits(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """Reading a language model's logits through its API: ``logit_bias`` and one output token.

    Carlini et al. ("Stealing part of a production language model", ICML 2024) and Finlayson
    et al. (2024) recover a production model's final layer from an API that returns the top
    few logprobs and accepts a ``logit_bias``: each prompt is resent with a large bias on a
    different block of tokens, which pushes them into the top few, until its logit vector is
    read; a few thousand such vectors give the hidden dimension and the output projection.
    Each prompt is ordinary; what a key shows is the same prompt resent many times, a
    different bias each time, one token out, at temperature 0, from a script.

    ``topk``: top_logprobs 5 and +100 on a fresh block of 4 tokens per request.
    ``argmax``: the logprob-free variant, no logprobs at all: one token biased per request, by a
    different amount each time, watching whether it wins the argmax (the paper searches each
    token's bias by bisection; here token and amount are drawn afresh, the same request shape).
    """
    client = attacker_key(world, rng, human=False)
    model = _target(rng, CHAT_MODELS)
    start = rng.uniform(0, world.duration * 0.4)

    def steps() -> Iterator[Step]:
        sent = 0
        while sent < size:
            topic = rng.choice(text.TOPIC_IDS)
            prompt = text.question(rng, topic, generic_share=0.5).text
            for _ in range(min(size - sent, rng.randint(20, 60))):
                if variant == "topk":
                    params = {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 5, "logit_bias": token_bias(rng, 4)}
                else:
                    bias = {str(rng.randrange(100, 100_000)): round(rng.uniform(-40.0, 40.0), 2)}
                    params = {"temperature": 0.0, "max_tokens": 1, "logit_bias": bias}
                sent += 1
                yield Request(CHAT, model, prompt, None, params), topic

    run_machine(client, start, steps(), rng.uniform(0.5, 3.0), 0.3, concurrent=rng.random() < 0.5)
    return client


def adaptive(world: World, rng: random.Random, variant: str, size: int) -> Client:
    """An attacker that knows about stateful defences (OARS, CCS '23) and tries to stay under them.

    ``slow``: a distillation sweep at human pace in short daytime sessions, long pauses
    between them, half of the queries a focused benign-looking conversation.
    ``shaped``: a sweep whose requests copy an ordinary customer's shape (default
    temperature, no logprobs, modest max_tokens, a made-up earlier exchange in most chat
    requests, so they read as follow-ups) and interleave a third of cover chat.
    Both send their cover chat as a chat front end does, the conversation with each follow-up.
    """
    client = attacker_key(world, rng, human=True)
    model = _target(rng, CHAT_MODELS)
    share = 0.5 if variant == "slow" else 0.33
    attack_size = int(size * (1 - share))
    params = {} if variant == "shaped" else rng.choice(({"temperature": 0.7}, {}))
    attack = _text_steps(rng, sweep_topics(rng, attack_size), CHAT, model, params)
    if variant == "shaped":
        attack = _with_made_up_history(rng, attack, 0.6)
    cover = _chat_cover(rng, text.popular_topics(rng, 2), model, params, history=True)
    steps = list(_interleave(rng, attack, cover, share))
    tz = rng.choice(TIMEZONES)
    if variant == "slow":
        t = active_time(rng, world, tz)
        for (request, topic), role in steps:
            reply = client.send(t, request, topic, role)
            t = reply.done + think_time(rng, 40)
            if rng.random() < 1 / 15:
                t += rng.uniform(1800, 5400)  # a long pause, as if waiting out a throttle
    else:
        _sessions(client, steps, tz)
    return client


# --------------------------------------------------------------------------- campaigns


def campaign(world: World, rng: random.Random, variant: str, size: int, keys: int) -> list[Client]:
    """One operator's sweep split over ``keys`` API keys, each small and under the rate limit,
    with complementary coverage.

    ``hosting``: keys created in one burst, used from a few /24s of one hosting ASN with one
    to three SDK user agents; each key covers its own few topics, so each looks focused.
    ``proxy``: aged keys, residential proxy addresses across many ASNs, varied user agents,
    human-paced; the sweep is dealt round-robin across keys.
    ``numeric``: random feature-space queries split over hosting keys.
    ``rotate``: an adaptive operator (OARS): one key at a time, each from a fresh residential
    address and user agent, dropped after a small budget (as if after a throttle) for the
    next; the sweep continues where the last key stopped.
    """
    if variant == "rotate":
        return _rotating_keys(world, rng, size, keys)
    clients = campaign_keys(world, rng, "proxy" if variant == "proxy" else "hosting", keys)
    per_key = max(10, size // keys)
    model = _target(rng, CHAT_MODELS)
    if variant == "numeric":
        rows = _campaign_rows(world, rng, per_key * keys)
        for i, client in enumerate(clients):
            steps = numeric_steps(rows[i::keys])
            run_machine(client, rng.uniform(0, world.duration * 0.85), steps,
                        rng.uniform(2.0, 6.0), 0.1, concurrent=False)
    elif variant == "hosting":
        params = _generation_params(rng, CHAT, logprobs=rng.random() < 0.7)
        order = list(text.TOPIC_IDS)
        rng.shuffle(order)
        width = rng.randint(2, 4)
        for i, client in enumerate(clients):
            mine = tuple(order[(i * width + j) % len(order)] for j in range(width))
            steps = _text_steps(rng, sweep_topics(rng, per_key, mine), CHAT, model, params)
            run_machine(client, rng.uniform(0, world.duration * 0.85), steps,
                        rng.uniform(2.0, 8.0), 0.15, concurrent=False)
    else:
        params = rng.choice(({"temperature": 0.7}, {}))
        topics = sweep_topics(rng, per_key * keys)
        for i, client in enumerate(clients):
            steps = _text_steps(rng, topics[i::keys], CHAT, model, params)
            run_human(client, steps, rng.choice(TIMEZONES), rng.uniform(15, 40), (10, 50))
    return clients


def campaign_keys(world: World, rng: random.Random, kind: str, keys: int) -> list[Client]:
    """One operator's ``keys`` keys: ``hosting`` (created in one burst, used from a few /24s of
    one hosting ASN with one to three SDK user agents) or ``proxy`` (aged keys behind
    residential proxies across many ASNs, varied user agents)."""
    if kind == "proxy":
        return [_proxy_key(world, rng) for _ in range(keys)]
    if kind != "hosting":
        raise ValueError(f"unknown kind of campaign keys {kind!r}")
    asn = rng.choice(ASNS["cloud"])
    nets = [subnet(rng, asn) for _ in range(rng.randint(1, 3))]
    agents = rng.sample(SDK_AGENTS, rng.choice((1, 1, 2, 3)))
    burst = -rng.uniform(1, 3) * DAY
    return [_hosting_key(world, rng, asn, nets, agents, burst) for _ in range(keys)]


def _rotating_keys(world: World, rng: random.Random, size: int, keys: int) -> list[Client]:
    clients = [_proxy_key(world, rng) for _ in range(keys)]
    model = _target(rng, CHAT_MODELS)
    params = rng.choice(({"temperature": 0.7}, {}, {"temperature": 0.0, "max_tokens": 1024}))
    per_key = max(10, size // keys)
    topics = sweep_topics(rng, per_key * keys)
    t = rng.uniform(0, world.duration * 0.2)
    for i, client in enumerate(clients):
        steps = _text_steps(rng, topics[i * per_key : (i + 1) * per_key], CHAT, model, params)
        t = run_machine(client, t, steps, rng.uniform(6.0, 20.0), 0.5, concurrent=False)
        t += rng.uniform(300, 3600)  # a pause before the next key
    return clients


def _proxy_key(world: World, rng: random.Random) -> Client:
    """An aged (bought or stolen) key used through rotating residential proxies."""
    devices = []
    for _ in range(rng.randint(1, 3)):
        asn = rng.choice(ASNS["residential"] + ASNS["mobile"])
        devices.append(Device(address(rng, asn), asn, rng.choice(ALL_AGENTS)))
    created = -min(600.0, rng.lognormvariate(math.log(90), 0.8)) * DAY
    return Client(world, Identity(world.new_key(rng), created, devices, stickiness=0.5), rng)


def _hosting_key(
    world: World, rng: random.Random, asn: int, nets: list[str], agents: list[str], burst: float
) -> Client:
    """A key created in the campaign's sign-up burst, used from its hosting subnets."""
    device = Device(address(rng, asn, rng.choice(nets)), asn, rng.choice(agents))
    return Client(world, Identity(world.new_key(rng), burst - rng.uniform(0, 7200), [device]), rng)


def _campaign_rows(world: World, rng: random.Random, n: int) -> np.ndarray:
    """The numeric campaign's queries: uniform over the box, or per-column Gaussians."""
    model = world.tabular
    nrng = np.random.default_rng(rng.getrandbits(64))
    if rng.random() < 0.5:
        return model.render(nrng.uniform(model.low, model.high, (n, DIM)), _style(rng))
    rows = np.clip(nrng.normal(model.mean, model.std, (n, DIM)), model.low, model.high)
    return model.render(rows, "stored")


# attack kind (the label's ``kind``) -> (generator, its variants)
ATTACKS: dict[str, tuple[Attack, tuple[str, ...]]] = {
    "extraction": (extraction, ("logprobs", "stealth", "paraphrase")),
    "boundary": (boundary, ("greedy", "walk", "char")),
    "random": (numeric_random, ("uniform", "gaussian")),
    "synthetic": (synthetic, ("jacobian", "reservoir")),
    "boundary_search": (boundary_search, ("bisect", "line")),
    "mixed": (mixed, ("extraction", "boundary", "numeric")),
    "natural": (natural, ("knockoff", "copycat", "numeric")),
    "distill": (distill, ("selfinstruct", "alpaca")),
    "adaptive": (adaptive, ("slow", "shaped")),
    "logits": (logits, ("topk", "argmax")),
}
