"""Pure detection code: no Kafka, no ClickHouse. Shared by the embedded runner and the Faust workers.

The names below are imported on first use (PEP 562), so that a process that needs one light
module (the shipper's policy defaults, say) does not load scikit-learn, SciPy and torch.
"""

from importlib import import_module

_HOMES = {
    "ClientState": "detectors.client_state",
    "BatchResult": "detectors.detector",
    "CloneDetector": "detectors.detector",
    "FEATURE_NAMES": "detectors.features",
    "CloneModel": "detectors.model",
    "ModelFileError": "detectors.model",
    "Policy": "detectors.policy",
    "PolicyConfig": "detectors.policy",
    "fit_clone_model": "detectors.training",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'detectors' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
