"""clonewatch: find model-extraction campaigns in AI API gateway traffic."""

__version__ = "0.1.0"

from pathlib import Path

DEFAULT_OUT_DIR = Path("clonewatch-out")  # where `clonewatch run` writes decisions and dead letters
