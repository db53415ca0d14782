"""A new model written over the path in use is picked up between batches, without a restart."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from clonewatch.model_watch import ModelWatcher
from clonewatch.runner import EmbeddedRunner, RunConfig
from detectors.model import CloneModel
from detectors.vectorize import Vectorizer
from tests.streaming_support import numeric_traffic


def _new_version(source: Path, target: Path, version: str, embedder: str | None = None) -> None:
    model = CloneModel.load(source)
    model.metadata["version"] = version
    if embedder is not None:
        model.metadata["embedder"] = {"backend": embedder, "max_tokens": 256}
    model.save(target)
    stat = os.stat(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a coarse clock must see the change too


def test_the_watcher_loads_a_changed_file_and_keeps_the_old_model_when_it_does_not_load(numeric_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.cwm"
    shutil.copy(numeric_model, path)
    current = CloneModel.load(path).version
    watcher = ModelWatcher(path, every_s=0.0, current_version=current)
    assert watcher.poll() is None  # unchanged
    path.write_bytes(b"half a file")
    assert watcher.poll() is None and watcher.current_version == current
    _new_version(numeric_model, path, "cw-second")
    newer = watcher.poll()
    assert newer is not None and newer.version == "cw-second" == watcher.current_version
    assert watcher.poll() is None


def test_the_watcher_keeps_the_model_when_a_new_one_embeds_into_another_space(numeric_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.cwm"
    shutil.copy(numeric_model, path)
    current = CloneModel.load(path).version
    watcher = ModelWatcher(path, every_s=0.0, current_version=current, embedder="torch")
    _new_version(numeric_model, path, "cw-static", embedder="static")  # its references live in the static space
    assert watcher.poll() is None and watcher.current_version == current
    _new_version(numeric_model, path, "cw-int8", embedder="onnx-int8")  # the same space as torch
    newer = watcher.poll()
    assert newer is not None and newer.version == "cw-int8"


class SwapsTheModelAfterTheFirstBatch(Vectorizer):
    def __init__(self, source: Path, target: Path) -> None:
        super().__init__()
        self.source, self.target, self.calls = source, target, 0

    def vectors(self, events):
        self.calls += 1
        if self.calls == 2:
            _new_version(self.source, self.target, "cw-retrained")
        return super().vectors(events)


def test_run_switches_to_a_new_model_between_batches_and_keeps_its_clients(numeric_model: Path, tmp_path: Path, chdb_dsn: str) -> None:
    path = tmp_path / "model.cwm"
    shutil.copy(numeric_model, path)
    events, _ = numeric_traffic(seed=4, scale=0.05, cap=40)
    log = tmp_path / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    config = RunConfig(input=str(log), model_path=path, store_dsn=chdb_dsn, batch_size=64, progress=False,
                       decisions_path=tmp_path / "d.jsonl", dead_letters_path=tmp_path / "dl.jsonl")  # fmt: skip
    runner = EmbeddedRunner(config, vectorizer=SwapsTheModelAfterTheFirstBatch(numeric_model, path))
    runner.watcher.every_s = 0.0
    summary = runner.run()
    assert summary.model_version == "cw-retrained" and "reloaded" in summary.model_source
    assert runner.detector.model.version == "cw-retrained"
    assert sum(s.events_seen for s in runner.states.values()) == len(events)  # no client started over
