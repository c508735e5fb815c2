"""The one door to an LLM: limits, retries, circuit breaker, budgets and accounting for every prompt."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError

from ..config import Answers, Fallback, Mode, Settings
from ..core.breaker import CircuitBreaker, CircuitOpen
from ..core.cache import Memo, memo_key
from ..core.first_contact import FirstContact
from ..core.ratelimit import RateLimiter, announced_rpm
from ..core.retry import RetryPolicy
from ..core.timeouts import AttemptLimit
from ..core.tracker import Prices, RequestRecord, RequestTracker
from ..errors import LLMError, LLMFatalError, LLMTransientError, LLMUnusableError
from ..models import ParsedDoc
from ..tokens import estimate_tokens
from . import figures
from .batching import AUTO_MAX_ITEMS, Batcher, BatchItem
from .capped import gist
from .context import MIN_SCALE, LLMContextError
from .prompts import PROMPT_VERSION, Context, PageQuestion, Question, Task, TopicInput, batch_schema, schema_for
from .providers import ChatProvider, CpuRunner, ExtractiveProvider, Messages, make_provider

__all__ = ["Gateway", "Completion", "RetryPolicy", "EXPECTED_OUTPUT_TOKENS", "build_gateway", "LLMUnavailable"]

log = logging.getLogger(__name__)

EXPECTED_OUTPUT_TOKENS = 400  # what a reply is assumed to cost before its usage is known
# --answers auto: brief answers once the quickest reply took longer than this a token it wrote (under about 33
# tokens a second: a small model on CPU, where a full answer of five analyses takes half a minute or more)
BRIEF_TOKEN_S = 0.03
SPEED_MIN_TOKENS = 64  # a reply shorter than this is mostly its fixed cost: it says little about speed
# a page that fits only if the server counts fewer tokens than estimated waits at most this many replies for
# one whose usage tells (a prompt mostly schema does not)
USAGE_REPLIES = 8


class Gateway:
    """Asks the provider for one task's answer, keeping the limits and recording every request."""

    def __init__(self, provider: ChatProvider | ExtractiveProvider, settings: Settings,
                 max_concurrency: int | None = None, fallback: ExtractiveProvider | None = None,
                 memo: Memo | None = None) -> None:
        cap = max_concurrency or settings.max_concurrency
        self._settings, self._cap = settings, cap
        self._siblings: dict[str, Gateway] = {}
        self.provider = provider
        self.limiter = RateLimiter(cap, settings.rpm, settings.tpm, probe=True, timeout_s=settings.request_timeout)
        self.breaker = CircuitBreaker()
        self.first_contact = FirstContact()
        self.fatal: LLMFatalError | None = None  # once set, every request raises it: the run is stopping
        self.retry = RetryPolicy(settings.retries)
        self.max_wait = settings.max_wait
        self.request_timeout = settings.request_timeout
        self.attempt_limit = AttemptLimit(settings.request_timeout)  # stretched for a server slower than that
        self.tracker = RequestTracker(Prices.for_model(settings.model, settings.price_in, settings.price_out))
        self.fallback = fallback if settings.fallback is Fallback.EXTRACTIVE else None
        self.max_cost, self.max_tokens = settings.max_cost, settings.max_tokens
        self.memo = memo or Memo(None)
        self.tokens_saved = 0
        self.absorbed_batching: list[dict[str, Any]] = []  # worker processes' batcher figures (process mode)
        self.absorbed_context: list[dict[str, Any]] = []  # and what their context windows learned
        self.absorbed_windows: list[dict[str, Any]] = []  # and where their concurrency windows ended
        self.batcher: Batcher | None = None
        # sync mode is the one-request-at-a-time baseline; every other mode batches its backlog, even at cap 1
        if isinstance(provider, ChatProvider) and settings.batch_size != 1 and settings.mode is not Mode.SYNC:
            self.batcher = Batcher(self._send_batch, self._send_item, settings.batch_size or AUTO_MAX_ITEMS,
                                   settings.batch_max_tokens or 1 << 30, window=self.limiter.window,
                                   fits=provider.batch_fits,
                                   request_pace=self.limiter.request_pace)
        self._key_base = (provider.name, settings.model, PROMPT_VERSION, settings.structured_output.value)
        self.prompts = 0
        self.fallbacks = 0
        self.token_s: float | None = None  # the quickest reply's seconds per token it wrote (sent to received)
        self.fell_back: dict[str, list[str]] = {}  # page URL (or topic) -> tasks the offline analyser answered
        self.max_in_flight = 0
        self._in_flight = 0
        self._asking = 0  # prompts on their way to the server (batched, queued or sent): a reply will come
        self._replies = 0  # attempts ended (while the window may still learn from their usage)
        self._change = asyncio.Condition()

    async def __aenter__(self) -> "Gateway":
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()  # before the client it sends on
        await self.provider.aclose()
        for twin in self._siblings.values():
            await twin.provider.aclose()

    def sibling(self, model: str | None) -> "Gateway":
        """A gateway for another model on the same server that shares this one's concurrency window, rate
        limits, circuit breaker, cache and request accounting (e.g. --sub-model for per-chunk work)."""
        if not model or model == self._settings.model or not isinstance(self.provider, ChatProvider):
            return self
        if model not in self._siblings:
            settings = self._settings.with_(model=model, batch_size=1)
            twin = Gateway(make_provider(settings), settings, self._cap, memo=self.memo)
            twin.limiter, twin.breaker, twin.tracker = self.limiter, self.breaker, self.tracker
            twin.first_contact = self.first_contact
            self._siblings[model] = twin
        return self._siblings[model]

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def all_prompts(self) -> int:
        return self.prompts + sum(twin.prompts for twin in self._siblings.values())

    @property
    def brief_answers(self) -> bool:
        """Whether a page's answers are asked brief: --answers, or on auto once a reply showed a slow writer."""
        answers = self._settings.answers
        if answers is Answers.AUTO:
            return self.token_s is not None and self.token_s > BRIEF_TOKEN_S
        return answers is Answers.BRIEF

    # -- the context window -------------------------------------------------------------------
    def page_fits(self, page: ParsedDoc, questions: Sequence[Question], scale: float | None = None) -> bool:
        """True when each of `questions` can read the whole of `page` in one prompt of the model's window (at
        `scale` tokens per estimated token when given)."""
        if not isinstance(self.provider, ChatProvider):
            return True
        return all(self.provider.fits_whole(question, page, scale) for question in questions)

    def may_fit_later(self) -> float | None:
        """The lowest scale the window could still learn from replies' usage, while it could (else None): a
        page that fits only at that scale waits (`usage_counted`) before it is cut in pieces."""
        if not isinstance(self.provider, ChatProvider) or not self.provider.window.may_grow():
            return None
        return MIN_SCALE

    async def usage_counted(self) -> None:
        """Wait until a reply's usage has said how the server counts prompts, or USAGE_REPLIES replies have
        not, or no prompt is under way (nothing would end the wait)."""
        assert isinstance(self.provider, ChatProvider)
        window = self.provider.window
        async with self._change:
            await self._change.wait_for(lambda: not window.may_grow() or self._replies >= USAGE_REPLIES
                                        or self._asking == 0)

    async def _changed(self) -> None:
        async with self._change:
            self._change.notify_all()

    def piece_room(self) -> int:
        """The estimated tokens of page text one chunk-note prompt may read (the piece a long page is cut in)."""
        if not isinstance(self.provider, ChatProvider):
            return 1 << 20
        return self.provider.material_room(Task.CHUNK_NOTES)

    def note_room(self, template: str) -> int:
        """The tokens a piece of text may take in a free-form prompt made from `template`."""
        if not isinstance(self.provider, ChatProvider):
            return 1 << 20
        return max(64, self.provider.window.prompt_room() - estimate_tokens(template) - 48)

    def window_state(self) -> tuple[int, float]:
        """What the window believes now (tokens, scale): work sized for it is redone when it changes."""
        if not isinstance(self.provider, ChatProvider):
            return (0, 0.0)
        return (self.provider.window.tokens, self.provider.window.scale)

    # -- budgets ------------------------------------------------------------------------------
    def budget_reason(self) -> str | None:
        """Why no new page may start (a budget is spent), or None."""
        if self.max_tokens is not None and self.tracker.tokens >= self.max_tokens:
            return f"token budget reached ({self.tracker.tokens:,} of {self.max_tokens:,} tokens)"
        cost = self.tracker.cost
        if self.max_cost is not None and cost is not None and cost >= self.max_cost:
            return f"cost budget reached (${cost:.4f} of ${self.max_cost:.4f})"
        return None

    # -- asking -------------------------------------------------------------------------------
    async def ask(self, task: Question, context: Context) -> BaseModel:
        """The validated answer to `task` (one task, or a page's combined question) for `context`; raises
        LLMError when there is none."""
        self.prompts += 1
        if isinstance(self.provider, ExtractiveProvider):
            return (await self.provider.complete(task, context)).value
        messages = self.provider.messages(task, context)
        key = memo_key(*self._key_base, task.value, messages, _schema_json(task))
        cached = self._from_memo(task, key)
        if cached is not None:
            return cached
        try:
            value = await self._fitted(task, context, messages)
        except LLMFatalError:
            raise
        except LLMError as exc:
            if self.fallback is None or not isinstance(exc, (LLMTransientError, LLMUnavailable)):
                raise
            self.fallbacks += 1
            asked = task.tasks if isinstance(task, PageQuestion) else (task,)
            self.fell_back.setdefault(_key(context), []).extend(t.value for t in asked)
            log.warning("%s answered by the offline analyser: %s", task.value, exc)
            return (await self.fallback.complete(task, context)).value
        self.memo.set("llm", key, value.model_dump())  # only valid answers are kept, one per prompt
        return value

    async def _fitted(self, task: Question, context: Context, messages: Messages) -> BaseModel:
        """The answer to `messages` (batched when the batcher is on); a prompt the server refuses as longer
        than its context is built again within what the window learned, unless that would cut a page's text:
        such a page's LLMContextError goes up to the agent, which reads it chunk by chunk instead."""
        assert isinstance(self.provider, ChatProvider)
        self._asking += 1
        try:
            return await self._fitted_asked(task, context, messages)
        finally:
            self._asking -= 1
            await self._changed()

    async def _fitted_asked(self, task: Question, context: Context, messages: Messages) -> BaseModel:
        assert isinstance(self.provider, ChatProvider)
        for attempt in range(3):
            try:
                if self.batcher is not None and attempt == 0:
                    return await self.batcher.submit(task, context, messages, _tokens(messages))
                return await self._ask_one(*self._as_sent(task, context, messages))
            except LLMContextError as exc:
                if attempt == 2 or not exc.shrunk or not self.provider.fits_whole(task, context):
                    raise
                rebuilt = self.provider.messages(task, context)
                if rebuilt == messages:  # nothing left to cut: the refusal stands
                    raise
                messages = rebuilt
        raise AssertionError("unreachable")

    async def complete(self, prompt: str, system: str | None = None) -> Completion:
        """A plain-text answer to a free-form prompt, through the same cache, limits, retries and accounting."""
        self.prompts += 1
        if isinstance(self.provider, ExtractiveProvider):
            raise LLMError("free-form prompts need an LLM: set OPENAI_API_KEY or a base URL, or use "
                           "simulate (the offline extractive analyser only answers document-it's own tasks)")
        messages: Messages = ([("system", system)] if system else []) + [("user", prompt)]
        key = memo_key(*self._key_base, Task.TEXT.value, messages)
        stored = self.memo.get("llm", key)
        if isinstance(stored, str):
            return Completion(stored, 0, 0, 0, cached=True)
        text, record = await self._tracked(Task.TEXT, messages)
        self.memo.set("llm", key, text)
        return Completion(text, record.tokens_in, record.tokens_out, record.attempts)

    async def _ask_one(self, task: Question, messages: Messages, schema: type[BaseModel] | None = None) -> Any:
        """One tracked request (with its retries) for `messages`."""
        return (await self._tracked(task, messages, schema))[0]

    async def _tracked(self, task: Question, messages: Messages,
                       schema: type[BaseModel] | None = None) -> tuple[Any, RequestRecord]:
        """The answer and the tracker's record of the request (attempts, tokens)."""
        assert isinstance(self.provider, ChatProvider)
        record = self.tracker.new(task.value)
        try:
            value = await self._ask_llm(self.provider, task, messages, record, schema)
        except LLMError as exc:
            self.tracker.finish(record, str(exc))
            raise
        self.tracker.finish(record)
        return value, record

    async def _send_batch(self, task: Question, items: list[BatchItem]) -> dict[str, BaseModel]:
        """One request for several prompts of `task`; the answers by item id."""
        assert isinstance(self.provider, ChatProvider)
        task = self._question_now(task)
        messages = self.provider.batch_messages(task, [(item.id, item.context) for item in items])
        reply = await self._ask_one(task, messages, batch_schema(task))
        self.tokens_saved += sum(item.tokens for item in items) - _tokens(messages)
        wanted = {item.id for item in items}
        answers: dict[str, BaseModel] = {}
        for entry in reply.results:
            if entry.id in wanted and entry.id not in answers:
                answers[entry.id] = entry.result
        return answers

    async def _send_item(self, item: BatchItem) -> BaseModel:
        return await self._ask_one(*self._as_sent(item.task, item.context, item.messages))

    def _question_now(self, task: Question) -> Question:
        """`task` as it leaves now: a page's question turns brief when the server has shown itself a slow writer
        since the prompt was made (--answers auto; prompts wait for a one-slot server)."""
        if not isinstance(task, PageQuestion) or task.brief or not self.brief_answers:
            return task
        return replace(task, brief=True)

    def _as_sent(self, task: Question, context: Context, messages: Messages) -> tuple[Question, Messages]:
        """The question and prompt as they leave now (_question_now; the prompt made again if it changed)."""
        now = self._question_now(task)
        if now is task:
            return task, messages
        assert isinstance(self.provider, ChatProvider)
        return now, self.provider.messages(now, context)

    def page_key(self, text: str, *extra: str) -> str | None:
        """The memo key of a whole page's analysis: pages with the same normalised text share one."""
        if isinstance(self.provider, ExtractiveProvider):
            return None
        return memo_key(*self._key_base, "page", hashlib.sha256(" ".join(text.split()).encode()).hexdigest(),
                        *extra)

    def _from_memo(self, task: Question, key: str) -> BaseModel | None:
        stored = self.memo.get("llm", key)
        if stored is None:
            return None
        try:
            return schema_for(task).model_validate(stored)
        except ValidationError:
            return None

    async def _ask_llm(self, provider: ChatProvider, task: Question, messages: Messages,
                       record: RequestRecord, schema: type[BaseModel] | None = None) -> Any:
        estimate = _tokens(messages) + EXPECTED_OUTPUT_TOKENS
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
                attempt = await asyncio.wait_for(provider.send(task, messages, schema), limit)
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
        await self.limiter.on_success(estimate, attempt.tokens_in + attempt.tokens_out)
        return attempt

    # -- figures (analysis/figures.py) --------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The `llm` block of run.json."""
        return figures.summary(self)

    def export(self) -> dict[str, Any]:
        """This gateway's raw figures, picklable, for the parent process to absorb()."""
        return figures.export(self)

    def absorb(self, exported: dict[str, Any]) -> None:
        """Fold a worker process's figures into this gateway's (process mode)."""
        figures.absorb(self, exported)


@dataclass(frozen=True)
class Completion:
    """A plain-text answer and what it cost (nothing when it came from the cache)."""

    text: str
    tokens_in: int
    tokens_out: int
    attempts: int
    cached: bool = False


def build_gateway(settings: Settings, run_cpu: CpuRunner | None = None, cap: int | None = None,
                  memo: Memo | None = None) -> Gateway:
    """The gateway the settings ask for, with the offline fallback when --fallback extractive."""
    fallback = ExtractiveProvider(run_cpu) if settings.fallback is Fallback.EXTRACTIVE else None
    return Gateway(make_provider(settings, run_cpu), settings, cap, fallback=fallback, memo=memo)


@functools.cache
def _schema_json(task: Question) -> dict[str, Any]:
    """The answer schema as JSON, part of every memo key (built once per task, not per prompt)."""
    return schema_for(task).model_json_schema()


def _tokens(messages: Messages) -> int:
    return estimate_tokens("".join(text for _, text in messages))


class LLMUnavailable(LLMError):
    """The circuit stayed open past --max-wait: the server is down, not the request wrong."""


def _key(context: Context) -> str:
    return context.topic if isinstance(context, TopicInput) else context.url  # a chunk's page, or the page
