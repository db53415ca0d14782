"""Write simulated traffic as a gateway log plus a separate ground-truth file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from clonewatch.lab.simulate.scenarios import SimulatedTraffic


class Written(NamedTuple):
    """Paths of the files :func:`write` produced."""

    events: Path
    labels: Path


def write(traffic: SimulatedTraffic, out_dir: str | Path) -> Written:
    """Write ``events.jsonl`` (canonical records, one per line, in time order) and
    ``labels.jsonl`` (one line per client) into ``out_dir``, creating it if needed.

    Labels never appear in the events file, so it is exactly what a gateway would log.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = Written(out / "events.jsonl", out / "labels.jsonl")
    _write_lines(paths.events, traffic.events)
    _write_lines(paths.labels, traffic.labels)
    return paths


def _write_lines(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, separators=(",", ":")))
            handle.write("\n")
