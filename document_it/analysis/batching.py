"""Dynamic batching: prompts of the same task from different pages travel in one request.

A batch leaves when it is full (by --batch-size items or --batch-max-tokens prompt tokens) or when a
short wait expires; the wait is zero when the queue is deep, a few tens of ms when it is shallow, and
is extended while every LLM slot is busy (sending then would only queue behind the others). Items the reply leaves out are asked again on their own; a batch that fails as a whole
is split in halves, down to single items that take the ordinary path.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from pydantic import BaseModel

from ..errors import LLMAuthError, LLMError
from .prompts import Context, Task

__all__ = ["Batcher", "BatchItem", "AUTO_MAX_ITEMS", "SHALLOW_WAIT_S"]

log = logging.getLogger(__name__)

AUTO_MAX_ITEMS = 8
SHALLOW_WAIT_S = 0.03


@dataclass
class BatchItem:
    """One prompt waiting for a batch."""

    id: str
    task: Task
    context: Context
    messages: list[tuple[str, str]]  # the prompt as it would go alone
    tokens: int
    future: asyncio.Future[BaseModel] = field(repr=False)


SendBatch = Callable[[Task, list[BatchItem]], Awaitable[dict[str, BaseModel]]]
SendOne = Callable[[BatchItem], Awaitable[BaseModel]]


class Batcher:
    """Queues prompts per task and sends them together; every caller gets its own answer back."""

    def __init__(self, send_batch: SendBatch, send_one: SendOne, max_items: int, max_tokens: int,
                 wait_s: float = SHALLOW_WAIT_S, busy: Callable[[], bool] = lambda: False) -> None:
        self._send_batch, self._send_one = send_batch, send_one
        self._busy = busy  # True while every LLM slot is taken: a batch sent now would only queue
        self.max_items = max_items
        self.max_tokens = max_tokens
        self.wait_s = wait_s
        self._queues: dict[Task, list[BatchItem]] = {}
        self._timers: dict[Task, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = 0
        self.batches = 0
        self.items_batched = 0
        self.largest = 0

    async def submit(self, task: Task, context: Context, messages: list[tuple[str, str]], tokens: int) -> BaseModel:
        """Queue one prompt and wait for its answer."""
        loop = asyncio.get_running_loop()
        self._ids += 1
        item = BatchItem(f"i{self._ids}", task, context, messages, tokens, loop.create_future())
        queue = self._queues.setdefault(task, [])
        queue.append(item)
        if self._full(queue):
            self._flush(task, only_full=True)  # deep queue: full batches leave at once
        if self._queues.get(task) and task not in self._timers:
            self._timers[task] = loop.call_later(self.wait_s, self._expire, task)
        return await item.future

    def _full(self, queue: list[BatchItem]) -> bool:
        return len(queue) >= self.max_items or sum(i.tokens for i in queue) >= self.max_tokens

    def _expire(self, task: Task) -> None:
        """The wait is over: send, unless no slot is free, in which case the batch keeps filling."""
        self._timers.pop(task, None)
        if self._busy() and self._queues.get(task):
            self._timers[task] = asyncio.get_running_loop().call_later(self.wait_s, self._expire, task)
        else:
            self._flush(task, only_full=False)

    def _flush(self, task: Task, only_full: bool) -> None:
        """Send the queued prompts as budget-sized batches; with `only_full`, a part-filled rest stays."""
        queue = self._queues.get(task, [])
        while queue and (not only_full or self._full(queue)):
            batch, used = [], 0
            while queue and len(batch) < self.max_items and (not batch or used + queue[0].tokens <= self.max_tokens):
                used += queue[0].tokens
                batch.append(queue.pop(0))
            job = asyncio.get_running_loop().create_task(self._run(task, batch))
            self._tasks.add(job)
            job.add_done_callback(self._tasks.discard)
        if not queue:
            self._queues.pop(task, None)
            timer = self._timers.pop(task, None)
            if timer is not None:
                timer.cancel()

    async def _run(self, task: Task, items: list[BatchItem]) -> None:
        if len(items) == 1:
            await self._single(items[0])
            return
        try:
            answers = await self._send_batch(task, items)
        except LLMAuthError as exc:
            for item in items:
                _settle(item, exc)
            return
        except LLMError as exc:  # the batch failed as a whole: halves, down to single items
            log.info("batch of %d %s prompts failed (%s); splitting", len(items), task.value, exc)
            half = len(items) // 2
            await asyncio.gather(self._run(task, items[:half]), self._run(task, items[half:]))
            return
        self.batches += 1
        self.items_batched += len(items)
        self.largest = max(self.largest, len(items))
        missing = [item for item in items if item.id not in answers]
        for item in items:
            if item.id in answers and not item.future.done():
                item.future.set_result(answers[item.id])
        await asyncio.gather(*(self._single(item) for item in missing))  # left out or invalid: alone

    async def _single(self, item: BatchItem) -> None:
        try:
            _settle(item, await self._send_one(item))
        except Exception as exc:  # handed to the caller waiting on it
            _settle(item, exc)

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "items_batched": self.items_batched,
                "items_per_batch_mean": round(self.items_batched / self.batches, 2) if self.batches else 0.0,
                "items_per_batch_max": self.largest}


def _settle(item: BatchItem, outcome: BaseModel | BaseException) -> None:
    if item.future.done():
        return
    if isinstance(outcome, BaseException):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)
