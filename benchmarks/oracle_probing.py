"""Attackers that probe the decisions themselves (OARS, CCS '23), replayed in a closed loop.

An open-loop replay sends every attacker's queries whatever the gateway answers. A real
adaptive attacker watches the answers: the moment it is refused (429, 403, a challenge) it
either backs off and resumes later on the same key, or drops the key and carries on with a
fresh key from a fresh address. Here each single-key attacker of the evaluation traffic
keeps its planned queries (content and pacing) but sends them one by one against the
detector, mixed by time with the day's benign traffic; the gateway answers each query with
the key's action as the detector left it (decisions reach the gateway within ``--lag``
seconds), and the attacker reacts:

- ``oblivious``: ignores the answers (the open-loop replay, for comparison);
- ``back-off``: on a refusal, waits (1 h, doubling each time) and resends the refused query
  on the same key at half its previous pace;
- ``new-key``: on a refusal, waits 10 minutes and resends it on a fresh key from a fresh
  address (keys are cheap), up to ``--max-keys`` keys.

Two enforcement modes: ``visible`` (throttle is a 429) and ``silent`` (throttle is the API's
``degrade``: a 200 with logprobs stripped and output capped, so the attacker does not learn it
was flagged; challenge and deny stay visible). The attacker's goal is its whole plan answered
in full; the table says how much of it was, with how many keys, per strategy and mode.

    python benchmarks/oracle_probing.py                      # baseline of 100, eval seed 1
    python benchmarks/oracle_probing.py --eval-seeds 1 2 3 --baseline-clients 300
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detection import BENIGN_CLIENTS_AT_SCALE_1, load, vectorize  # noqa: E402
from detectors import CloneDetector, fit_clone_model  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402
from detectors.vectorize import Vectorizer  # noqa: E402
from schemas import AccessEvent, to_rfc3339  # noqa: E402

KINDS = ("extraction", "distill", "random", "synthetic", "boundary_search", "boundary", "mixed", "natural", "adaptive")
STRATEGIES = ("oblivious", "back-off", "new-key")
MODES = ("visible", "silent")
FIRST_PAUSE_S = 3600.0
NEW_KEY_PAUSE_S = 600.0


@dataclass
class ProbingAttacker:
    """One attacker: its planned queries (events in send order, with vectors) and what it learned."""

    kind: str
    plan: list[tuple[AccessEvent, np.ndarray | None]]
    strategy: str
    max_keys: int
    next_query: int = 0
    t: float = 0.0
    pace: float = 1.0  # multiplies the planned gaps
    pause: float = FIRST_PAUSE_S
    keys: list[str] = field(default_factory=list)
    ip: str | None = None
    asn: int | None = None
    full: int = 0  # queries answered in full
    degraded: int = 0  # answered, with less (silent throttle)
    refused: int = 0
    first_action: int | None = None  # queries sent before the first non-allow answer
    sent: int = 0
    gave_up: bool = False

    def __post_init__(self) -> None:
        first = self.plan[0][0]
        self.t, self.keys, self.ip, self.asn = float(first.ts), [first.client_id], first.ip, first.asn

    @property
    def key(self) -> str:
        return self.keys[-1]

    @property
    def done(self) -> bool:
        return self.gave_up or self.next_query >= len(self.plan)

    def query(self, action: str, mode: str) -> tuple[AccessEvent, np.ndarray | None]:
        """The next planned query as the gateway logs it, answered with the key's ``action``."""
        event, vector = self.plan[self.next_query]
        fresh = len(self.keys) > 1
        event = msgspec.structs.replace(
            event, ts=self.t, client_id=self.key, ip=self.ip, asn=self.asn, status=_status(action, mode) or event.status,
            key_created=to_rfc3339(self.t - 60.0) if fresh else event.key_created,
        )  # fmt: skip
        return event, vector

    def answered(self, action: str, mode: str) -> None:
        """React to the gateway's answer to the query just sent."""
        self.sent += 1
        if action != "allow" and self.first_action is None:
            self.first_action = self.sent
        if action == "allow" or (action == "throttle" and mode == "silent"):
            if action == "allow":
                self.full += 1
            else:
                self.degraded += 1
            self._advance()
            return
        self.refused += 1
        if self.strategy == "oblivious":
            self._advance()
        elif self.strategy == "back-off":
            self.t += self.pause
            self.pause *= 2.0
            self.pace *= 2.0
        else:
            if len(self.keys) >= self.max_keys:
                self.gave_up = True
                return
            self.keys.append(f"{self.keys[0]}-k{len(self.keys)}")
            h = hashlib.sha256(self.key.encode()).digest()  # a fresh residential address: another network, another ASN
            self.ip, self.asn = f"100.{64 + h[0] % 64}.{h[1]}.{h[2] % 254 + 1}", 64512 + int.from_bytes(h[3:5], "big") % 1000
            self.t += NEW_KEY_PAUSE_S

    def _advance(self) -> None:
        self.next_query += 1
        if self.next_query < len(self.plan):
            gap = float(self.plan[self.next_query][0].ts) - float(self.plan[self.next_query - 1][0].ts)
            self.t += max(gap, 0.0) * self.pace


