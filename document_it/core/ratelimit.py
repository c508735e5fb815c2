"""Keeping a provider's limits: RPM/TPM token buckets, an AIMD in-flight window and a shared pause."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from contextlib import asynccontextmanager, nullcontext
from email.utils import parsedate_to_datetime
from typing import Any, AsyncContextManager, AsyncIterator, Callable, Mapping

from .queueing import FLAT, PROBE_WIDTH, QUEUEING_VERDICT, SAMPLES, ProbeStream, QueueWatch, StartProbe

_log = logging.getLogger(__name__)

__all__ = ["TokenBucket", "AdaptiveWindow", "SharedPause", "RateLimiter", "parse_duration",
           "retry_after_seconds", "announced_rpm"]


class TokenBucket:
    """Refilled continuously at `per_minute / 60` units a second; holds at most `capacity` units.

    A capacity of one request means strictly even spacing (no burst, so no burst-then-429).
    A request larger than the capacity waits for a full bucket and leaves it in debt. `start` above the
    capacity lets that many units go at first: the surplus is taken ahead of the refill, once, so the units
    after it wait for the refill to pay it back (a pair at once, then the third two intervals later).
    """

    def __init__(self, per_minute: float, capacity: float | None = None, start: float | None = None) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, capacity if capacity is not None else 1.0)
        self._level = self.capacity
        self._credit = max(0.0, (start or 0.0) - self.capacity)  # units that may be taken ahead of the refill
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self.waiting = 0  # callers in acquire()

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay_for(self, amount: float) -> float:
        """Seconds until `amount` (capped at capacity) could be taken; 0 when it can be now."""
        self._refill()
        need = min(amount, self.capacity) - self._level - self._credit
        return 0.0 if need <= 0 else need / self.rate

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until `amount` units are available, then take them (callers are served in order)."""
        self.waiting += 1
        try:
            async with self._lock:
                while (wait := self.delay_for(amount)) > 0:
                    await asyncio.sleep(wait)
                self._level -= amount
                if self._level < 0 < self._credit:  # taken ahead of the refill: the credit is spent
                    self._credit = max(0.0, self._credit + self._level)
        finally:
            self.waiting -= 1

    def room(self) -> int:
        """Whole units that could be taken now without waiting, less those callers already wait for."""
        self._refill()
        return max(0, int(self._level + self._credit) - self.waiting)

    def adjust(self, delta: float) -> None:
        """Take (`delta` > 0) or give back (`delta` < 0) units once the real cost is known."""
        self._refill()
        self._level = min(self.capacity, self._level - delta)

    def set_rate(self, per_minute: float) -> None:
        self._refill()
        self.rate = per_minute / 60.0


