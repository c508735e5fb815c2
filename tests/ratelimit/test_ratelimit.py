"""Unit tests for document_it.core.ratelimit: the adaptive window, the shared pause and the limiter.
(Header parsing is in test_rate_headers.py, the token bucket in test_token_bucket.py.)

Time is faked: the module's `time` and `asyncio` names are swapped for a controllable clock and an
`asyncio` proxy whose `sleep` advances that clock (tests/ratelimit/conftest.py), so no test depends on
real scheduling.
"""

from __future__ import annotations

import asyncio

import pytest
from _clock import FakeAsyncio, FakeClock

from document_it.core.ratelimit import AdaptiveWindow, RateLimiter, SharedPause


# --------------------------------------------------------------------------- AdaptiveWindow

def test_window_starts_at_cap() -> None:
    window = AdaptiveWindow(8)
    assert window.limit == 8
    assert window.in_flight == 0
    assert window.cuts == 0


def test_window_throttle_halves_down_to_floor() -> None:
    window = AdaptiveWindow(16, floor=3)
    limits = []
    for i in range(6):
        assert window.on_throttle(since=float(i + 1), last_cut=float(i)) is True
        limits.append(window.limit)
    assert limits == [8, 4, 3, 3, 3, 3]
    assert window.cuts == 6


def test_window_never_below_one() -> None:
    window = AdaptiveWindow(4, floor=0)
    for i in range(10):
        window.on_throttle(since=float(i + 1), last_cut=float(i))
    assert window.limit == 1
    assert window.size >= 1.0


def test_window_throttle_from_before_last_cut_is_ignored() -> None:
    window = AdaptiveWindow(8)
    assert window.on_throttle(since=10.0, last_cut=0.0) is True
    assert window.limit == 4
    # a request sent at 9.0, before the cut at 10.5, answers with another 429: same congestion event
    assert window.on_throttle(since=9.0, last_cut=10.5) is False
    assert window.limit == 4
    assert window.cuts == 1
    # one sent after the cut does count
    assert window.on_throttle(since=11.0, last_cut=10.5) is True
    assert window.limit == 2
    assert window.cuts == 2


async def test_window_grows_back_additively_up_to_cap() -> None:
    window = AdaptiveWindow(8)
    window.on_throttle(since=1.0, last_cut=0.0)
    assert window.limit == 4
    size = window.size
    for _ in range(4):  # one window's worth of successes
        await window.on_success()
    assert size + 0.8 <= window.size <= size + 1.0  # about +1, not doubling
    for _ in range(2):
        await window.on_success()
    assert window.limit == 5
    for _ in range(200):
        await window.on_success()
    assert window.size == 8.0
    assert window.limit == 8


async def test_window_success_at_cap_stays_at_cap() -> None:
    window = AdaptiveWindow(3)
    for _ in range(10):
        await window.on_success()
    assert window.size == 3.0


