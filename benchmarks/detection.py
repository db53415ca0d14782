"""Detection benchmark: how well, and how early, clonewatch flags each kind of attack.

Fits the model on a benign-only simulated baseline (one seed), then replays held-out
traffic with every attack kind (other seeds) through the detector, event by event,
and compares with (a) a per-key rate limit of 100 requests/min and (b) PRADA alone
(Shapiro-Wilk on each client's nearest-distance distribution, threshold set on the
baseline for a 1% client false-positive rate).

    python benchmarks/detection.py                   # full size, seeds 1 and 2
    python benchmarks/detection.py --scale 0.3 --eval-seeds 1   # quick look

Prints a table and writes JSON (default benchmarks/results/detection.json). Embeddings
are cached on disk (~/.cache/clonewatch/embeddings.sqlite) so a rerun is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
from scipy.stats import shapiro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clonewatch.simulate import simulate  # noqa: E402
from detectors import CloneDetector, Policy, fit_clone_model  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402
from detectors.vectorize import Vectorizer  # noqa: E402
from ingest.decode import EventDecoder  # noqa: E402
from schemas import AccessEvent  # noqa: E402

TARGETS = {"tpr_single": 0.99, "tpr_campaign": 0.95, "fpr": 0.001, "median_extraction": 100, "median_boundary": 20, "campaign_served": 0.10}
SINGLE_KEY_KINDS = ("extraction", "boundary", "random", "synthetic", "boundary_search", "mixed")
RATE_LIMIT_PER_MIN = 100
PRADA_MIN_QUERIES = 20
PRADA_HISTORY = 300
PRADA_TARGET_FPR = 0.01


def load(scenario: str, seed: int, scale: float):
    traffic = simulate(scenario, seed=seed, scale=scale)
    decoder = EventDecoder(f"{scenario}-{seed}")
    events = [decoder.decode(json.dumps(e), i) for i, e in enumerate(traffic.events, 1)]
    assert all(isinstance(e, AccessEvent) for e in events), "the simulator wrote an invalid record"
    return events, traffic.labels


def vectorize(vectorizer: Vectorizer, events, label: str):
    out = []
    started = time.monotonic()
    for i in range(0, len(events), 1024):
        out.extend(vectorizer.vectors(events[i : i + 1024]))
        print(f"\r  embedding {label}: {min(i + 1024, len(events)):,}/{len(events):,}", end="", file=sys.stderr)
    print(f"  ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return out


def replay_clonewatch(detector: CloneDetector, events, vectors) -> dict[str, dict]:
    """First events_seen at which each client was flagged (non-allow) and denied."""
    states: dict = {}
    first: dict[str, dict] = defaultdict(dict)
    for start in range(0, len(events), 256):
        result = detector.process(events[start : start + 256], vectors[start : start + 256], states)
        for d in result.decisions:
            rec = first[d.client_id]
            if d.action.value != "allow":
                rec.setdefault("flag", d.events_seen)
                rec.setdefault("flag_ts", d.ts)
            if d.action.value == "deny":
                rec.setdefault("deny", d.events_seen)
    return first


def replay_rate_limit(events) -> dict[str, dict]:
    windows: dict[str, deque] = defaultdict(deque)
    counts: dict[str, int] = defaultdict(int)
    first: dict[str, dict] = defaultdict(dict)
    for e in events:
        counts[e.client_id] += 1
        w = windows[e.client_id]
        w.append(e.ts)
        while w and w[0] <= e.ts - 60.0:
            w.popleft()
        if len(w) > RATE_LIMIT_PER_MIN and "flag" not in first[e.client_id]:
            first[e.client_id]["flag"] = counts[e.client_id]
    return first


def prada_statistics(events, vectors, scale: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Per client, the PRADA W after each query (from PRADA_MIN_QUERIES on)."""
    history: dict[str, list[np.ndarray]] = defaultdict(list)
    distances: dict[str, list[float]] = defaultdict(list)
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for e, v in zip(events, vectors):
        if v is None:
            continue
        if e.space != "text" and e.space in scale:
            mean, std = scale[e.space]
            v = (v - mean) / std
        h = history[e.client_id]
        if h:
            earlier = np.stack(h[-PRADA_HISTORY:])
            if earlier.shape[1] == len(v):
                distances[e.client_id].append(float(np.sqrt(((earlier - v) ** 2).sum(axis=1)).min()))
        h.append(v)
        d = distances[e.client_id]
        if len(d) >= PRADA_MIN_QUERIES and np.ptp(d) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[e.client_id].append((len(h), float(shapiro(d[-PRADA_HISTORY:]).statistic)))
    return out


