"""Memory benchmark: bytes per client state, in memory and at rest, and what a million clients take.

Replays simulated traffic (every attack kind among benign customers) through the detector
with its prompts embedded, then measures each client's :class:`ClientState` two ways:

- **active**: the bytes allocated to hold it in a worker's memory (``tracemalloc`` around
  restoring it from its stored bytes, so Python objects, numpy arrays and their headers
  all count);
- **at rest**: the length of its stored bytes, as a worker's changelog-backed table and the
  campaign stage keep them for an idle client.

Clients are grouped by how many events they have sent, since state grows with a client's
history up to the window, and a million active clients are projected from the measured mix
and from the worst case (every client with a full window).

    python benchmarks/memory.py                 # the full scenario at scale 0.3, 100 baseline clients
    python benchmarks/memory.py --scale 0.1     # quick look
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import detection as bench  # noqa: E402

from detectors import CloneDetector  # noqa: E402
from detectors.client_state import ClientState  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402
from detectors.vectorize import Vectorizer  # noqa: E402

TARGET_BYTES_PER_ACTIVE_CLIENT = 4096
BUCKETS = ((1, 9), (10, 99), (100, 199), (200, None))  # events sent; 200 fills the default window


def active_bytes(stored: bytes) -> int:
    """Bytes allocated while restoring one state from its stored form, the state kept alive."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = ClientState.from_bytes(stored)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del state
    return held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.3, help="evaluation traffic size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline-clients", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "clonewatch" / "embeddings.sqlite")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = parser.parse_args()

    vectorizer = Vectorizer(PromptEmbedder(disk_cache=args.cache))
    model = bench.baseline_model(vectorizer, args.baseline_clients)
    events, _ = bench.load("full", args.seed, args.scale)
    vectors = bench.vectorize(vectorizer, events, f"full seed {args.seed}")

    detector, states = CloneDetector.from_model(model), {}
    started = time.monotonic()
    for i in range(0, len(events), 256):
        detector.process(events[i : i + 256], vectors[i : i + 256], states)
    print(f"replayed {len(events):,} events of {len(states):,} clients in {time.monotonic() - started:.0f} s", file=sys.stderr)

    rows = []
    for client, state in states.items():
        stored = state.to_bytes()
        rows.append((state.events_seen, active_bytes(stored), len(stored)))
    seen, active, rest = (np.array(column) for column in zip(*rows))

    buckets = []
    for low, high in BUCKETS:
        inside = (seen >= low) & (seen <= (high if high is not None else np.inf))
        if inside.any():
            buckets.append({
                "events": f"{low}-{high}" if high is not None else f">= {low}", "clients": int(inside.sum()),
                "active_bytes": float(active[inside].mean()), "at_rest_bytes": float(rest[inside].mean()),
            })  # fmt: skip
    full = seen >= model.window
    report = {
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "events": len(events), "clients": len(states), "window": model.window, "dims": {s: r.dim_ for s, r in model.references.items()},
        "buckets": buckets,
        "active_bytes_mean": float(active.mean()), "at_rest_bytes_mean": float(rest.mean()),
        "active_bytes_full_window": float(active[full].mean()) if full.any() else None,
        "million_active_gb_mix": float(active.mean()) * 1e6 / 1e9,
        "million_active_gb_full": float(active[full].mean()) * 1e6 / 1e9 if full.any() else None,
        "million_at_rest_gb_mix": float(rest.mean()) * 1e6 / 1e9,
        "target_bytes_per_active_client": TARGET_BYTES_PER_ACTIVE_CLIENT,
    }  # fmt: skip

    print(f"\n{len(states):,} clients, window {model.window} events, vectors of {report['dims']} dimensions")
    print(f"{'events sent':<12} {'clients':>8} {'active':>10} {'at rest':>10}")
    for b in buckets:
        print(f"{b['events']:<12} {b['clients']:>8,} {b['active_bytes'] / 1024:>8.1f} KB {b['at_rest_bytes'] / 1024:>7.1f} KB")
    print(f"{'all':<12} {len(states):>8,} {active.mean() / 1024:>8.1f} KB {rest.mean() / 1024:>7.1f} KB")
    print(f"\none million active clients: {report['million_active_gb_mix']:.1f} GB with this mix", end="")
    if report["million_active_gb_full"] is not None:
        print(f", {report['million_active_gb_full']:.1f} GB if every one had a full window", end="")
    verdict = "met" if active.mean() <= TARGET_BYTES_PER_ACTIVE_CLIENT else "MISSED"
    print(f"\ntarget <= {TARGET_BYTES_PER_ACTIVE_CLIENT / 1024:.0f} KB per active client: {verdict} ({active.mean() / TARGET_BYTES_PER_ACTIVE_CLIENT:.1f}x)")
    bench.write_report(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
