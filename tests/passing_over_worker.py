"""``clonewatch ARGS`` whose Faust consumer passes over some messages once, as Faust's own
consumer does around a rebalance (tests only: the fault a worker's offset trail makes good).

``CLONEWATCH_TEST_PASS_OVER``: comma-separated ``topic:partition:first:last`` spans of offsets
that the consumer fetches and never hands on, the first time each comes.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faust.transport.consumer import Consumer  # noqa: E402

from clonewatch.cli import main  # noqa: E402

SPANS = [span.rsplit(":", 3) for span in os.environ["CLONEWATCH_TEST_PASS_OVER"].split(",")]
PASSED_OVER = {(topic, int(partition), offset) for topic, partition, first, last in SPANS for offset in range(int(first), int(last) + 1)}
fetched = Consumer.getmany


async def passing_over(self, timeout):  # type: ignore[no-untyped-def]
    async for tp, message in fetched(self, timeout):
        if (tp.topic, tp.partition, message.offset) in PASSED_OVER:
            PASSED_OVER.discard((tp.topic, tp.partition, message.offset))
            continue
        yield tp, message


Consumer.getmany = passing_over
sys.exit(main())
