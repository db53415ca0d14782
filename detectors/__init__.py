"""Pure detection code: no Kafka, no ClickHouse. Shared by the embedded runner and the Faust workers."""

from detectors.client_state import ClientState
from detectors.detector import BatchResult, CloneDetector
from detectors.features import FEATURE_NAMES
from detectors.model import CloneModel, ModelFileError
from detectors.policy import Policy, PolicyConfig
from detectors.training import fit_clone_model

__all__ = [
    "FEATURE_NAMES",
    "BatchResult",
    "ClientState",
    "CloneDetector",
    "CloneModel",
    "ModelFileError",
    "Policy",
    "PolicyConfig",
    "fit_clone_model",
]
