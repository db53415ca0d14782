"""A static embedding of the shipped MiniLM, distilled locally with model2vec.

model2vec's distillation runs every token of the model's vocabulary through all-MiniLM-L6-v2
once and keeps each token's output vector (weighted by how rare the token is); a prompt's
vector is then the mean of its tokens' vectors, a table lookup instead of six transformer
layers. The distillation reads only the shipped weights, runs once per machine (about 30 s
on 2 cores) and is kept in the user's cache, named after the weights it came from; nothing
is downloaded.

It is a different space from MiniLM's: a model trained with it must score with it (the
model file records the embedder, and scoring follows it). What it costs in detection and
gains in speed is measured in ``benchmarks/embedding.py`` and ``benchmarks/detection.py
--embedder static``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.embedding import weights_tag

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clonewatch" / "static"
log = logging.getLogger(__name__)


def static_model(model_dir: Path, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The directory of the static model distilled from the sentence-transformers model in
    ``model_dir``, made if missing."""
    target = cache_dir / f"minilm-{weights_tag(model_dir)}-static"
    if (target / "model.safetensors").exists():
        return target
    from model2vec.distill import distill

    log.warning("distilling a static embedding from %s (once per machine, about 30 s)", model_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + f".{os.getpid()}.tmp")
    try:
        distill(model_name=str(model_dir), pca_dims=None).save_pretrained(str(scratch))  # all 384 dimensions
        try:
            scratch.rename(target)  # atomic: of two processes distilling at once, one keeps its directory
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


class StaticEncoder:
    """Encode prompts with the static model: look up, mean-pool, normalise.

    ``max_tokens`` cuts longer prompts, as the transformer does.
    """

    def __init__(self, model_dir: Path, max_tokens: int = 256, cache_dir: Path = DEFAULT_CACHE) -> None:
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(static_model(model_dir, cache_dir)))
        self.max_tokens = max_tokens

    def encode(self, prompts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        """Unit vectors, one row per prompt."""
        vectors = np.asarray(
            self.model.encode(list(prompts), max_length=self.max_tokens, batch_size=batch_size, show_progress_bar=False), dtype=np.float32
        )
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
