"""all-MiniLM-L6-v2 as an int8 ONNX model, made locally from the shipped weights.

The transformer is exported once with ``torch.onnx.export`` and its weights quantized to
int8 with ONNX Runtime's dynamic quantization; the file is kept in the user's cache,
named after the weights it came from, so nothing is downloaded and the export runs once
per machine (about 5 s). Mean pooling and L2 normalisation follow, as in the
sentence-transformers model, in numpy.

Measured on this project's 2-core machine (``benchmarks/embedding.py``): about 1.8x the
prompts per second of fp32 torch at the model's full 256 tokens, cosine similarity to the
fp32 vectors 0.99 on average (0.98 at worst); cutting prompts at 128 tokens makes it about
3x, at a cost to long prompts' vectors.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.embedding import weights_tag

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clonewatch" / "onnx"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def quantized_model(model_dir: Path, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The int8 ONNX file for the sentence-transformers model in ``model_dir``, made if missing."""
    target = cache_dir / f"minilm-{weights_tag(model_dir)}-int8.onnx"
    if target.exists():
        return target
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise RuntimeError("the onnx-int8 embedder needs onnxruntime and onnx (pip install onnxruntime onnx)") from exc
    import torch
    from sentence_transformers import SentenceTransformer

    cache_dir.mkdir(parents=True, exist_ok=True)
    transformer = SentenceTransformer(str(model_dir), device="cpu")[0]

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    sample = transformer.tokenizer(["an example prompt", "another one, a little longer"], padding=True, return_tensors="pt")
    fp32 = target.with_name(target.stem + f"-fp32.{os.getpid()}.tmp.onnx")
    scratch = target.with_name(target.name + f".{os.getpid()}.tmp")
    root = logging.getLogger()
    quiet_root = root.disabled
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it treats as constants (they are, per call)
            torch.onnx.export(
                LastHiddenState(transformer.auto_model.eval()), tuple(sample[k] for k in _INPUTS), str(fp32),
                input_names=list(_INPUTS), output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")},
            )  # fmt: skip
        root.disabled = True  # quantize_dynamic advises pre-processing on the root logger
        quantize_dynamic(str(fp32), str(scratch), weight_type=QuantType.QInt8, per_channel=True)
        scratch.replace(target)  # atomic: two processes exporting at once both end with a whole file
    finally:
        root.disabled = quiet_root
        fp32.unlink(missing_ok=True)
        scratch.unlink(missing_ok=True)
    return target


class OnnxEncoder:
    """Encode prompts with the int8 model: tokenize, run, mean-pool, normalise.

    ``max_tokens`` cuts longer prompts (the model's own limit is 256 tokens).
    """

    def __init__(self, model_dir: Path, max_tokens: int = 256, threads: int | None = None, cache_dir: Path = DEFAULT_CACHE) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per core
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(quantized_model(model_dir, cache_dir)), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.max_tokens = max_tokens

    def encode(self, prompts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit vectors, one row per prompt; prompts of similar length are batched together."""
        out = np.empty((len(prompts), 384), dtype=np.float32)
        order = np.argsort([len(p) for p in prompts], kind="stable")
        for start in range(0, len(prompts), batch_size):
            rows = order[start : start + batch_size]
            tokens = self.tokenizer([prompts[i] for i in rows], padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np")
            hidden = self.session.run(None, {k: tokens[k].astype(np.int64) for k in _INPUTS})[0]
            mask = tokens["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out
