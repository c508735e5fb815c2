"""Unit tests for document_it.core.ratelimit's TokenBucket, on the fake clock (tests/ratelimit/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest
from _clock import FakeAsyncio, FakeClock

from document_it.core.ratelimit import RateLimiter, TokenBucket


# --------------------------------------------------------------------------- TokenBucket

@pytest.mark.parametrize("per_minute", [0, -1, -60.0])
def test_token_bucket_rejects_non_positive_rate(per_minute: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(per_minute)


def test_token_bucket_starts_full(clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=5)
    assert bucket.capacity == 5
    assert bucket.delay_for(5) == 0.0
    assert bucket.delay_for(1) == 0.0
    # default capacity is one request (strictly even spacing)
    assert TokenBucket(600).capacity == 1.0


async def test_token_bucket_drained_delay_real_clock() -> None:
    bucket = TokenBucket(600)  # 10/s
    await bucket.acquire()
    delay = bucket.delay_for(1)
    assert 0 < delay <= 0.1 + 1e-9
    assert delay == pytest.approx(0.1, abs=0.05)


async def test_token_bucket_drain_delay_is_amount_over_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=5)  # 10 units/s
    await bucket.acquire(5)
    assert bucket.delay_for(1) == pytest.approx(0.1)
    assert bucket.delay_for(3) == pytest.approx(0.3)
    assert bucket.delay_for(5) == pytest.approx(0.5)


async def test_token_bucket_refills_with_time_up_to_capacity(clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=5)
    await bucket.acquire(5)
    clock.advance(0.2)  # 2 units back
    assert bucket.delay_for(2) == 0.0
    assert bucket.delay_for(3) == pytest.approx(0.1)
    clock.advance(60)  # far more than needed: level is capped at capacity
    assert bucket.delay_for(5) == 0.0
    await bucket.acquire(5)
    assert bucket.delay_for(1) == pytest.approx(0.1)  # nothing beyond capacity was stored


async def test_token_bucket_acquire_evenly_spaced(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    bucket = TokenBucket(600)  # 10/s, capacity 1
    n = 6
    start = clock.now
    stamps = []
    for _ in range(n):
        await bucket.acquire()
        stamps.append(clock.now)
    assert clock.now - start == pytest.approx((n - 1) / 10, abs=1e-6)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps == pytest.approx([0.1] * (n - 1), abs=1e-6)


async def test_token_bucket_concurrent_acquires_evenly_spaced(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=2)
    stamps: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        stamps.append(clock.now)

    start = clock.now
    await asyncio.gather(*(one() for _ in range(6)))
    # a burst of capacity (2) at once, then one every 0.1 s
    assert [s - start for s in stamps] == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-6)


async def test_token_bucket_adjust_takes_and_gives_back(clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=10)
    bucket.adjust(4)  # took 4 more than estimated
    assert bucket.delay_for(10) == pytest.approx(0.4)
    assert bucket.delay_for(6) == 0.0
    bucket.adjust(-4)  # gave them back
    assert bucket.delay_for(10) == 0.0
    bucket.adjust(-100)  # giving back never overfills
    await bucket.acquire(10)
    assert bucket.delay_for(1) == pytest.approx(0.1)


async def test_token_bucket_oversized_amount_admitted_when_full_leaves_debt(fake_sleep: FakeAsyncio,
                                                                           clock: FakeClock) -> None:
    bucket = TokenBucket(600)  # capacity 1, 10/s
    start = clock.now
    await bucket.acquire(3)
    assert clock.now == start  # admitted at once: the bucket was full
    assert bucket.delay_for(1) == pytest.approx(0.3)  # 2 units of debt + 1 unit
    await bucket.acquire(1)
    assert clock.now - start == pytest.approx(0.3, abs=1e-6)


async def test_token_bucket_oversized_amount_waits_for_full_bucket(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=2)
    await bucket.acquire(2)
    start = clock.now
    await bucket.acquire(5)  # waits only until the bucket is full (2 units = 0.2 s)
    assert clock.now - start == pytest.approx(0.2, abs=1e-6)
    assert bucket.delay_for(1) == pytest.approx(0.4)  # 3 units of debt + 1


async def test_token_bucket_set_rate_changes_spacing(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    bucket = TokenBucket(600)
    await bucket.acquire()
    assert bucket.delay_for(1) == pytest.approx(0.1)
    bucket.set_rate(1200)
    assert bucket.rate == pytest.approx(20.0)
    assert bucket.delay_for(1) == pytest.approx(0.05)
    start = clock.now
    for _ in range(4):
        await bucket.acquire()
    assert clock.now - start == pytest.approx(4 * 0.05, abs=1e-6)


async def test_token_bucket_set_rate_keeps_refill_earned_at_old_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=10)
    await bucket.acquire(10)
    clock.advance(0.5)  # 5 units earned at 10/s
    bucket.set_rate(60)  # 1/s from now on
    assert bucket.delay_for(5) == 0.0
    assert bucket.delay_for(6) == pytest.approx(1.0)


# --------------------------------------------------------------------------- a start above capacity

async def test_token_bucket_start_surplus_is_taken_ahead_of_the_refill(fake_sleep: FakeAsyncio,
                                                                       clock: FakeClock) -> None:
    bucket = TokenBucket(60, start=2)  # capacity 1, 1 unit/s, two may go at first
    assert bucket.room() == 2
    clock.advance(30)  # time does not add to the surplus
    assert bucket.room() == 2
    await bucket.acquire()
    await bucket.acquire()
    # the second was taken ahead of the refill: the next waits for the refill to pay it back (two seconds)
    assert bucket.room() == 0 and bucket.delay_for(1) == pytest.approx(2.0)
    clock.advance(1.5)
    assert bucket.delay_for(1) == pytest.approx(0.5)
    clock.advance(10)
    assert bucket.room() == 1  # back to strictly even spacing: the surplus is spent once


async def test_token_bucket_start_pair_leaves_together_then_evenly(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    bucket = TokenBucket(600, start=2)  # 10/s, capacity 1
    start = clock.now
    stamps = []
    for _ in range(4):
        await bucket.acquire()
        stamps.append(clock.now - start)
    # no second of the limit ever holds more than its share: the pair is paid back before the third goes
    assert stamps == pytest.approx([0.0, 0.0, 0.2, 0.3], abs=1e-6)


def test_token_bucket_start_below_capacity_starts_full(clock: FakeClock) -> None:
    bucket = TokenBucket(600, capacity=5, start=2)
    assert bucket.room() == 5 and bucket.delay_for(5) == 0.0


@pytest.mark.parametrize(("cap", "rpm", "probe", "room", "interval"), [
    (4, 120, True, 2, 0.5),   # the probe's pair: one second's worth of 120 a minute
    (4, 600, True, 2, 0.1),   # one second's worth is 10, but the probe sends two at most
    (4, 30, True, 1, 2.0),    # half a request a second: no pair, the capacity of one
    (4, 120, False, 1, 0.5),  # no probe: strictly even spacing from the start
    (2, 120, True, 1, 0.5),   # a window of two has no start probe
])
def test_rate_limiter_request_room_at_start(clock: FakeClock, cap: int, rpm: float, probe: bool, room: int,
                                            interval: float) -> None:
    limiter = RateLimiter(cap, rpm=rpm, probe=probe)
    assert limiter.request_pace() == (room, pytest.approx(interval))
    clock.advance(60)
    assert limiter.request_pace()[0] == room  # an idle minute keeps the start room but adds none


async def test_rate_limiter_probe_pair_is_not_refilled(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    limiter = RateLimiter(4, rpm=120, probe=True)
    await limiter.requests.acquire()
    await limiter.requests.acquire()
    assert limiter.request_pace()[0] == 0
    clock.advance(60)
    assert limiter.request_pace()[0] == 1
