"""Seeded, deterministic red-team traffic simulator writing labelled gateway access logs.

>>> from clonewatch.lab.simulate import simulate, write
>>> traffic = simulate("demo", seed=0)
>>> import tempfile
>>> paths = write(traffic, f"{tempfile.mkdtemp()}/demo")  # demo/events.jsonl and demo/labels.jsonl
>>> paths.events.name, paths.labels.name
('events.jsonl', 'labels.jsonl')
"""

from clonewatch.lab.simulate.scenarios import SCENARIOS, Scenario, SimulatedTraffic, simulate
from clonewatch.lab.simulate.writer import write

__all__ = ["SCENARIOS", "Scenario", "SimulatedTraffic", "simulate", "write"]
