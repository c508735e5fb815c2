"""A circuit breaker: after repeated failures stop sending for a cool-down, then let one probe through."""

from __future__ import annotations

import asyncio
import enum
import time

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpen"]


class BreakerState(str, enum.Enum):
    CLOSED = "closed"        # requests flow
    OPEN = "open"            # nothing is sent until the cool-down ends
    HALF_OPEN = "half_open"  # one probe is in flight; the rest wait for its verdict


class CircuitOpen(Exception):
    """Waited longer than allowed for the circuit to close."""


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; after `cooldown_s` one probe decides."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened = 0  # how many times it opened, for run.json
        self._opened_at = 0.0
        self._changed = asyncio.Event()

    async def ready(self, deadline: float) -> bool:
        """Wait until a request may be sent; True if this caller is the probe. Raises CircuitOpen past `deadline`."""
        while True:
            if self.state is BreakerState.CLOSED:
                return False
            now = time.monotonic()
            if self.state is BreakerState.OPEN and now >= self._opened_at + self.cooldown_s:
                self.state = BreakerState.HALF_OPEN
                return True
            if now >= deadline:
                raise CircuitOpen()
            wake = deadline if self.state is BreakerState.HALF_OPEN else min(deadline, self._opened_at + self.cooldown_s)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=max(0.01, wake - now))
            except asyncio.TimeoutError:
                pass

    def on_success(self) -> None:
        self.failures = 0
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self._changed.set()

    def on_failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or (
                self.state is BreakerState.CLOSED and self.failures >= self.threshold):
            self.state = BreakerState.OPEN
            self._opened_at = time.monotonic()
            self.opened += 1
            self._changed.set()
