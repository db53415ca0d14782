"""Real attack tools against the fraud-scoring API, among a day of returning customers.

What each attacker asks is written by a published attack tool, the Adversarial Robustness
Toolbox (ART), not by clonewatch's simulator: KnockoffNets (natural in-domain inputs),
CopycatCNN (inputs from outside the data's distribution), HopSkipJump and the Boundary Attack
(decision-based boundary search) and ZOO (finite-difference gradient estimates), each run as
its authors designed it against the deployed fraud classifier (`clonewatch/lab/attack_tools.py`
says how). On each day: one key per tool sending ``--budget`` queries at a script's pace, and
four campaigns, KnockoffNets and HopSkipJump each dealt over 10 keys of one hosting network or
10 keys behind residential proxies (twice the budget in all); among days 1-3 of the baseline's
own customers (``simulate --day N``), as in ``detection.py --returning`` and as the detection
issue measured. Nothing here was used to choose any setting of clonewatch.

    python benchmarks/attack_tools.py                            # baselines of 100 and 300, days 1-3
    python benchmarks/attack_tools.py --baseline-clients 100 --days 1
    python benchmarks/attack_tools.py --batched                  # each tool call one request of many rows

Prints, per tool and day, the query at which clonewatch first acted and the tool's peak risk;
per campaign, its keys acted on and the share of its queries served before the first action;
the benign customers acted on; and a per-key rate limit of 100/min on the same traffic.
Writes benchmarks/results/attack-tools.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import detection as bench  # noqa: E402

from clonewatch.lab.attack_tools import TOOLS, tool_campaign_traffic, tool_traffic  # noqa: E402
from clonewatch.lab.simulate import simulate  # noqa: E402
from clonewatch.lab.simulate.scenarios import world_of  # noqa: E402
from detectors import CloneDetector, fit_clone_model  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402
from detectors.vectorize import Vectorizer  # noqa: E402

# (tool, kind of keys): one operator's queries dealt over CAMPAIGN_KEYS keys
CAMPAIGNS = (("knockoff", "hosting"), ("knockoff", "proxy"), ("hopskipjump", "hosting"), ("hopskipjump", "proxy"))
CAMPAIGN_KEYS = 10


def attack_day(train_seed: int, baseline_scale: float, day: int, budget: int, batched: bool = False) -> tuple[list, list[dict]]:
    """Day ``day`` of the baseline's customers with one key per tool and the tool campaigns among them."""
    customers = simulate("benign", seed=train_seed, scale=baseline_scale, day=day)
    world = world_of("benign", train_seed, day=day)
    raw, labels = tool_traffic(world, str(day), budget, batched)
    for tool, kind in CAMPAIGNS:
        records, keys = tool_campaign_traffic(world, str(day), tool, kind, CAMPAIGN_KEYS, 2 * budget, batched)
        raw, labels = raw + records, labels + keys
    events = bench.decoded(sorted(customers.events + raw, key=lambda e: e["ts"]), f"attack-tools-{day}")
    return events, customers.labels + labels


def score_day(model, events, labels, vectors) -> dict:
    """Who was acted on, and when, by clonewatch and by a rate limit."""
    first, peaks = bench.replay_clonewatch(CloneDetector.from_model(model), events, vectors)
    limited = bench.replay_rate_limit(events)
    benign = [label["client_id"] for label in labels if label["label"] == "benign"]
    tools = {
        label["kind"]: {
            "acted_at": first.get(label["client_id"], {}).get("flag"), "peak_risk": peaks.get(label["client_id"]),
            "rate_limited_at": limited.get(label["client_id"], {}).get("flag"),
        }
        for label in labels if label["label"] == "attack" and label["kind"] != "campaign"
    }  # fmt: skip
    served = bench.campaign_served(first, labels, events)
    campaigns = {}
    for name, share in served.items():
        members = [label["client_id"] for label in labels if label["campaign"] == name]
        campaigns[name] = {
            "keys": len(members), "keys_acted_on": sum("flag" in first.get(m, {}) for m in members), "served_before_action": share,
            "keys_rate_limited": sum("flag" in limited.get(m, {}) for m in members),
        }  # fmt: skip
    return {
        "events": len(events), "benign_clients": len(benign), "benign_acted_on": sum("flag" in first.get(c, {}) for c in benign),
        "benign_denied": sum("deny" in first.get(c, {}) for c in benign),
        "benign_rate_limited": sum("flag" in limited.get(c, {}) for c in benign), "tools": tools, "campaigns": campaigns,
    }  # fmt: skip


