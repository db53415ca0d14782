"""Real attack tools against the fraud-scoring API, among a day of returning customers.

What each attacker asks is written by a published attack tool, the Adversarial Robustness
Toolbox (ART), not by clonewatch's simulator: KnockoffNets (natural in-domain inputs),
CopycatCNN (inputs from outside the data's distribution), HopSkipJump and the Boundary Attack
(decision-based boundary search) and ZOO (finite-difference gradient estimates), each run as
its authors designed it against the deployed fraud classifier (`clonewatch/lab/attack_tools.py`
says how). One key per tool and day, each sending ``--budget`` queries at a script's pace, among
days 1-3 of the baseline's own customers (``simulate --day N``), as in
``detection.py --returning`` and as the detection issue measured. Nothing here was used to
choose any setting of clonewatch.

    python benchmarks/attack_tools.py                            # baselines of 100 and 300, days 1-3
    python benchmarks/attack_tools.py --baseline-clients 100 --days 1

Prints, per tool and day, the query at which clonewatch first acted and the tool's peak risk,
the benign customers acted on, and a per-key rate limit of 100/min on the same traffic.
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

from clonewatch.lab.attack_tools import TOOLS, tool_traffic  # noqa: E402
from clonewatch.lab.simulate import simulate  # noqa: E402
from clonewatch.lab.simulate.scenarios import world_of  # noqa: E402
from detectors import CloneDetector, fit_clone_model  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402
from detectors.vectorize import Vectorizer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seed", type=int, default=101)
    parser.add_argument("--days", type=int, nargs="+", default=[1, 2, 3], help="days of the baseline's customers the tools attack on")
    parser.add_argument("--baseline-clients", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--budget", type=int, default=500, help="queries each tool sends on a day (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "attack-tools.json")
    args = parser.parse_args()

    vectorizer = Vectorizer(PromptEmbedder(disk_cache=args.cache))
    report = {"date": date.today().isoformat(), "budget": args.budget, "tools": list(TOOLS), "baselines": []}
    for n_clients in args.baseline_clients:
        baseline_scale = n_clients / bench.BENIGN_CLIENTS_AT_SCALE_1
        base_events, _ = bench.load("benign", args.train_seed, baseline_scale)
        model = fit_clone_model(base_events, bench.vectorize(vectorizer, base_events, "baseline"), n_jobs=-1)
        baseline = {"benign_clients": model.metadata["training_clients"], "days": []}
        print(f"\n######## baseline of {baseline['benign_clients']} benign clients (day 0)")
        for day in args.days:
            started = time.monotonic()
            customers = simulate("benign", seed=args.train_seed, scale=baseline_scale, day=day)
            tools, tool_labels = tool_traffic(world_of("benign", args.train_seed, day=day), str(day), args.budget)
            raw = sorted(customers.events + tools, key=lambda e: e["ts"])
            events, labels = bench.decoded(raw, f"attack-tools-{day}"), customers.labels + tool_labels
            vectors = bench.vectorize(vectorizer, events, f"day {day}")
            first, peaks = bench.replay_clonewatch(CloneDetector.from_model(model), events, vectors)
            limited = bench.replay_rate_limit(events)
            benign = [label["client_id"] for label in labels if label["label"] == "benign"]
            rows = {
                label["kind"]: {
                    "acted_at": first.get(label["client_id"], {}).get("flag"), "peak_risk": peaks.get(label["client_id"]),
                    "rate_limited_at": limited.get(label["client_id"], {}).get("flag"),
                }
                for label in tool_labels
            }
            acted = [c for c in benign if "flag" in first.get(c, {})]
            baseline["days"].append({
                "day": day, "events": len(events), "benign_clients": len(benign), "benign_acted_on": len(acted),
                "benign_denied": sum("deny" in first.get(c, {}) for c in benign),
                "benign_rate_limited": sum("flag" in limited.get(c, {}) for c in benign), "tools": rows,
            })  # fmt: skip
            print(f"\n== day {day}: {len(events):,} events, {len(benign)} customers; {time.monotonic() - started:.0f} s")
            print(f"{'tool':<12} {'acted on at query':>18} {'peak risk':>10} {'rate limit 100/min':>19}")
            for tool, row in rows.items():
                acted_at = "never" if row["acted_at"] is None else str(row["acted_at"])
                limited_at = "never" if row["rate_limited_at"] is None else str(row["rate_limited_at"])
                print(f"{tool:<12} {acted_at:>18} {row['peak_risk'] or 0:>10.4f} {limited_at:>19}")
            print(f"benign customers acted on: {len(acted)} of {len(benign)} (rate limit: {baseline['days'][-1]['benign_rate_limited']})")
        report["baselines"].append(baseline)
        bench.write_report(args.out, report)
    print("\nsummary (days acted on / days; median query of the first action)")
    for baseline in report["baselines"]:
        cells = []
        for tool in TOOLS:
            at = [d["tools"][tool]["acted_at"] for d in baseline["days"] if d["tools"][tool]["acted_at"] is not None]
            cells.append(f"{tool} {len(at)}/{len(baseline['days'])}" + (f" at {int(np.median(at))}" if at else ""))
        benign = sum(d["benign_acted_on"] for d in baseline["days"]), sum(d["benign_clients"] for d in baseline["days"])
        print(f"  {baseline['benign_clients']} baseline clients: " + ", ".join(cells) + f"; benign {benign[0]}/{benign[1]}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
