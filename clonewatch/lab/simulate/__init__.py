"""Seeded, deterministic red-team traffic simulator writing labelled gateway access logs.

>>> from clonewatch.lab.simulate import simulate, write
>>> traffic = simulate("demo", seed=0)
>>> paths = write(traffic, "out/demo")  # out/demo/events.jsonl and out/demo/labels.jsonl
"""

from clonewatch.lab.simulate.scenarios import SCENARIOS, Scenario, SimulatedTraffic, simulate
from clonewatch.lab.simulate.writer import write

__all__ = ["SCENARIOS", "Scenario", "SimulatedTraffic", "simulate", "write"]
