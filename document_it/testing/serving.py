"""Waiting for a server a test or benchmark started itself (on 127.0.0.1) to answer."""

from __future__ import annotations

import subprocess
import time
import urllib.request

__all__ = ["wait_until_serving"]


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float, poll_s: float = 0.5) -> bool:
    """True once `url` answers; False when `process` exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
