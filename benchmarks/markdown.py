"""The detection benchmark's JSON as the README's tables: one per baseline size, seeds pooled.

    python benchmarks/markdown.py [benchmarks/results/detection.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

BASELINE_METHODS = ("rate limit 100/min", "PRADA alone", "MMD window")


def pooled(runs: list[dict], method: str, kind: str) -> tuple[int, int, float | None]:
    """Attackers flagged, attackers, and the median over seeds of the median events to first action."""
    rows = [r["results"][method]["attacks"][kind] for r in runs if kind in r["results"][method]["attacks"]]
    clients = sum(row["clients"] for row in rows)
    flagged = sum(round(row["tpr"] * row["clients"]) for row in rows)
    medians = [row["median_events_to_flag"] for row in rows if row["median_events_to_flag"] is not None]
    return flagged, clients, float(np.median(medians)) if medians else None


def table(baseline: dict) -> str:
    runs = baseline["runs"]
    kinds = list(runs[0]["results"]["clonewatch"]["attacks"])
    others = [m for m in BASELINE_METHODS if m in runs[0]["results"]]  # older results lack the MMD window
    lines = [
        f"**Baseline of {baseline['benign_clients']} benign clients** ({baseline['events']:,} events, fitted in "
        f"{baseline['fit_seconds']:.0f} s; evidence weight 1/{baseline['sequential']['autocorrelation_time']:.0f}), "
        f"eval seeds {', '.join(str(r['seed']) for r in runs)} pooled:",
        "",
        "| | clonewatch | median events to first action | " + " | ".join(others) + " |",
        "|---|---|---|" + "---|" * len(others),
    ]
    for kind in kinds:
        cw = pooled(runs, "clonewatch", kind)
        median = "—" if cw[2] is None else f"{cw[2]:.0f}"
        cells = [f"{flagged}/{clients}" for flagged, clients, _ in (pooled(runs, m, kind) for m in others)]
        lines.append(f"| {kind} | {cw[0]}/{cw[1]} | {median} | " + " | ".join(cells) + " |")
    served = [v for r in runs for v in r["results"]["clonewatch"]["campaign_served"].values()]
    lines.append(f"| campaign queries served before the first action | {', '.join(f'{100 * v:.0f}%' for v in served)} | |" + " |" * len(others))
    benign = []
    for method in ("clonewatch", *others):
        flagged = sum(r["results"][method]["benign_flagged"] for r in runs)
        total = sum(r["results"][method]["benign_clients"] for r in runs)
        benign.append(f"{flagged}/{total}")
    denied = sum(r["results"]["clonewatch"]["benign_denied"] for r in runs)
    lines.append(f"| **benign clients acted on** | **{benign[0]}** ({denied} denied) | | " + " | ".join(benign[1:]) + " |")
    calibration = []
    for target_index in range(len(runs[0]["calibration"])):
        rows = [r["calibration"][target_index] for r in runs]
        flagged, total = sum(row["flagged"] for row in rows), sum(row["benign_clients"] for row in rows)
        calibration.append(f"{rows[0]['target_fpr']:.1%} → {flagged}/{total} ({flagged / total:.2%})")
    lines += ["", f"Calibration, `--target-fpr` nominal → observed share of held-out benign clients ever throttled: {'; '.join(calibration)}."]
    auc = {k: min(r["clonewatch_auc"][k] for r in runs if k in r["clonewatch_auc"]) for k in runs[0]["clonewatch_auc"]}
    lines.append("Peak-risk ROC AUC, worst seed: " + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()) + ".")
    return "\n".join(lines)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "detection.json"
    report = json.loads(path.read_text())
    print("\n\n".join(table(b) for b in report["baselines"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
