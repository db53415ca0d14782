"""clonewatch: find model-extraction campaigns in AI API gateway traffic."""

__version__ = "0.1.0"

from pathlib import Path

DEFAULT_OUT_DIR = Path("clonewatch-out")  # where `clonewatch run` writes decisions and dead letters
# Without --model, `clonewatch run` fits on the input's first events, attackers included. A
# warm-up of 2,000 events holds a dozen or two clients with enough events to calibrate on, too
# few to act on anyone; the detection benchmark's smallest baseline, a hundred customers' day,
# is 16,605 events.
DEFAULT_WARMUP_EVENTS = 20_000