def print_day(day: int, scored: dict, seconds: float) -> None:
    print(f"\n== day {day}: {scored['events']:,} events, {scored['benign_clients']} customers; {seconds:.0f} s")
    print(f"{'tool':<12} {'acted on at query':>18} {'peak risk':>10} {'rate limit 100/min':>19}")
    for tool, row in scored["tools"].items():
        acted_at = "never" if row["acted_at"] is None else str(row["acted_at"])
        limited_at = "never" if row["rate_limited_at"] is None else str(row["rate_limited_at"])
        print(f"{tool:<12} {acted_at:>18} {row['peak_risk'] or 0:>10.4f} {limited_at:>19}")
    for name, row in scored["campaigns"].items():
        print(f"campaign {name}: {row['keys_acted_on']} of {row['keys']} keys acted on, {row['served_before_action']:.0%} of its queries served before the first action (rate limit: {row['keys_rate_limited']} keys)")
    print(f"benign customers acted on: {scored['benign_acted_on']} of {scored['benign_clients']} (rate limit: {scored['benign_rate_limited']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seed", type=int, default=101)
    parser.add_argument("--days", type=int, nargs="+", default=[1, 2, 3], help="days of the baseline's customers the tools attack on")
    parser.add_argument("--baseline-clients", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--budget", type=int, default=500, help="queries each tool's key sends on a day; a campaign sends twice as many over its keys (default: %(default)s)")
    parser.add_argument(
        "--batched", action="store_true",
        help="send each of a tool's calls as one request holding all its rows (KServe instances), as a tool wrapped around a batch API does; default: a row per request",
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/attack-tools.json (attack-tools-batched.json with --batched)")
    args = parser.parse_args()
    args.out = args.out or Path(__file__).parent / "results" / f"attack-tools{'-batched' if args.batched else ''}.json"

    vectorizer = Vectorizer(PromptEmbedder(disk_cache=args.cache))
    report = {"date": date.today().isoformat(), "budget": args.budget, "batched": args.batched, "tools": list(TOOLS), "campaign_keys": CAMPAIGN_KEYS, "baselines": []}
    for n_clients in args.baseline_clients:
        baseline_scale = n_clients / bench.BENIGN_CLIENTS_AT_SCALE_1
        base_events, _ = bench.load("benign", args.train_seed, baseline_scale)
        model = fit_clone_model(base_events, bench.vectorize(vectorizer, base_events, "baseline"), n_jobs=-1)
        baseline = {"benign_clients": model.metadata["training_clients"], "days": []}
        print(f"\n######## baseline of {baseline['benign_clients']} benign clients (day 0)")
        for day in args.days:
            started = time.monotonic()
            events, labels = attack_day(args.train_seed, baseline_scale, day, args.budget, args.batched)
            scored = score_day(model, events, labels, bench.vectorize(vectorizer, events, f"day {day}"))
            baseline["days"].append({"day": day, **scored})
            print_day(day, scored, time.monotonic() - started)
        report["baselines"].append(baseline)
        bench.write_report(args.out, report)
    print("\nsummary (days acted on / days, median query of the first action; campaign keys acted on, median share served before the first action)")
    for baseline in report["baselines"]:
        days = baseline["days"]
        cells = []
        for tool in TOOLS:
            at = [d["tools"][tool]["acted_at"] for d in days if d["tools"][tool]["acted_at"] is not None]
            cells.append(f"{tool} {len(at)}/{len(days)}" + (f" at {int(np.median(at))}" if at else ""))
        for tool, kind in CAMPAIGNS:
            rows = [d["campaigns"][f"{tool} over {kind} keys"] for d in days]
            keys = sum(r["keys_acted_on"] for r in rows), sum(r["keys"] for r in rows)
            cells.append(f"{tool} over {kind} keys {keys[0]}/{keys[1]}, {np.median([r['served_before_action'] for r in rows]):.0%} served")
        benign = sum(d["benign_acted_on"] for d in days), sum(d["benign_clients"] for d in days)
        print(f"  {baseline['benign_clients']} baseline clients: " + "; ".join(cells) + f"; benign {benign[0]}/{benign[1]}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
