"""Unit tests for document_it.core.breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED/OPEN.

The module's `time` is swapped for a fake clock so cool-downs pass without waiting.
"""

from __future__ import annotations

import asyncio
import time as _real_time

import pytest
from _clock import FakeClock

from document_it.core import breaker as breaker_mod
from document_it.core.breaker import BreakerState, CircuitBreaker, CircuitOpen




@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(breaker_mod, "time", fake)
    return fake


async def _spin(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _open(br: CircuitBreaker) -> None:
    for _ in range(br.threshold):
        br.on_failure()
    assert br.state is BreakerState.OPEN


async def test_closed_ready_returns_false_at_once(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=3, cooldown_s=10)
    assert br.state is BreakerState.CLOSED
    # even with a deadline already past: a closed circuit never makes anyone wait
    assert await asyncio.wait_for(br.ready(deadline=clock.now - 1), timeout=1) is False


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=3, cooldown_s=10)
    br.on_failure()
    br.on_failure()
    assert br.state is BreakerState.CLOSED
    assert br.opened == 0
    br.on_failure()
    assert br.state is BreakerState.OPEN
    assert br.opened == 1
    br.on_failure()  # more failures while open do not count as new openings
    assert br.state is BreakerState.OPEN
    assert br.opened == 1


def test_success_resets_failure_count(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=3, cooldown_s=10)
    br.on_failure()
    br.on_failure()
    br.on_success()
    assert br.failures == 0
    br.on_failure()
    br.on_failure()
    assert br.state is BreakerState.CLOSED
    br.on_failure()
    assert br.state is BreakerState.OPEN


async def test_open_with_past_deadline_raises(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=2, cooldown_s=10)
    _open(br)
    with pytest.raises(CircuitOpen):
        await asyncio.wait_for(br.ready(deadline=clock.now - 1), timeout=1)
    clock.advance(5)  # still inside the cool-down
    with pytest.raises(CircuitOpen):
        await asyncio.wait_for(br.ready(deadline=clock.now), timeout=1)
    assert br.state is BreakerState.OPEN


async def test_open_with_near_deadline_raises_real_clock() -> None:
    br = CircuitBreaker(threshold=1, cooldown_s=60)
    br.on_failure()
    with pytest.raises(CircuitOpen):
        await asyncio.wait_for(br.ready(deadline=_real_time.monotonic() + 0.05), timeout=2)
    assert br.state is BreakerState.OPEN


async def test_after_cooldown_first_caller_is_the_probe(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=2, cooldown_s=10)
    _open(br)
    clock.advance(10)
    assert await asyncio.wait_for(br.ready(deadline=clock.now + 100), timeout=1) is True
    assert br.state is BreakerState.HALF_OPEN


async def test_waiter_in_open_state_becomes_probe_when_cooldown_ends_real_clock() -> None:
    br = CircuitBreaker(threshold=1, cooldown_s=0.05)
    br.on_failure()
    assert await asyncio.wait_for(br.ready(deadline=_real_time.monotonic() + 5), timeout=2) is True
    assert br.state is BreakerState.HALF_OPEN


async def test_second_caller_waits_while_half_open_then_proceeds_on_success(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=2, cooldown_s=10)
    _open(br)
    clock.advance(10)
    assert await br.ready(deadline=clock.now + 100) is True  # the probe
    waiter = asyncio.create_task(br.ready(deadline=clock.now + 5))
    await _spin()
    assert not waiter.done()  # waits for the probe's verdict
    br.on_success()
    assert br.state is BreakerState.CLOSED
    assert await asyncio.wait_for(waiter, timeout=1) is False


async def test_only_one_probe_among_concurrent_callers(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=1, cooldown_s=10)
    br.on_failure()
    clock.advance(11)
    tasks = [asyncio.create_task(br.ready(deadline=clock.now + 5)) for _ in range(4)]
    await _spin()
    done = [t for t in tasks if t.done()]
    assert len(done) == 1 and done[0].result() is True
    br.on_success()
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=1)
    assert sorted(results) == [False, False, False, True]


async def test_failed_probe_reopens(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=2, cooldown_s=10)
    _open(br)
    clock.advance(10)
    assert await br.ready(deadline=clock.now + 100) is True
    br.on_failure()  # a single failure while half-open re-opens it
    assert br.state is BreakerState.OPEN
    assert br.opened == 2
    # a fresh cool-down starts now
    clock.advance(9)
    with pytest.raises(CircuitOpen):
        await asyncio.wait_for(br.ready(deadline=clock.now), timeout=1)
    clock.advance(1)
    assert await asyncio.wait_for(br.ready(deadline=clock.now + 100), timeout=1) is True
    assert br.state is BreakerState.HALF_OPEN
    br.on_success()
    assert br.state is BreakerState.CLOSED
    assert br.failures == 0


async def test_waiter_gets_circuit_open_when_probe_fails_past_its_deadline(clock: FakeClock) -> None:
    br = CircuitBreaker(threshold=1, cooldown_s=10)
    br.on_failure()
    clock.advance(10)
    assert await br.ready(deadline=clock.now + 100) is True
    waiter = asyncio.create_task(br.ready(deadline=clock.now + 5))
    await _spin()
    assert not waiter.done()
    clock.advance(6)  # the waiter's deadline passes while the probe is out
    br.on_failure()
    with pytest.raises(CircuitOpen):
        await asyncio.wait_for(waiter, timeout=1)
