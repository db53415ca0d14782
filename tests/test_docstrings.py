"""The docstring examples of the detectors run, and say what they show."""

import doctest
import importlib
import pkgutil

import pytest

import detectors

MODULES = sorted(m.name for m in pkgutil.iter_modules(detectors.__path__, "detectors."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
