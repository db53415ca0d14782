"""The docstring examples of the detectors, ingest, schemas and sinks run, and say what they show."""

import doctest
import importlib
import pkgutil

import pytest

import detectors
import ingest
import schemas
import sinks

MODULES = sorted(
    [m.name for package in (detectors, ingest, schemas, sinks) for m in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]
    + ["clonewatch.streaming.processing", "clonewatch.streaming.topics", "clonewatch.streaming.listener", "clonewatch.streaming.acls", "clonewatch.pictures", "clonewatch.commands.train", "clonewatch.commands.drift", "clonewatch.commands.worker", "clonewatch.streaming.bounded_stop", "clonewatch.streaming.stall_watch", "clonewatch.streaming.offset_trail"]
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
