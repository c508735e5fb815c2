"""One request's attempts: the limits it waits for (slot, RPM/TPM buckets, circuit breaker), the retries with
backoff, the repairs of a poor answer, what a reply teaches the window and the start probe; the Gateway asks
through it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import BaseModel

from ..core.breaker import CircuitOpen
from ..core.ratelimit import announced_rpm
from ..core.tracker import RequestRecord
from ..errors import LLMError, LLMFatalError, LLMTransientError, LLMUnusableError
from ..tokens import estimate_tokens
from .capped import gist
from .context import LLMContextError
from .prompts import Question
from .providers import ChatProvider, Messages

__all__ = ["Attempts", "LLMUnavailable", "EXPECTED_OUTPUT_TOKENS", "SPEED_MIN_TOKENS", "USAGE_REPLIES",
           "message_tokens"]

log = logging.getLogger("document_it.analysis.gateway")  # one logger for the door to the LLM

EXPECTED_OUTPUT_TOKENS = 400  # what a reply is assumed to cost before its usage is known
SPEED_MIN_TOKENS = 64  # a reply shorter than this is mostly its fixed cost: it says little about speed
# a page that fits only if the server counts fewer tokens than estimated waits at most this many replies for
# one whose usage tells (a prompt mostly schema does not)
USAGE_REPLIES = 8


class LLMUnavailable(LLMError):
    """The circuit stayed open past --max-wait: the server is down, not the request wrong."""


def message_tokens(messages: Messages) -> int:
    """A prompt's estimated tokens (its messages' text)."""
    return estimate_tokens("".join(text for _, text in messages))


class Attempts:
    """The request loop of a Gateway (which holds the limiter, breaker, retry policy, tracker and window it
    uses)."""

    async def _ask_llm(self, provider: ChatProvider, task: Question, messages: Messages,
                       record: RequestRecord, schema: type[BaseModel] | None = None) -> Any:
        estimate = message_tokens(messages) + EXPECTED_OUTPUT_TOKENS
        deadline = time.monotonic() + self.max_wait
        failures, repaired, resent = 0, False, 0
        while True:
            self._raise_if_stopping()
            probe = await self._ready(deadline)
            self._raise_if_stopping()
            self.tracker.attempt(record)
            try:
                attempt = await self._send(provider, task, messages, estimate, schema, record)
            except LLMFatalError as exc:  # a refused key, our own fault, a server that serves nothing usable
                if self.fatal is None:
                    self.fatal = exc
                raise
            except LLMTransientError as exc:
                if exc.rate_limited:
                    # the server is up and told us when to come back: not a failure, bounded by --max-wait
                    self.breaker.on_success()
                    if time.monotonic() + (exc.retry_after or 0) > deadline:
                        raise LLMTransientError(f"{exc} (still rate-limited after {self.max_wait:g}s)") from None
                else:
                    self._first_failures(record, exc.kind, str(exc))
                    if not exc.timed_out or self.attempt_limit.exhausted:
                        # a timeout is a slow server (the window and the stretch deal with it), not a dead
                        # one, until even the longest limit allowed has run out
                        self.breaker.on_failure()
                    failures += 1
                    if failures > self.retry.retries:
                        raise LLMTransientError(f"{exc} (gave up after {record.attempts} attempts)") from None
                # a 429's wait is the shared pause the limiter already set; others back off with jitter
                delay = 0.0 if exc.rate_limited else self.retry.delay(failures, exc.retry_after)
                self._retrying(record, str(exc), delay, rate_limited=exc.rate_limited)
                if delay:
                    await asyncio.sleep(delay)
                continue
            except LLMContextError as exc:
                self.breaker.on_success()
                if not exc.resend or resent >= 2:
                    raise
                resent += 1
                self._retrying(record, str(exc))  # the same prompt with a smaller answer limit
                continue
            except LLMError as exc:
                self._first_failures(record, exc.kind, str(exc))
                self.breaker.on_success()  # the server answered: it is up, the request was wrong
                raise
            except BaseException:
                if probe:
                    self.breaker.on_failure()  # a cancelled probe must not leave the breaker half-open
                raise
            self.breaker.on_success()
            self.tracker.usage(record, attempt.tokens_in, attempt.tokens_out)
            if attempt.value is not None:
                self.first_contact.success()
                return attempt.value
            if attempt.malformed:
                self._first_failures(record, "not JSON", attempt.problem)
                if failures < self.retry.retries:
                    failures += 1
                    self._retrying(record, attempt.problem)
                    continue
            else:
                self.first_contact.success()  # JSON of the wrong shape: the server works, the answer was poor
            if schema is not None:  # a batch: halving it finds the bad item faster than a repair
                raise LLMError(f"invalid batched {task.value} reply: {attempt.problem}")
            if repaired:
                raise LLMError(f"invalid {task.value} reply after one repair attempt: {attempt.problem}")
            repaired = True
            self._retrying(record, attempt.problem)
            messages = provider.repair(messages, attempt.problem)

    def _raise_if_stopping(self) -> None:
        if self.fatal is not None:  # a fresh copy: one instance raised again and again would grow its traceback
            raise type(self.fatal)(str(self.fatal)) from None

    def _first_failures(self, record: RequestRecord, kind: str | None, detail: str) -> None:
        """Until the first usable reply, a failure alike to all before it may show the server serves nothing
        usable: then the run stops now rather than each page retrying until --max-wait."""
        if kind is None:
            return
        verdict = self.first_contact.failure(record.id, kind, gist(detail, 240))
        if verdict is not None:
            host = getattr(self.provider, "host", self.provider.name)
            self.fatal = LLMUnusableError(f"the LLM at {host} is not usable: {verdict}; check --llm-base-url "
                                          "and the server's log")
            raise self.fatal

    def _retrying(self, record: RequestRecord, reason: str, delay: float = 0.0, rate_limited: bool = False) -> None:
        self.tracker.retrying(record, reason, rate_limited=rate_limited)
        log.info("retrying %s request %d (attempt %d failed%s): %s", record.task, record.id, record.attempts,
                 f", next in {delay:.1f}s" if delay else "", reason)

    async def _ready(self, deadline: float) -> bool:
        try:
            return await self.breaker.ready(deadline)
        except CircuitOpen:
            raise LLMUnavailable(f"LLM unavailable: gave up after waiting {self.max_wait:g}s for "
                               f"{self.provider.name} to recover (circuit breaker open)") from None

    async def _send(self, provider: ChatProvider, task: Question, messages: Messages, estimate: int,
                    schema: type[BaseModel] | None, record: RequestRecord) -> Any:
        queued = time.monotonic()
        method = provider.choice.current  # if the server refuses it, send() asks again: not a fair latency
        async with self.limiter.slot(estimate) as sent_at:
            record.waited += sent_at - queued  # for a slot, the pause and the RPM/TPM buckets
            alone = self.limiter.window.in_flight <= 1  # nothing ahead of it at the server
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                # the whole attempt is timed here, so a server that drips bytes slowly still ends
                limit = self.attempt_limit.seconds
                if provider.self_hosted:  # a long answer from a small local model gets the time it needs
                    window = self.limiter.window
                    # a server that serves one request at a time answers ours in turn: the clock of each runs
                    # while those ahead of it are served
                    turn = window.in_flight if window.probing or window.watch.settled else 1
                    limit = self.attempt_limit.for_work(*provider.work(task, messages, schema), turn)
                # a start-probe request is streamed: its first token may settle the probe (core/queueing.py)
                watch = self.limiter.window.probe_watch() if provider.streams else None
                try:
                    attempt = await asyncio.wait_for(provider.send(task, messages, schema, watch), limit)
                finally:
                    if watch is not None:
                        watch.end()
            except asyncio.TimeoutError:
                self.limiter.on_timeout(sent_at)
                self.attempt_limit.on_timeout(limit, alone)
                raise LLMTransientError(f"LLM request to {provider.host} took longer than {limit:g}s",
                                        timed_out=True) from None
            except LLMTransientError as exc:
                if exc.rate_limited:
                    self.limiter.on_throttle(sent_at, exc.retry_after)
                    self.limiter.learn_limit(announced_rpm(exc.headers))
                elif exc.timed_out:
                    self.limiter.on_timeout(sent_at)
                raise
            finally:
                self._in_flight -= 1
                record.on_wire += time.monotonic() - sent_at
                self._replies += 1
                if self._replies <= USAGE_REPLIES:
                    await self._changed()
        self.limiter.learn_limit(announced_rpm(attempt.headers))
        if attempt.tokens_out >= SPEED_MIN_TOKENS:
            took = (time.monotonic() - sent_at) / attempt.tokens_out
            self.token_s = took if self.token_s is None else min(self.token_s, took)
        # a reply sent again in another structured-output method (the server refused the first) has the refusal's
        # round trip in its time: the watch skips it, but the start probe needs the first pair, which is what
        # meets the refusals, and a refusal's quick round trip only errs towards "queueing"
        if provider.choice.current is method or self.limiter.window.probing:
            await self.limiter.window.on_latency(time.monotonic() - sent_at, attempt.tokens_in, attempt.tokens_out,
                                                 sent_at)
            if schema is None and attempt.value is not None:  # an answer sent alone: what batching would save
                self.reply_shape.observe(time.monotonic() - sent_at, attempt.tokens_out)
        await self.limiter.on_success(estimate, attempt.tokens_in + attempt.tokens_out)
        return attempt
