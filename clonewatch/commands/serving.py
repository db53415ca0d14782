"""What the long-running HTTP commands (`api`, `receive`) share: a required token, log lines
on stderr, and a clean stop on SIGTERM (docker stop, systemd)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading


def required_token(variable: str, who: str) -> str:
    """The bearer token from ``variable``; a clear error when it is not set."""
    token = os.environ.get(variable, "")
    if not token:
        raise ValueError(f"set {variable}: {who} must send it as 'Authorization: Bearer TOKEN'")
    return token


def log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def stop_on_sigterm(server) -> None:
    """SIGTERM shuts ``server`` down (from another thread: ``shutdown`` waits for ``serve_forever``)."""
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
