"""Text from the outside world, made safe to print."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with terminal control characters escaped, so a log line cannot drive a terminal.

    >>> printable("bad\\x1b[2Jkey")
    'bad\\\\x1b[2Jkey'
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