def prada_threshold(stats: dict[str, list[tuple[int, float]]]) -> float:
    """The PRADA delta at which PRADA_TARGET_FPR of baseline clients would ever be flagged."""
    minima = sorted(min(w for _, w in series) for series in stats.values() if series)
    if not minima:
        return 0.9
    k = int(np.floor(PRADA_TARGET_FPR * len(minima)))
    return float(minima[k])


def replay_prada(stats, delta: float) -> dict[str, dict]:
    first: dict[str, dict] = defaultdict(dict)
    for client, series in stats.items():
        for n, w in series:
            if w < delta:
                first[client]["flag"] = n
                break
    return first


def evaluate(first: dict[str, dict], labels, totals: dict[str, int]) -> dict:
    rows: dict[str, dict] = {}
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for label in labels:
        if label["label"] == "attack" and label["kind"] != "campaign":
            by_kind[label["kind"]].append(label)
    for kind in SINGLE_KEY_KINDS:
        members = by_kind.get(kind, [])
        if not members:
            continue
        flagged = [first[m["client_id"]]["flag"] for m in members if "flag" in first.get(m["client_id"], {})]
        served = [first[m["client_id"]]["flag"] / totals[m["client_id"]] for m in members if "flag" in first.get(m["client_id"], {})]
        rows[kind] = {
            "clients": len(members),
            "tpr": len(flagged) / len(members),
            "median_events_to_flag": float(np.median(flagged)) if flagged else None,
            "p90_events_to_flag": float(np.percentile(flagged, 90)) if flagged else None,
            "share_served_before_flag": float(np.median(served)) if served else 1.0,
        }
    campaigns: dict[str, list[str]] = defaultdict(list)
    for label in labels:
        if label["campaign"]:
            campaigns[label["campaign"]].append(label["client_id"])
    camp_rows = []
    for cid, members in sorted(campaigns.items()):
        flagged = [first[m]["flag"] for m in members if "flag" in first.get(m, {})]
        camp_rows.append({"campaign": cid, "keys": len(members), "keys_flagged": len(flagged)})
    if camp_rows:
        rows["campaign (per key)"] = {
            "clients": sum(r["keys"] for r in camp_rows),
            "tpr": sum(r["keys_flagged"] for r in camp_rows) / sum(r["keys"] for r in camp_rows),
            "median_events_to_flag": None,
            "p90_events_to_flag": None,
            "share_served_before_flag": None,
        }
    benign = [l["client_id"] for l in labels if l["label"] == "benign"]
    benign_flagged = [c for c in benign if "flag" in first.get(c, {})]
    benign_kinds = {l["client_id"]: l["kind"] for l in labels if l["label"] == "benign"}
    return {
        "attacks": rows,
        "campaigns": camp_rows,
        "benign_clients": len(benign),
        "benign_flagged": len(benign_flagged),
        "fpr": len(benign_flagged) / len(benign) if benign else 0.0,
        "benign_denied": sum(1 for c in benign if "deny" in first.get(c, {})),
        "benign_flagged_kinds": sorted(benign_kinds[c] for c in benign_flagged),
    }


