"""Embedding benchmark: prompts per second of each embedder, and how far its vectors are from fp32 torch.

The embedder is the physical limit of the pipeline on CPU, so this is the number that sets
how much traffic one worker keeps up with. Prompts are the distinct prompts of the
simulator's full scenario (chat, RAG, classifier tickets, attack sweeps), embedded cold
(no cache), in batches of 64, each embedder with the machine's cores.

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

from clonewatch.simulate import simulate  # noqa: E402
from detectors.embedding import PromptEmbedder  # noqa: E402

CANDIDATES = (("torch", 256), ("onnx-int8", 256), ("onnx-int8", 128), ("torch", 128))


def prompts_of(n: int, seed: int) -> list[str]:
    traffic = simulate("full", seed=seed, scale=0.3)
    distinct = list(dict.fromkeys(e["prompt"] for e in traffic.events if e.get("prompt")))
    rng = np.random.default_rng(seed)
    return [distinct[i] for i in rng.choice(len(distinct), size=min(n, len(distinct)), replace=False)]


def measure(backend: str, max_tokens: int, prompts: list[str]) -> tuple[float, np.ndarray]:
    embedder = PromptEmbedder(backend=backend, max_tokens=max_tokens, cache_size=0)
    embedder.embed(prompts[:64])  # load (and for onnx-int8, export once) before the clock starts
    embedder._cache.clear()
    started = time.perf_counter()
    vectors = embedder.embed(prompts)
    return len(prompts) / (time.perf_counter() - started), vectors


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
    for backend, max_tokens in CANDIDATES:
        rate, vectors = measure(backend, max_tokens, prompts)
        if reference is None:
            reference, base_rate = vectors, rate
        cosine = (vectors * reference).sum(axis=1)
        rows.append({"embedder": backend, "max_tokens": max_tokens, "prompts_per_s": round(rate, 1), "speedup": round(rate / base_rate, 2),
                     "cosine_to_fp32_mean": round(float(cosine.mean()), 4), "cosine_to_fp32_min": round(float(cosine.min()), 4)})  # fmt: skip
        print(f"  {backend:10s} {max_tokens:4d} tokens  {rate:7.1f} prompts/s  x{rate / base_rate:4.2f}   cosine to fp32: mean {cosine.mean():.4f}, min {cosine.min():.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"prompts": len(prompts), "mean_chars": float(lengths.mean()), "cores": os.cpu_count(), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
