"""The one door to an LLM: limits, retries, circuit breaker, budgets and accounting for every prompt."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ValidationError

from ..config import Answers, Fallback, Mode, Settings
from ..core.breaker import CircuitBreaker
from ..core.cache import Memo, memo_key
from ..core.first_contact import FirstContact
from ..core.ratelimit import RateLimiter
from ..core.retry import RetryPolicy
from ..core.timeouts import AttemptLimit
from ..core.tracker import Prices, RequestRecord, RequestTracker
from ..errors import BatchDeferred, LLMError, LLMFatalError, LLMTransientError
from ..models import ParsedDoc
from ..tokens import estimate_tokens
from . import figures
from .attempts import EXPECTED_OUTPUT_TOKENS, USAGE_REPLIES, Attempts, LLMUnavailable, message_tokens
from .batch_lines import BatchLane, Deferred
from .batching import AUTO_MAX_ITEMS, Batcher, BatchItem, ReplyShape
from .context import MIN_SCALE, LLMContextError
from .prompts import PROMPT_VERSION, Context, PageQuestion, Question, Task, TopicInput, batch_schema, schema_for
from .providers import ChatProvider, CpuRunner, ExtractiveProvider, Messages, make_provider

__all__ = ["Gateway", "Completion", "RetryPolicy", "EXPECTED_OUTPUT_TOKENS", "build_gateway", "LLMUnavailable"]

log = logging.getLogger(__name__)

# --answers auto: brief answers once the quickest reply took longer than this a token it wrote (under about 33
# tokens a second: a small model on CPU, where a full answer of five analyses takes half a minute or more)
BRIEF_TOKEN_S = 0.03


class Gateway(Attempts):
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
        self.lane: BatchLane | None = None  # --batch-api: prompts left for the provider's Batch API (open_lane)
        self.reply_shape = ReplyShape()  # what a reply's time is made of (answers sent alone): when batching pays
        # sync mode is the one-request-at-a-time baseline; every other mode batches its backlog, even at cap 1
        if isinstance(provider, ChatProvider) and settings.batch_size != 1 and settings.mode is not Mode.SYNC:
            self.batcher = Batcher(self._send_batch, self._send_item, settings.batch_size or AUTO_MAX_ITEMS,
                                   settings.batch_max_tokens or 1 << 30, window=self.limiter.window,
                                   fits=provider.batch_fits,
                                   request_pace=self.limiter.request_pace, shape=self.reply_shape)
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
            twin.lane = self.lane  # its prompts go in the same batches, in lines of its own model
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
        tokens, cost = self.spent
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"token budget reached ({tokens:,} of {self.max_tokens:,} tokens)"
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
        if self.lane is not None and self.lane.route(key):
            self._defer(Deferred(key, task, context, messages, message_tokens(messages), _key(context),
                                 self.provider))  # type: ignore[arg-type]
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
        self._keep(key, value.model_dump())  # only valid answers are kept, one per prompt
        return value

    async def _fitted(self, task: Question, context: Context, messages: Messages) -> BaseModel:
        """The answer to `messages` (batched when the batcher is on); a prompt the server refuses as longer
        than its context is built again within what the window learned, unless that would cut a page's text:
        such a page's LLMContextError goes up to the agent, which reads it chunk by chunk instead."""
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
                    return await self.batcher.submit(task, context, messages, message_tokens(messages))
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
        stored = self._stored(key)
        if isinstance(stored, str):
            return Completion(stored, 0, 0, 0, cached=True)
        if self.lane is not None and self.lane.route(key):
            self._defer(Deferred(key, Task.TEXT, None, messages, message_tokens(messages), "",
                                 self.provider))  # type: ignore[arg-type]
        text, record = await self._tracked(Task.TEXT, messages)
        self._keep(key, text)
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
        self.tokens_saved += sum(item.tokens for item in items) - message_tokens(messages)
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

    def open_lane(self, kept: Callable[[str], Any]) -> BatchLane:
        """Leave every prompt the cache does not answer for the provider's Batch API from now on (this gateway's
        and its siblings'); `kept`: the ledger's answer for a memo key."""
        assert isinstance(self.provider, ChatProvider)
        self.lane = BatchLane.for_run(self.provider, self.memo, self._settings, kept)
        for twin in self._siblings.values():
            twin.lane = self.lane
        return self.lane

    @property
    def spent(self) -> tuple[int, float | None]:
        """Tokens and estimated cost so far: the live requests', and the batch answers read (at the batch price);
        the budgets count both."""
        tokens, cost = self.tracker.tokens, self.tracker.cost
        if self.lane is None:
            return tokens, cost
        lane = self.lane
        batch = self.tracker.prices.cost(lane.tokens_in, lane.tokens_out)
        if cost is not None and batch is not None:
            cost += batch * (1 - self._settings.batch_discount)
        return tokens + lane.tokens_in + lane.tokens_out, cost

    def close_lane(self) -> None:
        """Ask live from now on (a run past its last batch round); the answers batches brought are still read."""
        if self.lane is not None:
            self.lane.close()

    def _defer(self, item: Deferred) -> None:
        """Leave `item` for a batch (checked against the window first, as a live request would be): its page
        waits. Counted as a prompt when its answer is read, not now."""
        assert isinstance(self.provider, ChatProvider) and self.lane is not None
        self.provider.request(item.task, item.messages)  # LLMContextError: the page is read in pieces instead
        self.lane.defer(item)
        self.prompts -= 1
        raise BatchDeferred(f"{item.task.value} prompt for {item.page or 'a note'} left for a batch")

    def _stored(self, key: str) -> Any | None:
        """A prompt's answer as the memo keeps it: one a batch brought (or the lane kept), else the memo's."""
        stored = self.lane.stored(key) if self.lane is not None else None
        return stored if stored is not None else self.memo.get("llm", key)

    def _keep(self, key: str, value: Any) -> None:
        """Keep an answer asked live: in the memo, and in the lane for a page's later batch rounds (also without a
        cache)."""
        self.memo.set("llm", key, value)
        if self.lane is not None:
            self.lane.keep(key, value)

    def _from_memo(self, task: Question, key: str) -> BaseModel | None:
        stored = self._stored(key)
        if stored is None:
            return None
        try:
            return schema_for(task).model_validate(stored)
        except ValidationError:
            return None

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


def _key(context: Context) -> str:
    return context.topic if isinstance(context, TopicInput) else context.url  # a chunk's page, or the page
