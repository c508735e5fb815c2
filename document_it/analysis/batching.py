"""Dynamic batching: prompts of the same task from different pages travel in one request — when they
would otherwise wait.

A reply's decode time grows with the answers it carries, so a batch of five costs a server slot about five
answers' time: batching pays only for prompts that could not be sent now anyway. The batcher therefore
sends a prompt on its own while a slot of the concurrency window is free, and groups the backlog only:
whenever a slot frees, the prompts waiting are spread over the whole window (largest queue first), each
request carrying at most --batch-size items and --batch-max-tokens prompt tokens, and no more than the
model's context window holds with room for every answer. A window shrunk by 429s, or slots held while
requests wait for the RPM/TPM buckets, count as busy, so batches grow exactly when the server or its limits
are the bottleneck. Not on a server found to queue (one slot, or a few): it decodes a batch's answers one
after another, as it would separate requests, so prompts go alone there. While the request limit (RPM) is
what binds, a request leaves only when the limit lets it, carrying as many waiting prompts as fit, since
requests are then the scarce thing. Items the reply leaves out are asked again on their own; a batch that
fails as a whole is split in halves, down to single items that take the ordinary path.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from pydantic import BaseModel

from ..errors import LLMError, LLMFatalError
from ..core.queueing import PROBE_WIDTH
from .prompts import Context, Question

__all__ = ["Batcher", "BatchItem", "ReplyShape", "AUTO_MAX_ITEMS", "POLL_S", "combined_stats"]

log = logging.getLogger(__name__)

AUTO_MAX_ITEMS = 8
POLL_S = 0.03  # how often a backlog looks for a slot freed by requests the batcher did not send
RATE_BOUND_S = 0.5  # prompts that would wait this long for the request limit, sent one at a time, make it bind
ANSWER_S = 1.0  # one answer's time before any was measured


@dataclass
class BatchItem:
    """One prompt waiting for a batch."""

    id: str
    task: Question
    context: Context
    messages: list[tuple[str, str]]  # the prompt as it would go alone
    tokens: int
    future: asyncio.Future[BaseModel] = field(repr=False)
    queued_at: float = 0.0  # loop time of submission


class ReplyShape:
    """A reply's time as a fixed cost (time to first token, the request's round trip) plus a time per token it
    writes, fitted by least squares over recent answers sent alone. Batching saves the fixed cost once per
    request it spares but decodes its answers one after another: the ratio of the two says whether it pays."""

    def __init__(self, size: int = 32) -> None:
        self._points: deque[tuple[int, float]] = deque(maxlen=size)  # (tokens written, seconds)

    def observe(self, seconds: float, tokens_out: int) -> None:
        if tokens_out > 0:
            self._points.append((tokens_out, seconds))

    def fixed_per_answer(self) -> float | None:
        """A reply's fixed cost over one answer's decode time (infinite when time does not grow with the
        answer); None until at least four answers of lengths far enough apart fit a line."""
        if len(self._points) < 4:
            return None
        xs = [x for x, _ in self._points]
        mean_x = sum(xs) / len(xs)
        if max(xs) - min(xs) < 0.2 * mean_x:
            return None
        mean_y = sum(y for _, y in self._points) / len(self._points)
        slope = (sum((x - mean_x) * (y - mean_y) for x, y in self._points)
                 / sum((x - mean_x) ** 2 for x in xs))
        if slope <= 0:
            return math.inf
        return max(0.0, mean_y - slope * mean_x) / (slope * mean_x)


class Window(Protocol):
    """The concurrency window the batcher's requests go through (core.ratelimit.AdaptiveWindow)."""

    @property
    def limit(self) -> int: ...

    in_flight: int


class _Unbounded:
    limit = 1 << 30
    in_flight = 0


SendBatch = Callable[[Question, list[BatchItem]], Awaitable[dict[str, BaseModel]]]
SendOne = Callable[[BatchItem], Awaitable[BaseModel]]
Fits = Callable[[Question, int, int], bool]  # (task, prompt tokens, answers): does one request hold them?


