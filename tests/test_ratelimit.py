"""Unit tests for document_it.core.ratelimit (buckets, window, pause, limiter, header parsing).

Time is faked: the module's `time` and `asyncio` names are swapped for a controllable clock and an
`asyncio` proxy whose `sleep` advances that clock, so no test depends on real scheduling.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from _clock import FakeClock

from document_it.core import ratelimit
from document_it.core.ratelimit import (AdaptiveWindow, RateLimiter, SharedPause, TokenBucket, announced_rpm,
                                        parse_duration, retry_after_seconds)




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


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


@pytest.fixture
def fake_sleep(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> FakeAsyncio:
    fake = FakeAsyncio(clock)
    monkeypatch.setattr(ratelimit, "asyncio", fake)
    return fake


# --------------------------------------------------------------------------- parse_duration

@pytest.mark.parametrize("text, expected", [
    ("1s", 1.0),
    ("1.5s", 1.5),
    ("250ms", 0.25),
    ("6m0s", 360.0),
    ("1m3s", 63.0),
    ("1h2m", 3720.0),
    ("20ms", 0.02),
    ("2", 2.0),
    ("0.5", 0.5),
    (" 1s ", 1.0),
])
def test_parse_duration_valid(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "", "1x", "5 parsecs", "1s2q", "soon", "s"])
def test_parse_duration_garbage_is_none(text: str) -> None:
    assert parse_duration(text) is None


# --------------------------------------------------------------------------- retry_after_seconds

def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "Retry-After": "10"}) == pytest.approx(1.5)


def test_retry_after_seconds_plain() -> None:
    assert retry_after_seconds({"Retry-After": "7"}) == pytest.approx(7.0)


def test_retry_after_invalid_ms_falls_back_to_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "4"}) == pytest.approx(4.0)


def test_retry_after_http_date_in_future() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    got = retry_after_seconds({"Retry-After": format_datetime(when, usegmt=True)})
    assert got is not None
    assert got == pytest.approx(30.0, abs=2.0)  # the header format drops sub-second precision


def test_retry_after_http_date_in_past_is_zero() -> None:
    when = datetime.now(timezone.utc) - timedelta(seconds=300)
    assert retry_after_seconds({"Retry-After": format_datetime(when, usegmt=True)}) == 0.0


@pytest.mark.parametrize("headers, expected", [
    ({"RETRY-AFTER-MS": "250"}, 0.25),
    ({"Retry-After-Ms": "250"}, 0.25),
    ({"rEtRy-AfTeR": "3"}, 3.0),
    ({"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "2s"}, 2.0),
])
def test_retry_after_header_names_case_insensitive(headers: dict, expected: float) -> None:
    assert retry_after_seconds(headers) == pytest.approx(expected)


def test_reset_requests_used_when_remaining_is_zero() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    assert retry_after_seconds(headers) == pytest.approx(360.0)


def test_reset_requests_ignored_when_remaining_positive() -> None:
    headers = {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "6m0s"}
    assert retry_after_seconds(headers) is None


def test_reset_takes_longest_of_exhausted_limits() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
               "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m3s"}
    assert retry_after_seconds(headers) == pytest.approx(63.0)
    headers["x-ratelimit-remaining-tokens"] = "900"
    assert retry_after_seconds(headers) == pytest.approx(1.0)


def test_retry_after_wins_over_reset_headers() -> None:
    headers = {"retry-after": "2", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    assert retry_after_seconds(headers) == pytest.approx(2.0)


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/json"}, {"retry-after": "whenever"}])
def test_retry_after_nothing_is_none(headers: dict) -> None:
    assert retry_after_seconds(headers) is None


# --------------------------------------------------------------------------- announced_rpm

@pytest.mark.parametrize("key", ["x-ratelimit-limit-requests", "X-RateLimit-Limit-Requests", "X-RATELIMIT-LIMIT-REQUESTS"])
def test_announced_rpm_case_insensitive(key: str) -> None:
    assert announced_rpm({"content-type": "text/plain", key: "500"}) == 500.0


def test_announced_rpm_non_number_is_none() -> None:
    assert announced_rpm({"x-ratelimit-limit-requests": "lots"}) is None


def test_announced_rpm_absent_is_none() -> None:
    assert announced_rpm({"x-ratelimit-limit-tokens": "10000"}) is None


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
