"""A clock the tests move by hand, standing in for a module's `time`."""

from __future__ import annotations

import time as _real_time

__all__ = ["FakeClock"]


class FakeClock:
    """monotonic() is controlled by the test; time() stays real."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return _real_time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds
