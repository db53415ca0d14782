import numpy as np
import pytest

from detectors.vectorize import Vectorizer
from schemas import AccessEvent


def assert_unit_vectors_that_capture_meaning(embedder, margin: float) -> None:
    """Two ways of asking about sourdough lie closer together, by ``margin``, than one of them and a tax question."""
    v = embedder.embed([
        "How do I bake sourdough bread at home?",
        "What is the best way to make sourdough bread in my kitchen?",
        "How do I file an amended federal tax return?",
    ])  # fmt: skip
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + margin


def test_real_embeddings_are_unit_vectors_that_capture_meaning(embedder):
    assert_unit_vectors_that_capture_meaning(embedder, margin=0.3)


def test_cache_serves_repeated_prompts_by_hash(embedder):
    before_hits, before_misses = embedder.cache_hits, embedder.cache_misses
    first = embedder.embed(["a prompt seen once for the cache test", "another prompt for the cache test"])
    again = embedder.embed(["another prompt for the cache test"])
    assert embedder.cache_misses - before_misses == 2
    assert embedder.cache_hits - before_hits == 1
    assert np.array_equal(again[0], first[1])


def test_vectorizer_embeds_prompts_and_passes_numeric_features(embedder):
    events = [
        AccessEvent(ts=1795428000, client_id="a", prompt="hello there"),
        AccessEvent(ts=1795428001, client_id="b", features=[1.0, 2.0, 3.0]),
        AccessEvent(ts=1795428002, client_id="c"),
    ]
    vectors = Vectorizer(embedder).vectors(events)
    assert vectors[0].shape == (384,)
    assert vectors[1].tolist() == [1.0, 2.0, 3.0]
    assert vectors[2] is None


def test_disk_cache_serves_a_new_embedder_without_loading_the_model(embedder, tmp_path):
    from detectors.embedding import PromptEmbedder

    first = PromptEmbedder(disk_cache=tmp_path / "emb.sqlite")
    first._model = embedder.model  # share the loaded weights; the second embedder must not need them
    vectors = first.embed(["disk cache prompt one", "disk cache prompt two"])
    second = PromptEmbedder(disk_cache=tmp_path / "emb.sqlite")
    again = second.embed(["disk cache prompt two", "disk cache prompt one"])
    assert second._model is None
    assert np.array_equal(again, vectors[::-1])
    assert (first.disk_hits, second.disk_hits, second.cache_misses) == (0, 2, 2)
    assert second.disk_cache_note == " (2 of 2 distinct prompts from the cache)" and embedder.disk_cache_note == ""


def test_the_int8_onnx_embedder_agrees_with_torch_and_keeps_its_own_cache(embedder, tmp_path):
    """Made locally from the shipped weights (nothing downloaded), close to the fp32 vectors,
    and never confused with them in a shared disk cache."""
    from detectors.embedding import PromptEmbedder, embedder_for

    prompts = [
        "How do I bake sourdough bread at home?",
        "classify this support ticket: my invoice shows the wrong amount and I was charged twice " * 4,
        "translate to French: the weather is lovely today",
        "x",
    ]
    int8 = PromptEmbedder(backend="onnx-int8", disk_cache=tmp_path / "emb.sqlite")
    fp32 = PromptEmbedder(disk_cache=tmp_path / "emb.sqlite")
    fp32._model = embedder.model
    a, b = fp32.embed(prompts), int8.embed(prompts)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() > 0.97 and cosine.mean() > 0.985
    assert not np.array_equal(a, b)  # each backend got its own vectors from the shared cache file
    assert int8.name == "minilm-onnx-int8" and PromptEmbedder(backend="onnx-int8", max_tokens=128).name == "minilm-onnx-int8-128"
    # Scoring follows the model's embedder unless told otherwise.
    assert embedder_for({"embedder": {"backend": "onnx-int8", "max_tokens": 256}}).backend == "onnx-int8"
    assert embedder_for({"embedder": {"backend": "onnx-int8", "max_tokens": 256}}, "torch").backend == "torch"
    assert embedder_for(None).backend == "torch"


def test_a_budget_embeds_a_fair_share_of_prompts_per_client_and_keeps_every_event(embedder):
    sweep = [AccessEvent(ts=1795428000 + i, client_id="sweep", prompt=f"sweep prompt {i}") for i in range(40)]
    customers = [AccessEvent(ts=1795428100 + i, client_id=f"customer-{i}", prompt=f"a customer's question {i}") for i in range(4)]
    numeric = AccessEvent(ts=1795428200, client_id="model-user", features=[1.0, 2.0])
    vectorizer = Vectorizer(embedder)
    vectors = vectorizer.vectors(sweep + customers + [numeric], budget=10)
    embedded = [v is not None for v in vectors]
    assert len(vectors) == 45 and sum(embedded[:44]) == 10
    assert all(embedded[40:44]) and sum(embedded[:40]) == 6  # every customer's prompt, the rest to the sweep
    assert embedded[44]  # numeric inputs need no embedding and are always kept
    assert (vectorizer.prompts_seen, vectorizer.prompts_embedded) == (44, 10)


def test_the_static_embedder_is_distilled_locally_and_captures_meaning(tmp_path):
    """Distilled from the shipped weights with model2vec (nothing downloaded; once per machine),
    unit vectors in a space of its own, and scoring follows a model trained with it."""
    from detectors.embedding import PromptEmbedder, embedder_for

    static = PromptEmbedder(backend="static", disk_cache=tmp_path / "emb.sqlite")
    assert_unit_vectors_that_capture_meaning(static, margin=0.15)
    assert static.name == "minilm-static"
    assert embedder_for({"embedder": {"backend": "static", "max_tokens": 256}}).backend == "static"
    with pytest.raises(ValueError, match="another space"):  # its references are not in MiniLM's space
        embedder_for({"embedder": {"backend": "static", "max_tokens": 256}}, "torch")
    with pytest.raises(ValueError, match="another space"):
        embedder_for({"embedder": {"backend": "torch", "max_tokens": 256}}, "static")