class Batcher:
    """Queues prompts per task and sends them alone or together by the free slots; every caller gets its
    own answer back."""

    def __init__(self, send_batch: SendBatch, send_one: SendOne, max_items: int, max_tokens: int,
                 window: Window | None = None, poll_s: float = POLL_S, fits: Fits | None = None,
                 request_pace: Callable[[], tuple[int, float] | None] | None = None,
                 shape: ReplyShape | None = None) -> None:
        self._send_batch, self._send_one = send_batch, send_one
        self.shape = shape or ReplyShape()
        self._fits: Fits = fits or (lambda task, tokens, answers: True)
        self._window: Window = window or _Unbounded()
        if hasattr(self._window, "on_open"):  # the start probe's verdict opens the window: send the backlog
            self._window.on_open = self._schedule  # type: ignore[attr-defined]
        # (requests the rate limit lets leave now, seconds between two), or None without a request limit
        self._request_pace = request_pace or (lambda: None)
        self.max_items = max_items
        self.max_tokens = max_tokens
        self.poll_s = poll_s
        self._queues: dict[Question, list[BatchItem]] = {}
        self._outstanding = 0  # requests this batcher started that have not finished
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = 0
        self.batches = 0
        self.items_batched = 0
        self.largest = 0
        self.singles = 0
        self.queue_wait_s = 0.0  # prompt-seconds spent waiting here for a slot
        self.answer_s = ANSWER_S  # how long one prompt sent alone takes to answer (a moving average)
        self.item_s: float | None = None  # what one more item adds to a batch's time (a moving average)
        self._draining = 0  # the batch size a rate-bound backlog drains at, until it is gone
        self._probe_sent = 0  # prompts sent while the window's start probe was on

    async def submit(self, task: Question, context: Context, messages: list[tuple[str, str]], tokens: int) -> BaseModel:
        """Queue one prompt and wait for its answer."""
        loop = asyncio.get_running_loop()
        self._ids += 1
        item = BatchItem(f"i{self._ids}", task, context, messages, tokens, loop.create_future(), loop.time())
        self._queues.setdefault(task, []).append(item)
        self._schedule()
        return await item.future

    async def aclose(self) -> None:
        """Stop before the client goes: requests still out are cancelled and awaited, and prompts still
        waiting get an error, so nothing sends on a closed connection or waits for ever."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for job in list(self._tasks):
            job.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._queues.values():
            for item in queue:
                if not item.future.done():
                    item.future.set_exception(LLMError("the run ended before this prompt was sent"))
        self._queues.clear()

    @property
    def waiting(self) -> int:
        """Prompts queued for a slot."""
        return sum(len(queue) for queue in self._queues.values())

    def _schedule(self) -> None:
        """Dispatch once the current burst of submissions is in (one loop turn), so a burst is seen whole."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _free(self) -> int:
        """Slots free now; requests this batcher launched count even before they reach the window."""
        return max(0, self._window.limit - max(self._window.in_flight, self._outstanding))

    def _dispatch(self) -> None:
        """Send waiting prompts into the free slots: alone while the backlog fits the window, else in
        batches sized to spread the backlog over the whole window (the busy slots free soon and take the
        rest), so a burst does not pile into the first slots that free while the others idle."""
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        free, waiting = self._free(), self.waiting
        share = math.ceil(waiting / max(1, self._window.limit))  # the busy slots will take their part soon
        probing = getattr(self._window, "probing", False)  # the window's start probe times single prompts
        pace = self._request_pace()
        # the request limit binds when the prompts waiting would take a while to leave one request at a time
        rate_bound = not probing and pace is not None and (waiting - pace[0]) * pace[1] >= RATE_BOUND_S
        watch = getattr(self._window, "watch", None)
        if probing or (watch is not None and watch.settled is not None and not rate_bound):
            # a server found to queue (one slot, or a few) decodes a batch's answers one after another, as it
            # would separate requests: a batch saves it nothing, and a small model's batched answer that fails
            # as a whole costs every item's prompt again
            share = 1
        elif not rate_bound and share > 1:
            share = min(share, self._paying_size(waiting))
        if rate_bound:
            # the request limit binds, not the slots: requests are what is scarce. Sending the waiting prompts
            # k at a time takes waiting / k intervals of the limit, and a batch's answers come one after
            # another (its prompts wait k/2 answers' time on average): k = √(2 × waiting × interval / one
            # answer's time) balances the two. A request is not spent on fewer prompts while more may arrive
            # within one interval of the limit.
            # One answer's time here is what one more item adds to a batch (its decode, measured on batches),
            # not a single request's whole time. The backlog drains at the size chosen for it (its later
            # requests do not shrink as it empties, since its prompts have waited already), spread evenly
            # over the requests that size takes.
            free = min(free, pace[0])
            wanted = math.ceil(math.sqrt(2 * waiting * pace[1] / self.item_time()))
            self._draining = max(1, min(self.max_items, max(wanted, self._draining)))
            share = math.ceil(waiting / math.ceil(waiting / self._draining))
        if probing and pace is not None and self._outstanding and self._probe_sent >= PROBE_WIDTH:
            free = 0  # under a request limit the probe's own replies end it: no request spent on one prompt meanwhile
        while free > 0 and waiting > 0:
            task = max(self._queues, key=lambda t: len(self._queues[t]))
            if rate_bound and self._lingers(task, pace[1], share):
                break
            batch = self._take(task, share)
            self._probe_sent += probing
            self._launch(task, batch)
            waiting -= len(batch)
            free -= 1
        if not self.waiting:
            self._draining = 0
        if waiting and (self._outstanding == 0 or pace is not None):
            # slots held by other requests, or the request limit refills: look again shortly
            self._timer = asyncio.get_running_loop().call_later(self.poll_s, self._dispatch)

    def _paying_size(self, waiting: int) -> int:
        """The largest batch that finishes a backlog of `waiting` prompts sooner on a server that serves the whole
        window side by side. Batches of k over L slots spare (k − 1) fixed costs a request, about W/L × fixed
        each slot, and lengthen each request by (k − 1) answers' decode: k pays while k − 1 ≤ W/L × fixed /
        decode. A server that decodes slowly (hosted APIs: 10 ms a token and more) gains little from fewer
        requests and loses the window's packing; one whose requests cost mostly a fixed round trip gains.
        Not measured yet: alone (the first replies measure it). A window cut by the server (429s, timeouts),
        or of one or two slots: requests are what is scarce, and every prompt waits its turn anyway."""
        window = self._window
        if window.limit <= PROBE_WIDTH or window.limit < getattr(window, "cap", window.limit):
            return self.max_items
        ratio = self.shape.fixed_per_answer()
        if ratio is None:
            return 1
        if math.isinf(ratio):
            return self.max_items
        return max(1, 1 + int(waiting / window.limit * ratio))

    def _lingers(self, task: Question, interval: float, wanted: int) -> bool:
        """True while `task`'s queue is short of the batch wanted and its oldest prompt has waited less than one
        interval of the request limit (what a request spent now on fewer prompts would save at most)."""
        queue = self._queues[task]
        age = asyncio.get_running_loop().time() - queue[0].queued_at
        return len(queue) < wanted and age < interval

    def _take(self, task: Question, wanted: int) -> list[BatchItem]:
        """Up to `wanted` items of `task`'s queue, the oldest first, then each later one that still fits the item
        and token budgets (at least one)."""
        queue = self._queues[task]
        batch = [queue.pop(0)]
        used = batch[0].tokens
        limit = min(wanted, self.max_items)
        index = 0
        while index < len(queue) and len(batch) < limit:  # first fit: a large prompt does not stop smaller ones
            tokens = queue[index].tokens
            if used + tokens <= self.max_tokens and self._fits(task, used + tokens, len(batch) + 1):
                used += tokens
                batch.append(queue.pop(index))
            else:
                index += 1
        if not queue:
            del self._queues[task]
        return batch

    def _launch(self, task: Question, batch: list[BatchItem]) -> None:
        self._outstanding += 1
        loop = asyncio.get_running_loop()
        self.queue_wait_s += sum(loop.time() - item.queued_at for item in batch)
        job = loop.create_task(self._run(task, batch))
        self._tasks.add(job)
        job.add_done_callback(self._done)

    def _done(self, job: asyncio.Task[None]) -> None:
        self._tasks.discard(job)
        self._outstanding -= 1
        if self._queues:
            self._schedule()

    async def _run(self, task: Question, items: list[BatchItem]) -> None:
        if len(items) == 1:
            self.singles += 1
            await self._single(items[0])
            return
        started = asyncio.get_running_loop().time()
        try:
            answers = await self._send_batch(task, items)
        except LLMFatalError as exc:  # the run is stopping: no halves
            for item in items:
                _settle(item, exc)
            return
        except LLMError as exc:  # the batch failed as a whole: halves, down to single items
            log.info("batch of %d %s prompts failed (%s); splitting", len(items), task.value, exc)
            half = len(items) // 2
            await asyncio.gather(self._run(task, items[:half]), self._run(task, items[half:]))
            return
        self._timed_batch(asyncio.get_running_loop().time() - started, len(items))
        self.batches += 1
        self.items_batched += len(items)
        self.largest = max(self.largest, len(items))
        missing = [item for item in items if item.id not in answers]
        for item in items:
            if item.id in answers and not item.future.done():
                item.future.set_result(answers[item.id])
        await asyncio.gather(*(self._single(item) for item in missing))  # left out or invalid: alone

    def item_time(self) -> float:
        """What one more item adds to a batch's time: measured on batches (a reply's fixed cost paid once), one
        prompt's whole answer time until then."""
        return self.answer_s if self.item_s is None else min(self.answer_s, self.item_s)

    def _timed_batch(self, seconds: float, items: int) -> None:
        """Take a batch's time into `item_s`: beyond one answer's time, spread over the other items."""
        extra = min(self.answer_s, max(self.answer_s / 20, (seconds - self.answer_s) / (items - 1)))
        self.item_s = extra if self.item_s is None else self.item_s + (extra - self.item_s) / 4

    async def _single(self, item: BatchItem) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            _settle(item, await self._send_one(item))
        except Exception as exc:  # handed to the caller waiting on it
            _settle(item, exc)
            return
        self.answer_s += (loop.time() - started - self.answer_s) / 4  # recent single answers weigh most

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "items_batched": self.items_batched,
                "items_per_batch_mean": round(self.items_batched / self.batches, 2) if self.batches else 0.0,
                "items_per_batch_max": self.largest, "sent_alone": self.singles,
                "queue_wait_s": round(self.queue_wait_s, 3)}


def combined_stats(stats: list[dict[str, Any]], batching: bool) -> dict[str, Any]:
    """Several batchers' stats() as one (a gateway's and its worker processes'); `batching` says whether any
    batcher ran, else only the counts are reported."""
    total = {key: sum(s.get(key, 0) for s in stats) for key in ("batches", "items_batched", "sent_alone")}
    if any("queue_wait_s" in s for s in stats):
        total["queue_wait_s"] = round(sum(s.get("queue_wait_s", 0.0) for s in stats), 3)
    if total["batches"] or batching:
        batches = total["batches"]
        total["items_per_batch_mean"] = round(total["items_batched"] / batches, 2) if batches else 0.0
        total["items_per_batch_max"] = max(s.get("items_per_batch_max", 0) for s in stats)
    return total


def _settle(item: BatchItem, outcome: BaseModel | BaseException) -> None:
    if item.future.done():
        return
    if isinstance(outcome, BaseException):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)
