"""A clock the tests move by hand, standing in for a module's `time`, and an `asyncio` whose sleep moves it."""

from __future__ import annotations

import asyncio
import math
import time as _real_time

__all__ = ["FakeClock", "FakeAsyncio"]


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


class FakeAsyncio:
    """Proxies the real asyncio, except sleep() advances the fake clock (and yields once)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sleeps: list[float] = []

    def __getattr__(self, name):
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        # like real time, a sleep always moves the clock forward, even when `seconds` is below float resolution
        self.clock.now = max(self.clock.now + max(0.0, seconds), math.nextafter(self.clock.now, math.inf))
        await asyncio.sleep(0)