class AdaptiveWindow:
    """How many requests may be in flight: halved on a 429, grown by one per window of successes; with
    `probe`, two requests first tell a parallel server (the whole window) from a queueing one (two)."""

    def __init__(self, cap: int, floor: int = 1, probe: bool = False, timeout_s: float = 60.0) -> None:
        self.cap = cap
        self.timeout_s = timeout_s  # a request's time limit: a queue is kept well inside it
        self.floor = max(1, min(floor, cap))
        self.start = StartProbe(fast_s=timeout_s / cap) if probe and cap > PROBE_WIDTH else None
        if self.start is not None:
            self.start.on_verdict = lambda verdict: self._after_probe(verdict, 0.0)
        self.size = float(PROBE_WIDTH if self.start else cap)
        self.in_flight = 0
        self.cuts = 0
        self.queue_cuts = 0  # cuts because latency grew with requests in flight (a server that queues)
        self.watch = QueueWatch()
        self._tentative = False  # settled by the start probe: opened again if replies say it keeps up
        self._queue_cut_at = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()  # callers waiting for a slot, first come first served
        self.on_open: Callable[[], None] | None = None  # told when the start probe's verdict sets the window

    @property
    def probing(self) -> bool:
        """True until the start probe has its verdict (the batcher sends prompts alone meanwhile)."""
        return self.start is not None and self.start.verdict is None

    @property
    def limit(self) -> int:
        return max(self.floor, int(self.size))

    async def acquire(self) -> None:
        """Take a slot, waiting in line while the window is full. A freed slot is handed to the first in line
        alone: hundreds of waiters cost nothing while they wait (no herd that wakes on every release)."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn  # the slot is counted as taken when it is handed over (_hand_over)
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                await self.release()  # handed a slot as it was cancelled: give it to the next in line
            else:
                self._waiters.remove(turn)
            raise

    async def release(self) -> None:
        self.in_flight -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        """Give the slots the window has room for to those first in line."""
        while self._waiters and self.in_flight < self.limit:
            turn = self._waiters.popleft()
            if not turn.done():
                self.in_flight += 1
                turn.set_result(None)

    async def on_success(self) -> None:
        """Additive increase: about +1 after a full window of successes, up to the cap — or up to the window
        settled for a server that queues, and not during a queueing probe."""
        ceiling = self.watch.settled or self.cap
        if self.size < ceiling and not self.probing and (self.watch.keeps_up or self.watch.settled):
            self.size = min(float(ceiling), self.size + 1.0 / max(1.0, self.size))
            self._hand_over()

    async def on_latency(self, seconds: float, tokens_in: int, tokens_out: int, sent_at: float) -> None:
        """One reply's time on the wire: probe, and settle the window, when latency says the server queues."""
        if self.probing:
            self.watch.note_fastest(seconds, tokens_in, tokens_out)  # the fastest rate starts here, nothing else
            assert self.start is not None
            verdict = self.start.observe(sent_at, seconds, tokens_in, tokens_out)
            if verdict is not None:
                self._after_probe(verdict, self.start.first_s)
            return
        if sent_at < self._queue_cut_at:
            return  # sent under another window: its wait says nothing about this one
        if self._tentative:
            if self.limit >= 2:  # alone, every reply is as fast as the first: only company tells
                await self._reopen_if_it_keeps_up(seconds, tokens_in, tokens_out)
            return
        target = self.watch.observe(seconds, tokens_in, tokens_out, self.limit)
        if target is None:
            return
        if target == self.limit:
            self._queue_cut_at = time.monotonic()  # judge from here on
            return
        if target < self.limit:
            self.queue_cuts += 1
        _log.info("LLM server latency %s: requests in flight %d → %d%s", "grows with the queue"
                  if target < self.limit else "did not fall with fewer requests", self.limit, target,
                  " (settled)" if self.watch.settled else "")
        self.size = float(max(self.floor, min(self.cap, target)))
        self._queue_cut_at = time.monotonic()
        self._hand_over()

    def probe_watch(self) -> ProbeStream | None:
        """A watch for the streamed reply of a request sent now, while the start probe is on (else None)."""
        return self.start.stream() if self.probing and self.start is not None else None

    def _after_probe(self, verdict: str, first_s: float) -> None:
        """Open the whole window for a parallel server; settle at two for one that queues (one when a reply
        takes so long that the second, waiting for it, could run out of time)."""
        if verdict != QUEUEING_VERDICT:  # side by side, or never two out together: the whole window
            size = float(self.cap)
        else:
            settled = PROBE_WIDTH if first_s * 4 < self.timeout_s else 1
            self.watch.settle(settled)
            self._tentative = True
            size = float(settled)
            _log.warning("the LLM server serves requests one after another: at most %d in flight", settled)
        self.size = size
        self._queue_cut_at = time.monotonic()
        self._hand_over()
        if self.on_open is not None:
            self.on_open()

    async def _reopen_if_it_keeps_up(self, seconds: float, tokens_in: int, tokens_out: int) -> None:
        """After a queueing verdict: SAMPLES replies as fast as the fastest say it was wrong; reopen."""
        self.watch.observe(seconds, tokens_in, tokens_out, self.limit)
        if self.watch.samples < SAMPLES or self.watch.ratio > FLAT:
            return
        _log.info("LLM replies keep pace at %d in flight: the whole window again", self.limit)
        self._tentative = False
        self.watch.unsettle()
        self.size = float(self.cap)
        self._queue_cut_at = time.monotonic()
        self._hand_over()

    def on_throttle(self, since: float, last_cut: float, timed_out: bool = False) -> bool:
        """Multiplicative decrease, at most once per round trip (requests sent before the last cut don't count).
        A 429 during the start probe comes from a server that works in parallel and counts requests: the cut
        is from the whole window; a timeout during it is from the probe's two."""
        if self.probing:
            assert self.start is not None
            self.start.cut()
            if not timed_out:
                self.size = float(self.cap)
        if since < last_cut:
            self._hand_over()  # the probe's window may have opened to the cap
            return False
        self.size = max(float(self.floor), self.size / 2.0)
        self.cuts += 1
        self._hand_over()
        return True


class SharedPause:
    """When the server says 'wait', every caller waits until the same moment."""

    def __init__(self) -> None:
        self.until = 0.0

    def pause_for(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + max(0.0, seconds))

    async def wait(self) -> None:
        while (left := self.until - time.monotonic()) > 0:
            await asyncio.sleep(left)


