"""Embedding benchmark: prompts per second of each embedder, and how far its vectors are from fp32 torch.

The embedder is the physical limit of the pipeline on CPU, so this is the number that sets
how much traffic one worker keeps up with. Prompts are the distinct prompts of the
simulator's full scenario (chat, RAG, classifier tickets, attack sweeps), embedded cold
(no cache), in calls of 128 prompts (about what a worker's batch of 256 events brings that it
has not embedded before), with the embedder's own batch size (8 prompts per pass on CPU), on
the machine's cores.

    python benchmarks/embedding.py                 # 2,000 prompts
    python benchmarks/embedding.py --prompts 500   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clonewatch.lab.simulate import simulate  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402

CALL = 128  # prompts per call, as a worker's batch of events brings them
# (backend, tokens kept, prompts per pass: None = the embedder's default)
CANDIDATES = (("torch", 256, None), ("torch", 256, 64), ("onnx-int8", 256, None), ("onnx-int8", 128, None), ("torch", 128, None), ("static", 256, None))
OTHER_SPACES = ("static",)  # vectors in a space of their own: no cosine to fp32


def prompts_of(n: int, seed: int) -> list[str]:
    traffic = simulate("full", seed=seed, scale=0.3)
    distinct = list(dict.fromkeys(e["prompt"] for e in traffic.events if e.get("prompt")))
    rng = np.random.default_rng(seed)
    return [distinct[i] for i in rng.choice(len(distinct), size=min(n, len(distinct)), replace=False)]


def measure(backend: str, max_tokens: int, batch_size: int | None, prompts: list[str]) -> tuple[float, np.ndarray, int]:
    embedder = PromptEmbedder(backend=backend, max_tokens=max_tokens, cache_size=0, batch_size=batch_size)
    embedder.embed(prompts[:64])  # load (and for onnx-int8, export once) before the clock starts
    embedder._cache.clear()
    started = time.perf_counter()
    vectors = np.vstack([embedder.embed(prompts[i : i + CALL]) for i in range(0, len(prompts), CALL)])
    return len(prompts) / (time.perf_counter() - started), vectors, embedder.batch_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "embedding.json")
    args = parser.parse_args()

    prompts = prompts_of(args.prompts, args.seed)
    lengths = np.array([len(p) for p in prompts])
    print(f"{len(prompts):,} distinct prompts, {lengths.mean():.0f} characters on average (median {np.median(lengths):.0f}, max {lengths.max()}), {os.cpu_count()} cores")
    rows, reference = [], None
    for backend, max_tokens, batch_size in CANDIDATES:
        rate, vectors, batch_size = measure(backend, max_tokens, batch_size, prompts)
        if reference is None:
            reference, base_rate = vectors, rate
        row = {"embedder": backend, "max_tokens": max_tokens, "batch_size": batch_size, "prompts_per_s": round(rate, 1), "speedup": round(rate / base_rate, 2)}
        line = f"  {backend:10s} {max_tokens:4d} tokens  {batch_size:4d} per pass  {rate:8.1f} prompts/s  x{rate / base_rate:5.2f}"
        if backend in OTHER_SPACES:
            print(line + "   (a space of its own)")
        else:
            cosine = (vectors * reference).sum(axis=1)
            row |= {"cosine_to_fp32_mean": round(float(cosine.mean()), 4), "cosine_to_fp32_min": round(float(cosine.min()), 4)}
            print(line + f"   cosine to fp32: mean {cosine.mean():.4f}, min {cosine.min():.4f}")
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"prompts": len(prompts), "mean_chars": float(lengths.mean()), "cores": os.cpu_count(), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
