"""Pick up a new model file without a restart: `clonewatch train` writes a new version over the
old path (or a deployment copies one there), and `run` and the workers switch to it between
batches. Client state (windows, accumulated evidence, actions) and campaigns carry over."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from detectors.embedding import space_mismatch
from detectors.model import CloneModel, ModelFileError

log = logging.getLogger("clonewatch.model")


class ModelWatcher:
    """Polls a model file; :meth:`poll` returns the new model once the file has changed and loads.

    A file that does not load (half-copied, or of another format), or whose model was trained
    with an embedder of another space than ``embedder`` (the backend this process embeds
    with), is reported once and tried again when it changes; the model in use stays meanwhile.
    """

    def __init__(self, path: str | Path, every_s: float = 5.0, current_version: str | None = None, embedder: str | None = None) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self.current_version = current_version
        self.embedder = embedder
        self._signature = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def poll(self) -> CloneModel | None:
        now = time.monotonic()
        if now - self._checked < self.every_s:
            return None
        self._checked = now
        signature = self._stat()
        if signature is None or signature == self._signature:
            return None
        self._signature = signature
        try:
            model = CloneModel.load(self.path)
        except (ModelFileError, OSError, EOFError) as exc:
            log.warning("model file %s changed but does not load (%s); keeping model %s", self.path, exc, self.current_version)
            return None
        if model.version == self.current_version:
            return None
        if self.embedder is not None and (mismatch := space_mismatch(model.metadata, self.embedder)):
            log.warning("model file %s changed but %s; keeping model %s", self.path, mismatch, self.current_version)
            return None
        log.warning("model file %s changed: switching from %s to %s", self.path, self.current_version, model.version)
        self.current_version = model.version
        return model