def campaign_served(first, labels, events) -> dict[str, float]:
    """Share of each campaign's queries served before any of its keys was flagged."""
    member_of = {l["client_id"]: l["campaign"] for l in labels if l["campaign"]}
    seen: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    flagged_at: dict[str, int] = {}
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        camp = member_of.get(e.client_id)
        if camp:
            total[camp] += 1
    for e in events:
        camp = member_of.get(e.client_id)
        if not camp:
            continue
        counts[e.client_id] += 1
        seen[camp] += 1
        if camp not in flagged_at and first.get(e.client_id, {}).get("flag", 10**12) <= counts[e.client_id]:
            flagged_at[camp] = seen[camp]
    return {c: flagged_at.get(c, total[c]) / total[c] for c in total}


def fmt(v, pct=False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f}%" if pct else (f"{v:.0f}" if isinstance(v, float) else str(v))


def print_table(results: dict) -> None:
    methods = list(results)
    kinds = list(next(iter(results.values()))["attacks"])
    print("\nattack kind            clients " + "".join(f"| {m:^34} " for m in methods))
    print("                               " + "".join("| TPR     median  p90   served   " for _ in methods))
    for kind in kinds:
        row = f"{kind:<22} {results[methods[0]]['attacks'][kind]['clients']:>7} "
        for m in methods:
            r = results[m]["attacks"][kind]
            row += f"| {fmt(r['tpr'], True):>6}  {fmt(r['median_events_to_flag']):>6} {fmt(r['p90_events_to_flag']):>5}  {fmt(r['share_served_before_flag'], True):>6}   "
        print(row)
    row = "campaign served<flag".ljust(31)
    for m in methods:
        served = results[m]["campaign_served"]
        row += f"| {', '.join(f'{100 * v:.0f}%' for v in served.values()):<34} "
    print(row)
    row = f"{'benign FPR (denied)':<22} {results[methods[0]]['benign_clients']:>7} "
    for m in methods:
        r = results[m]
        row += f"| {fmt(r['fpr'], True):>6} ({r['benign_flagged']} flagged, {r['benign_denied']} denied)".ljust(36)
    print(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seed", type=int, default=101)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "detection.json")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    args = parser.parse_args()

    vectorizer = Vectorizer(PromptEmbedder(disk_cache=args.cache))
    print(f"baseline: simulate('benign', seed={args.train_seed}, scale={args.scale})", file=sys.stderr)
    base_events, _ = load("benign", args.train_seed, args.scale)
    base_vectors = vectorize(vectorizer, base_events, "baseline")
    started = time.monotonic()
    model = fit_clone_model(base_events, base_vectors)
    fit_s = time.monotonic() - started
    scale = {s: (r.mean_, r.scale_) for s, r in model.references.items() if s != "text"}
    delta = prada_threshold(prada_statistics(base_events, base_vectors, scale))

    report = {"train_seed": args.train_seed, "scale": args.scale, "fit_seconds": fit_s, "prada_delta": delta, "targets": TARGETS, "runs": []}
    for seed in args.eval_seeds:
        events, labels = load("full", seed, args.scale)
        vectors = vectorize(vectorizer, events, f"full seed {seed}")
        totals: dict[str, int] = defaultdict(int)
        for e in events:
            totals[e.client_id] += 1
        started = time.monotonic()
        firsts = {
            "clonewatch": replay_clonewatch(CloneDetector(model, Policy()), events, vectors),
        }
        detect_s = time.monotonic() - started
        firsts["rate limit 100/min"] = replay_rate_limit(events)
        firsts["PRADA alone"] = replay_prada(prada_statistics(events, vectors, scale), delta)
        results = {}
        for method, first in firsts.items():
            results[method] = evaluate(first, labels, totals)
            results[method]["campaign_served"] = campaign_served(first, labels, events)
        print(f"\n== eval seed {seed}: {len(events):,} events, {len(totals):,} clients; detector {len(events) / detect_s:,.0f} events/s (embedding excluded)")
        print_table(results)
        report["runs"].append({"seed": seed, "events": len(events), "clients": len(totals), "detect_events_per_s": len(events) / detect_s, "results": results})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