def _status(action: str, mode: str) -> int | None:
    """The status a refused query is logged with (None: as planned)."""
    if action == "allow" or (action == "throttle" and mode == "silent"):
        return None
    return 429 if action == "throttle" else 403


def closed_loop(model, benign, benign_ids: set[str], attackers: list[ProbingAttacker], mode: str, lag: float, until: float) -> dict:
    """Replay benign events as logged and attackers query by query; decisions act after ``lag`` seconds."""
    detector = CloneDetector.from_model(model)
    states: dict = {}
    actions: dict[str, str] = {}  # what the gateway enforces: the action as of the last batch
    benign_flagged: set[str] = set()
    b = 0
    queue = [(a.t, i) for i, a in enumerate(attackers)]
    heapq.heapify(queue)
    while b < len(benign) or queue:
        next_benign = benign[b][0].ts if b < len(benign) else np.inf
        next_attack = queue[0][0] if queue else np.inf
        if min(next_benign, next_attack) > until:
            break
        batch = []
        if next_benign < next_attack:  # benign events need no answer: one batch up to the next attacker query
            while b < len(benign) and benign[b][0].ts < next_attack and len(batch) < 256:
                batch.append(benign[b])
                b += 1
        else:  # the attackers' queries of the next ``lag`` seconds, answered as the gateway knows them now
            horizon = next_attack + lag
            while b < len(benign) and benign[b][0].ts < horizon:
                batch.append(benign[b])
                b += 1
            while queue and queue[0][0] < horizon:
                _, i = heapq.heappop(queue)
                attacker = attackers[i]
                action = actions.get(attacker.key, "allow")
                batch.append(attacker.query(action, mode))
                attacker.answered(action, mode)
                if not attacker.done and attacker.t <= until:
                    heapq.heappush(queue, (attacker.t, i))
        order = sorted(range(len(batch)), key=lambda k: batch[k][0].ts)
        result = detector.process([batch[k][0] for k in order], [batch[k][1] for k in order], states)
        for decision in result.decisions:
            actions[decision.client_id] = decision.action.value
            if decision.action.value != "allow" and decision.client_id in benign_ids:
                benign_flagged.add(decision.client_id)
    return {"benign_flagged": len(benign_flagged)}


