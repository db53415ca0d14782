"""The versioned model file: references per space, the risk model and how they were made."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

import joblib

from detectors.features import FEATURE_NAMES
from detectors.evidence import SequentialTest
from detectors.reference import SpaceReference
from detectors.risk_model import RiskModel

FORMAT_VERSION = 5  # 2: numeric references map columns to normal scores; 3: sequential evidence; 4: kernel mean embedding (MMD); 5: campaign evidence
_RECORDED_LIBRARIES = ("numpy", "scipy", "scikit-learn", "sentence-transformers", "torch")


class ModelFileError(ValueError):
    """The file is not a clonewatch model this version can use."""


@dataclass
class CloneModel:
    """Everything scoring needs, saved and loaded as one file."""

    references: dict[str, SpaceReference]
    risk: RiskModel
    window: int
    sequential: SequentialTest | None = None
    # Evidence of a campaign's merged stream, against groups of unrelated benign clients merged alike.
    campaign_sequential: SequentialTest | None = None
    # Fitted on the very traffic it scores (a warm-up): a client is compared with the
    # reference's other clients, never with its own history in it.
    exclude_own_history: bool = False
    # A warm-up's clients are scored by the fold's risk model that never saw them (the model
    # fitted on everything has learned an attacker in the warm-up as normal): fold -> model.
    fold_risks: dict[int, RiskModel] | None = None
    client_folds: dict[str, int] | None = None
    # The baseline's clients (a known-good baseline, not a warm-up): keys at work before today,
    # which no rule may take for a key minted after a refusal (detectors.campaign_stage).
    known_clients: frozenset[str] = frozenset()
    feature_names: tuple[str, ...] = FEATURE_NAMES
    metadata: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.metadata.get("version", "unversioned")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": FORMAT_VERSION, "model": self}, path, compress=3)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CloneModel:
        path = Path(path)
        if not path.exists():
            raise ModelFileError(f"model file {path} does not exist (create one with `clonewatch train`)")
        try:
            payload = joblib.load(path)
        except Exception as exc:
            raise ModelFileError(f"{path} is not a clonewatch model file: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
            raise ModelFileError(f"{path} has model format {payload.get('format') if isinstance(payload, dict) else '?'}, expected {FORMAT_VERSION}")
        model = payload["model"]
        if tuple(model.feature_names) != FEATURE_NAMES:
            raise ModelFileError(f"{path} was trained on other features; retrain it with `clonewatch train`")
        return model


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _RECORDED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