class RateLimiter:
    """Everything a request waits for before it is sent: pause, window, request and token buckets."""

    def __init__(self, cap: int, rpm: float = 0, tpm: float = 0, probe: bool = False,
                 timeout_s: float = 60.0) -> None:
        self.window = AdaptiveWindow(cap, probe=probe, timeout_s=timeout_s)
        self.pause = SharedPause()
        # the start probe's requests leave together (evenly spaced, a pair that does not overlap tells nothing
        # and the probe's narrow window would hold for several replies): one second's worth of the limit, at most
        burst = min(float(PROBE_WIDTH), rpm / 60.0) if self.window.probing else None
        self.requests = TokenBucket(rpm, start=burst) if rpm > 0 else None
        self.tokens = TokenBucket(tpm, capacity=max(1.0, tpm / 60.0)) if tpm > 0 else None
        self.learned_rpm: float | None = None
        # a cap shared with other processes (a Dask cluster's semaphore), taken once the buckets let it go
        self.lease: Callable[[], AsyncContextManager[Any]] | None = None
        self._last_cut = 0.0

    @asynccontextmanager
    async def slot(self, est_tokens: int) -> AsyncIterator[float]:
        """Hold one in-flight slot, paced by the buckets; yields the moment the request was sent."""
        await self.window.acquire()
        try:
            await self.pause.wait()
            if self.requests:
                await self.requests.acquire(1)
            if self.tokens:
                await self.tokens.acquire(est_tokens)
            async with self.lease() if self.lease else nullcontext():
                await self.pause.wait()  # a 429 may have arrived while we queued
                yield time.monotonic()
        finally:
            await self.window.release()

    async def on_success(self, est_tokens: int, used_tokens: int | None) -> None:
        await self.window.on_success()
        if self.tokens and used_tokens is not None:
            self.tokens.adjust(used_tokens - est_tokens)

    def request_pace(self) -> tuple[int, float] | None:
        """Requests that could leave now without waiting for the request bucket, and the seconds between two
        requests it lets go (None: no request limit); a request sent beyond the room would only hold a slot
        while it waits its turn."""
        if self.requests is None:
            return None
        room = 0 if self.pause.until > time.monotonic() else self.requests.room()
        return room, 1.0 / self.requests.rate

    def on_throttle(self, sent_at: float, retry_after: float | None) -> None:
        """A 429: pause everyone for the server's time and cut the window once per round trip."""
        self.pause.pause_for(retry_after if retry_after is not None else 1.0)
        if self.window.on_throttle(sent_at, self._last_cut):
            self._last_cut = time.monotonic()

    def on_timeout(self, sent_at: float) -> None:
        """A request timed out: with many in flight the server is likely queueing them, so the window halves,
        once per round trip, as on a 429 (without the pause)."""
        if self.window.in_flight > 1 and self.window.on_throttle(sent_at, self._last_cut, timed_out=True):
            self._last_cut = time.monotonic()
            _log.info("an LLM request timed out with %d in flight; at most %d from now on",
                      self.window.in_flight, self.window.limit)

    def learn_limit(self, limit_requests: float | None) -> None:
        """Adopt the request limit a server announces in x-ratelimit-limit-requests (unless one was given)."""
        if not limit_requests or limit_requests <= 0 or self.learned_rpm == limit_requests:
            return
        if self.requests is None or self.learned_rpm is not None:
            self.learned_rpm = limit_requests
            if self.requests is None:
                self.requests = TokenBucket(limit_requests)
            else:
                self.requests.set_rate(limit_requests)


_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """'1.5s', '6m0s', '20ms', '1h2m' (the x-ratelimit-reset-* format) → seconds."""
    parts = _DURATION.findall(text.strip())
    if not parts or _DURATION.sub("", text.strip()):
        try:
            return max(0.0, float(text))
        except ValueError:
            return None
    return sum(float(value) * _UNIT_S[unit] for value, unit in parts)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long the server asks us to wait: retry-after-ms, Retry-After (seconds or date), x-ratelimit-reset-*."""
    lower = {k.lower(): v for k, v in headers.items()}
    if (ms := lower.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    if (after := lower.get("retry-after")) is not None:
        try:
            return max(0.0, float(after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(after).timestamp() - time.time())
            except (TypeError, ValueError, IndexError):
                pass
    resets = [parse_duration(lower[f"x-ratelimit-reset-{kind}"]) for kind in ("requests", "tokens")
              if lower.get(f"x-ratelimit-reset-{kind}") and lower.get(f"x-ratelimit-remaining-{kind}", "0") in ("0", "")]
    resets = [r for r in resets if r is not None]
    return max(resets) if resets else None


def announced_rpm(headers: Mapping[str, str]) -> float | None:
    """The per-minute request limit a server announces in x-ratelimit-limit-requests, if any."""
    for key, value in headers.items():
        if key.lower() == "x-ratelimit-limit-requests":
            try:
                return float(value)
            except ValueError:
                return None
    return None