def summarize(attackers: list[ProbingAttacker]) -> dict:
    firsts = [a.first_action for a in attackers if a.first_action is not None]
    return {
        "attackers": len(attackers),
        "acted_on": len(firsts),
        "median_queries_before_first_action": float(np.median(firsts)) if firsts else None,
        "planned_queries": sum(len(a.plan) for a in attackers),
        "share_answered_in_full": sum(a.full for a in attackers) / sum(len(a.plan) for a in attackers),
        "share_answered_degraded": sum(a.degraded for a in attackers) / sum(len(a.plan) for a in attackers),
        "plans_answered_in_full": sum(1 for a in attackers if a.full == len(a.plan)),
        "median_keys": float(np.median([len(a.keys) for a in attackers])),
        "max_keys": max(len(a.keys) for a in attackers),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seed", type=int, default=101)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--scale", type=float, default=0.3, help="evaluation traffic size (as the detection benchmark)")
    parser.add_argument("--baseline-clients", type=int, default=100)
    parser.add_argument("--lag", type=float, default=5.0, help="seconds before a decision reaches the gateway (default: %(default)s)")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES), help="attacker strategies to run (default: all)")
    parser.add_argument("--max-keys", type=int, default=50, help="keys a new-key attacker is ready to burn (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "oracle-probing.json")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    args = parser.parse_args()

    vectorizer = Vectorizer(PromptEmbedder(disk_cache=args.cache))
    base_events, _ = load("benign", args.train_seed, args.baseline_clients / BENIGN_CLIENTS_AT_SCALE_1)
    base_vectors = vectorize(vectorizer, base_events, "baseline")
    started = time.monotonic()
    model = fit_clone_model(base_events, base_vectors, n_jobs=-1)
    print(f"baseline: {model.metadata['training_clients']} benign clients, fitted in {time.monotonic() - started:.0f} s", file=sys.stderr)
    report = {"baseline_clients": model.metadata["training_clients"], "scale": args.scale, "lag_s": args.lag, "runs": []}
    rows: dict[tuple[str, str], list[ProbingAttacker]] = {}
    benign_flagged: list[str] = []
    for seed in args.eval_seeds:
        events, labels = load("full", seed, args.scale)
        vectors = vectorize(vectorizer, events, f"full seed {seed}")
        kind_of = {l["client_id"]: l["kind"] for l in labels if l["label"] == "attack" and not l["campaign"] and l["kind"] in KINDS}
        benign_ids = {l["client_id"] for l in labels if l["label"] == "benign"}
        benign = [(e, v) for e, v in zip(events, vectors) if e.client_id in benign_ids]
        plans: dict[str, list] = {c: [] for c in kind_of}
        for e, v in zip(events, vectors):
            if e.client_id in plans:
                plans[e.client_id].append((e, v))
        until = max(e.ts for e in events) + 86400.0  # the attackers may carry on for a day after the traffic ends
        for mode in MODES:
            for strategy in args.strategies:
                if strategy == "oblivious" and mode == "silent":
                    continue  # the same queries as visible: the answers are not looked at
                attackers = [ProbingAttacker(kind_of[c], plan, strategy, args.max_keys) for c, plan in plans.items()]
                started = time.monotonic()
                outcome = closed_loop(model, benign, benign_ids, attackers, mode, args.lag, until)
                rows.setdefault((strategy, mode), []).extend(attackers)
                benign_flagged.append(f"{outcome['benign_flagged']}/{len(benign_ids)}")
                summary = summarize(attackers)
                print(f"seed {seed} {strategy:9s} {mode:7s}: {summary} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
                report["runs"].append({"seed": seed, "strategy": strategy, "mode": mode, **summary, **outcome})
    print_table(rows, benign_flagged, model.metadata["training_clients"], args.eval_seeds)
    report["pooled"] = {f"{s} / {m}": summarize(a) for (s, m), a in rows.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


def print_table(rows, benign_flagged, baseline_clients: int, seeds) -> None:
    print(f"\nAttackers that probe the decisions: baseline of {baseline_clients} benign clients, eval seeds {', '.join(map(str, seeds))} pooled\n")
    print("| attacker | enforcement | acted on | median queries before the first action | planned queries answered in full (degraded) | plans answered in full | keys used, median (max) |")
    print("|---|---|---|---|---|---|---|")
    for (strategy, mode), attackers in rows.items():
        s = summarize(attackers)
        median = "—" if s["median_queries_before_first_action"] is None else f"{s['median_queries_before_first_action']:.0f}"
        degraded = f" ({s['share_answered_degraded']:.0%})" if mode == "silent" else ""
        print(
            f"| {strategy} | {mode} | {s['acted_on']}/{s['attackers']} | {median} | {s['share_answered_in_full']:.0%}{degraded} "
            f"| {s['plans_answered_in_full']}/{s['attackers']} | {s['median_keys']:.0f} ({s['max_keys']}) |"
        )
    worst = max(benign_flagged, key=lambda run: int(run.split("/")[0]))
    print(f"\nbenign clients acted on, most in one run: {worst}")


if __name__ == "__main__":
    sys.exit(main())