async def _spin(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_window_acquire_blocks_at_limit_until_release() -> None:
    window = AdaptiveWindow(2)
    await window.acquire()
    await window.acquire()
    assert window.in_flight == 2
    entered = asyncio.Event()

    async def third() -> None:
        await window.acquire()
        entered.set()

    task = asyncio.create_task(third())
    await _spin()
    assert not entered.is_set()
    assert window.in_flight == 2
    await window.release()
    await asyncio.wait_for(task, timeout=1)
    assert entered.is_set()
    assert window.in_flight == 2


async def test_window_cut_below_in_flight_blocks_until_enough_released() -> None:
    window = AdaptiveWindow(4)
    for _ in range(4):
        await window.acquire()
    window.on_throttle(since=1.0, last_cut=0.0)  # limit 2, 4 in flight
    task = asyncio.create_task(window.acquire())
    await _spin()
    await window.release()
    await window.release()  # 2 in flight: still at the limit
    await _spin()
    assert not task.done()
    await window.release()  # 1 in flight
    await asyncio.wait_for(task, timeout=1)
    assert window.in_flight == 2


async def test_window_growth_wakes_waiter() -> None:
    window = AdaptiveWindow(2)
    window.on_throttle(since=1.0, last_cut=0.0)  # limit 1
    await window.acquire()
    task = asyncio.create_task(window.acquire())
    await _spin()
    assert not task.done()
    await window.on_success()  # 1 -> 2: a second slot opens without any release
    await asyncio.wait_for(task, timeout=1)
    assert window.in_flight == 2


# --------------------------------------------------------------------------- SharedPause

def test_pause_extends_but_never_shortens(clock: FakeClock) -> None:
    pause = SharedPause()
    pause.pause_for(10)
    assert pause.until == pytest.approx(1010.0)
    pause.pause_for(3)
    assert pause.until == pytest.approx(1010.0)
    clock.advance(5)
    pause.pause_for(3)  # 1008 < 1010
    assert pause.until == pytest.approx(1010.0)
    pause.pause_for(20)
    assert pause.until == pytest.approx(1025.0)
    pause.pause_for(-50)  # negative never moves it back
    assert pause.until == pytest.approx(1025.0)


async def test_pause_wait_returns_immediately_when_not_paused(fake_sleep: FakeAsyncio) -> None:
    pause = SharedPause()
    await asyncio.wait_for(pause.wait(), timeout=1)
    assert fake_sleep.sleeps == []


async def test_pause_wait_returns_immediately_after_pause_expired(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    pause = SharedPause()
    pause.pause_for(2)
    clock.advance(3)
    await pause.wait()
    assert fake_sleep.sleeps == []


async def test_pause_wait_sleeps_until_the_moment(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    pause = SharedPause()
    pause.pause_for(2.5)
    await pause.wait()
    assert clock.now >= pause.until
    assert clock.now == pytest.approx(1002.5)


# --------------------------------------------------------------------------- RateLimiter

async def test_slot_holds_window_slot_while_inside() -> None:
    limiter = RateLimiter(cap=3)
    assert limiter.window.in_flight == 0
    async with limiter.slot(10) as sent_at:
        assert isinstance(sent_at, float)
        assert limiter.window.in_flight == 1
        async with limiter.slot(10):
            assert limiter.window.in_flight == 2
        assert limiter.window.in_flight == 1
    assert limiter.window.in_flight == 0


async def test_slot_released_on_exception() -> None:
    limiter = RateLimiter(cap=1)
    with pytest.raises(RuntimeError, match="boom"):
        async with limiter.slot(10):
            assert limiter.window.in_flight == 1
            raise RuntimeError("boom")
    assert limiter.window.in_flight == 0
    # the single slot is usable again
    async with asyncio.timeout(1):
        async with limiter.slot(10):
            assert limiter.window.in_flight == 1


async def test_slot_released_when_cancelled_while_waiting_for_pause() -> None:
    limiter = RateLimiter(cap=2)
    limiter.pause.pause_for(60)  # real clock: the waiter parks in pause.wait()
    task = asyncio.create_task(limiter.slot(1).__aenter__())
    await _spin()
    assert limiter.window.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.window.in_flight == 0


async def test_slot_waits_for_pause_and_paces_requests(fake_sleep: FakeAsyncio, clock: FakeClock) -> None:
    limiter = RateLimiter(cap=4, rpm=600)
    limiter.pause.pause_for(5)
    sent = []
    for _ in range(3):
        async with limiter.slot(1) as sent_at:
            sent.append(sent_at)
    assert sent[0] >= 1005.0
    assert [b - a for a, b in zip(sent, sent[1:])] == pytest.approx([0.1, 0.1], abs=1e-6)


async def test_on_throttle_pauses_and_cuts_once_per_round_trip(clock: FakeClock) -> None:
    limiter = RateLimiter(cap=8)
    sent_a = clock.now
    sent_b = clock.now + 0.1
    clock.advance(0.5)
    limiter.on_throttle(sent_a, 30.0)
    assert limiter.pause.until == pytest.approx(clock.now + 30.0)
    assert limiter.window.limit == 4
    assert limiter.window.cuts == 1
    # a second 429 from a request sent before that cut: no new cut, pause not shortened
    clock.advance(0.1)
    limiter.on_throttle(sent_b, 5.0)
    assert limiter.window.limit == 4
    assert limiter.window.cuts == 1
    assert limiter.pause.until == pytest.approx(1030.5)
    # a request sent after the cut that is throttled again: a new round trip, a new cut
    sent_c = clock.now
    clock.advance(1.0)
    limiter.on_throttle(sent_c, None)
    assert limiter.window.limit == 2
    assert limiter.window.cuts == 2


def test_on_throttle_without_retry_after_pauses_one_second(clock: FakeClock) -> None:
    limiter = RateLimiter(cap=2)
    limiter.on_throttle(clock.now, None)
    assert limiter.pause.until == pytest.approx(clock.now + 1.0)


def test_learn_limit_adopts_announced_limit_when_none_configured() -> None:
    limiter = RateLimiter(cap=4)
    assert limiter.requests is None
    limiter.learn_limit(600)
    assert limiter.requests is not None
    assert limiter.requests.rate == pytest.approx(10.0)
    assert limiter.learned_rpm == 600
    limiter.learn_limit(1200)  # the server changed its mind: follow it
    assert limiter.requests.rate == pytest.approx(20.0)
    assert limiter.learned_rpm == 1200


@pytest.mark.parametrize("value", [None, 0, -5])
def test_learn_limit_ignores_missing_or_non_positive(value) -> None:
    limiter = RateLimiter(cap=4)
    limiter.learn_limit(value)
    assert limiter.requests is None
    assert limiter.learned_rpm is None


def test_learn_limit_does_not_override_configured_rpm() -> None:
    limiter = RateLimiter(cap=4, rpm=60)
    configured = limiter.requests
    limiter.learn_limit(600)
    limiter.learn_limit(10_000)
    assert limiter.requests is configured
    assert limiter.requests.rate == pytest.approx(60 / 60)
    assert limiter.learned_rpm is None


async def test_on_success_corrects_token_level(clock: FakeClock) -> None:
    limiter = RateLimiter(cap=4, tpm=6000)  # 100 tokens/s, capacity 100
    assert limiter.tokens is not None
    assert limiter.tokens.capacity == pytest.approx(100.0)
    async with limiter.slot(50):
        pass
    assert limiter.tokens.delay_for(100) == pytest.approx(0.5)  # 50 left
    await limiter.on_success(50, 80)  # used 30 more than estimated
    assert limiter.tokens.delay_for(100) == pytest.approx(0.8)  # 20 left
    await limiter.on_success(50, 20)  # used 30 fewer than estimated
    assert limiter.tokens.delay_for(100) == pytest.approx(0.5)  # 50 left
    await limiter.on_success(50, None)  # unknown usage: no correction
    assert limiter.tokens.delay_for(100) == pytest.approx(0.5)


async def test_on_success_grows_window() -> None:
    limiter = RateLimiter(cap=4)
    limiter.on_throttle(1.0, 0.0)
    size = limiter.window.size
    await limiter.on_success(10, 10)
    assert limiter.window.size > size
