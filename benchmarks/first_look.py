"""First look without a clean baseline: `clonewatch run` on a small log, no --model.

    python benchmarks/first_look.py                       # demo scenario, seeds 1-8, scale 0.8 (~32 clients)
    python benchmarks/first_look.py --seeds 1 2 --scale 0.6

A user's first command is usually `clonewatch run --input access.log` on a small log: the
model is fitted on the log itself, attackers included. For each seed this simulates the demo
scenario (about thirty customers of every kind, one temperature-0 + logprobs distillation
sweep, one prober with chains of tiny edits), runs the command as a user would (a subprocess,
embedded store), and counts from the log's labels who was acted on (any non-allow action).
Prompt vectors are cached on disk (--cache), so a rerun is quick. Nothing here fits or tunes
anything; the numbers are printed and written to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLONEWATCH = [sys.executable, "-m", "clonewatch"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def first_look(scenario: str, seed: int, scale: float, cache: Path, work: Path) -> dict:
    traffic = work / f"{scenario}-{seed}"
    subprocess.run([*CLONEWATCH, "simulate", "--scenario", scenario, "--seed", str(seed), "--scale", str(scale), "--out", str(traffic)],
                   check=True, capture_output=True, cwd=ROOT)  # fmt: skip
    decisions = traffic / "decisions.jsonl"
    subprocess.run([*CLONEWATCH, "run", "--input", str(traffic / "events.jsonl"), "--store", f"chdb://{traffic / 'store'}",
                    "--decisions", str(decisions), "--dead-letters", str(traffic / "dead-letters.jsonl"),
                    "--embedding-cache", str(cache), "--quiet"],
                   check=True, capture_output=True, cwd=ROOT)  # fmt: skip
    labels = {r["client_id"]: r for r in read_jsonl(traffic / "labels.jsonl")}
    acted: dict[str, dict] = {}
    for decision in read_jsonl(decisions):
        if decision["action"] != "allow":
            acted.setdefault(decision["client_id"], decision)
    attackers = [c for c, r in labels.items() if r["label"] != "benign"]
    benign = [c for c, r in labels.items() if r["label"] == "benign"]
    return {
        "scenario": scenario, "seed": seed, "scale": scale, "clients": len(labels),
        "attackers": [{"kind": labels[c]["kind"], "acted": c in acted,
                       "events_at_first_action": acted[c].get("events_seen") if c in acted else None} for c in attackers],
        "benign": len(benign),
        "benign_acted": [{"kind": labels[c]["kind"], "action": acted[c]["action"]} for c in benign if c in acted],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--scale", type=float, default=0.8)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "first-look.json")
    args = parser.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'seed':>4} {'clients':>7}  attackers acted on (events at first action)        benign acted on")
    with tempfile.TemporaryDirectory(prefix="first-look-") as work:
        for seed in args.seeds:
            r = first_look(args.scenario, seed, args.scale, args.cache, Path(work))
            results.append(r)
            caught = ", ".join(f"{a['kind']} {'yes (' + str(a['events_at_first_action']) + ')' if a['acted'] else 'no'}" for a in r["attackers"])
            missed = ", ".join(f"{b['kind']} ({b['action']})" for b in r["benign_acted"]) or "none"
            print(f"{seed:>4} {r['clients']:>7}  {caught:<50} {len(r['benign_acted'])}/{r['benign']}: {missed}", flush=True)
    attackers = [a for r in results for a in r["attackers"]]
    benign_acted = sum(len(r["benign_acted"]) for r in results)
    benign = sum(r["benign"] for r in results)
    logs_clean = sum(1 for r in results if all(a["acted"] for a in r["attackers"]) and not r["benign_acted"])
    print(f"\nattackers acted on {sum(a['acted'] for a in attackers)}/{len(attackers)}; benign clients acted on {benign_acted}/{benign}; "
          f"logs with every attacker and no benign client acted on: {logs_clean}/{len(results)}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"scenario": args.scenario, "scale": args.scale, "logs": results}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
