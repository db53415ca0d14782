"""Shared fixtures: one embedder and one embedded ClickHouse path per test session."""

from __future__ import annotations

import pytest

from tests.kafka_fixture import kafka_bootstrap, kafka_broker  # noqa: F401


@pytest.fixture(scope="session")
def embedder():
    from detectors.embedding import PromptEmbedder

    return PromptEmbedder()


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory) -> str:
    """chdb holds one engine on one path per process: every in-process test shares this path."""
    return "chdb://" + str(tmp_path_factory.mktemp("chdb") / "store")


@pytest.fixture(scope="session")
def numeric_model(tmp_path_factory):
    """A model fitted on ~120 benign customers of the numeric scenario (seed 11), shared by the
    detection-rate and streaming tests."""
    from tests.streaming_support import train_numeric_model

    return train_numeric_model(tmp_path_factory.mktemp("model") / "numeric.cwm")
