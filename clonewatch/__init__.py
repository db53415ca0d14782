"""clonewatch: find model-extraction campaigns in AI API gateway traffic."""

__version__ = "0.1.0"
