"""Prompts left for the provider's Batch API: the gateway defers a prompt where the live path would send it,
the lane writes the deferred prompts as batch lines (the same bodies, schemas and structured-output method as
live requests; prompts of one question from several pages grouped as the live batcher groups them), and reads
each line's answer back as a live reply is read (tolerantly, against the schema, item by item), into the memo."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

from ..config import BatchApi, Mode, Settings, StructuredMethod
from ..core.batch_ledger import LineRecord, Prompt, PromptState
from ..core.cache import Memo
from ..errors import LLMError
from .batching import AUTO_MAX_ITEMS
from .context import LLMContextError
from .negotiate import refuses_method
from .prompts import Context, PageQuestion, Question, Task, batch_schema, schema_for
from .providers import ChatProvider, Messages

__all__ = ["BatchLane", "Deferred", "LineOutcome", "question_data"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deferred:
    """One prompt waiting to be written as (part of) a batch line."""

    key: str  # its memo key: the answer is stored under it
    task: Question
    context: Context | None  # None for a free-form prompt (Task.TEXT)
    messages: Messages
    tokens: int
    page: str  # the page URL (or topic) it is asked for
    provider: ChatProvider  # who would have answered it live (--sub-model's for a long page's notes)


@dataclass
class LineOutcome:
    """What one line's output brought: answers by memo key (as the memo stores them), failures with why."""

    answered: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    ok: bool = False  # the line came back with HTTP 200


def question_data(question: Question) -> dict[str, Any]:
    """A question as JSON stores it (the ledger keeps it with its line)."""
    if isinstance(question, PageQuestion):
        return {"tasks": [task.value for task in question.tasks], "brief": question.brief}
    return {"task": question.value}


def _question(data: dict[str, Any]) -> Question:
    if "tasks" in data:
        return PageQuestion(tuple(Task(name) for name in data["tasks"]), bool(data.get("brief")))
    return Task(data["task"])


class BatchLane:
    """The gateway's way to the Batch API for one run: which prompts to defer, the deferred ones as lines, and
    their answers read back."""

    def __init__(self, provider: ChatProvider, memo: Memo, strict: bool, retries: int, max_items: int,
                 max_tokens: int, kept: Callable[[str], Any] = lambda key: None) -> None:
        self.provider, self.memo = provider, memo
        self.strict, self.retries = strict, retries
        self.max_items, self.max_tokens = max(1, max_items), max_tokens
        self.states: dict[str, PromptState] = {}  # the ledger's, read before each round
        self.answers: dict[str, Any] = {}  # collected by this process, by memo key (also without a cache)
        self._kept = kept  # the ledger's answer for a key (collected by an earlier process, the cache off)
        self._deferred: dict[str, Deferred] = {}
        self.items_grouped = 0  # prompts that travel in a line with others
        self.tokens_in = self.tokens_out = 0  # what the lines read so far cost (their usage)
        self.closed = False  # past the last round: every prompt is asked live (the answers read stay)

    @classmethod
    def for_run(cls, provider: ChatProvider, memo: Memo, settings: Settings, kept: Callable[[str], Any]) -> BatchLane:
        """The lane a run's settings ask for: prompts grouped as the live batcher groups them (none in sync mode),
        except in a batch file for a self-hosted runner, which carries them alone unless --batch-size says
        otherwise (its small models answer grouped prompts worse, and its cost is the server's time, not tokens
        billed)."""
        offline = settings.batch_api in (BatchApi.EXPORT, BatchApi.IMPORT)
        items = 1 if settings.mode is Mode.SYNC else settings.batch_size or (1 if offline else AUTO_MAX_ITEMS)
        return cls(provider, memo, settings.batch_api is BatchApi.STRICT, settings.retries, items,
                   settings.batch_max_tokens or 1 << 30, kept)

    def close(self) -> None:
        """Ask every prompt live from now on; the answers batches brought are still read."""
        self.closed = True

    def keep(self, key: str, value: Any) -> None:
        """An answer asked live while the lane is open (a prompt a batch failed): kept for the later rounds of its
        page, also without a cache."""
        self.answers[key] = value

    def load(self, states: dict[str, PromptState]) -> None:
        """What the ledger knows of every prompt now (read before each round)."""
        self.states = states

    # -- deferring ----------------------------------------------------------------------------
    def route(self, key: str) -> bool:
        """True: leave the prompt for a batch (or wait for the one it is in); False: ask it live (a batch failed
        to answer it, without --batch-api strict). In strict mode an LLMError once batches failed it more than
        --retries times."""
        if self.closed:
            return False
        state = self.states.get(key)
        if state is None or state.state != Prompt.FAILED:
            return True
        if not self.strict:
            return False
        if state.tries > self.retries:
            raise LLMError(f"no answer in {state.tries} batches ({state.error})")
        return True

    def defer(self, item: Deferred) -> None:
        """Leave `item` for the next batch, unless a batch already carries it (it is never sent twice)."""
        state = self.states.get(item.key)
        if state is not None and state.on_its_way:
            return
        self._deferred.setdefault(item.key, item)

    @property
    def pending(self) -> int:
        """Prompts deferred since the lines were last taken."""
        return len(self._deferred)

    # -- writing lines ------------------------------------------------------------------------
    def lines(self) -> list[LineRecord]:
        """The deferred prompts as batch lines (and forgets them): prompts of one question grouped up to
        --batch-size items and --batch-max-tokens tokens, as the model's window holds them with every answer."""
        singles: list[Deferred] = []
        by_question: dict[tuple[int, Question], list[Deferred]] = {}  # per model (provider) and question
        for item in self._deferred.values():
            if item.task is Task.TEXT or item.context is None or self.max_items == 1:
                singles.append(item)
            else:
                by_question.setdefault((id(item.provider), item.task), []).append(item)
        self._deferred = {}
        lines = [self._single(item) for item in singles]
        for (_, question), items in by_question.items():
            for group in self._groups(question, items):
                lines.extend(self._grouped(question, group))
        return lines

    def _groups(self, question: Question, items: list[Deferred]) -> list[list[Deferred]]:
        groups: list[list[Deferred]] = []
        tokens = 0
        for item in items:
            group = groups[-1] if groups else None
            if group is not None and len(group) < self.max_items and tokens + item.tokens <= self.max_tokens \
                    and item.provider.batch_fits(question, tokens + item.tokens, len(group) + 1):
                group.append(item)
                tokens += item.tokens
            else:
                groups.append([item])
                tokens = item.tokens
        return groups

    def _single(self, item: Deferred) -> LineRecord:
        body, _, _ = item.provider.request(item.task, item.messages)
        return LineRecord(_custom_id(), question_data(item.task), (("", item.key, item.page),), body)

    def _grouped(self, question: Question, group: list[Deferred]) -> list[LineRecord]:
        if len(group) == 1:
            return [self._single(group[0])]
        ids = [str(number) for number in range(1, len(group) + 1)]
        provider = group[0].provider
        contexts = [(i, item.context) for i, item in zip(ids, group)]
        messages = provider.batch_messages(question, contexts)  # type: ignore[arg-type]
        try:
            body, _, _ = provider.request(question, messages, batch_schema(question))
        except LLMContextError:  # the window holds each alone, not all together
            return [self._single(item) for item in group]
        self.items_grouped += len(group)
        return [LineRecord(_custom_id(), question_data(question),
                           tuple((i, item.key, item.page) for i, item in zip(ids, group)), body)]

    # -- reading answers ----------------------------------------------------------------------
    def read(self, line: LineRecord, record: dict[str, Any] | None) -> LineOutcome:
        """`line`'s answers from its output `record` (None: the batch returned none for it), read as a live reply
        is; the answers go to the memo and to `answers`."""
        outcome = LineOutcome()
        keys = {item_id: key for item_id, key, _ in line.items}
        reason = self._failure(line, record)
        if reason is not None:
            outcome.failed = {key: reason for key in keys.values()}
            return outcome
        assert record is not None
        completion = record["response"].get("body")
        if isinstance(completion, str):  # a server that writes the body as a JSON string
            try:
                completion = json.loads(completion)
            except ValueError:
                pass
        outcome.ok = True
        question = _question(line.question)
        grouped = len(line.items) > 1 or line.items[0][0] != ""
        schema = None if question is Task.TEXT else batch_schema(question) if grouped else schema_for(question)
        try:
            usage = completion.get("usage") if isinstance(completion, dict) else None
            if isinstance(usage, dict):
                outcome.tokens_in = int(usage.get("prompt_tokens") or 0)
                outcome.tokens_out = int(usage.get("completion_tokens") or 0)
                self.tokens_in += outcome.tokens_in
                self.tokens_out += outcome.tokens_out
            attempt = ChatProvider.read_answer(completion, schema)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            outcome.failed = {key: f"unreadable reply: {type(exc).__name__}: {exc}" for key in keys.values()}
            return outcome
        if attempt.value is None:
            outcome.failed = {key: attempt.problem or "no answer" for key in keys.values()}
            return outcome
        if not grouped:
            outcome.answered[keys[""]] = _stored(attempt.value)
        else:
            for entry in attempt.value.results:  # type: ignore[attr-defined]
                if entry.id in keys and keys[entry.id] not in outcome.answered:
                    outcome.answered[keys[entry.id]] = _stored(entry.result)
            outcome.failed = {key: "left out of the batched reply" for key in keys.values()
                              if key not in outcome.answered}
        for key, value in outcome.answered.items():
            self.memo.set("llm", key, value)
            self.answers[key] = value
        return outcome

    def _failure(self, line: LineRecord, record: dict[str, Any] | None) -> str | None:
        """Why an output record holds no answer (None when it is a 200 reply)."""
        if record is None:
            return "the batch returned no line for it"
        response = record.get("response") or {}
        error = record.get("error") or {}
        status = response.get("status_code") if isinstance(response, dict) else None
        if status == 200:
            return None
        if isinstance(error, dict) and error:
            return f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()
        body = response.get("body") if isinstance(response, dict) else None
        message = ""
        if isinstance(body, dict):
            inner = body.get("error")
            message = str(inner.get("message") if isinstance(inner, dict) else inner or body)[:300]
        method = _method_of(line.body)
        if status is not None and method is not None and refuses_method(int(status), message):
            # the server does not take this structured-output method: the next lines (or the live path) ask another
            self.provider.choice.refused(method, f"HTTP {status}: {message}")
        return f"HTTP {status}: {message}" if status is not None else "no response in the line"

    def stored(self, key: str) -> Any | None:
        """A batch's answer for `key` (as the memo stores it): collected by this process, or kept in the ledger."""
        found = self.answers.get(key)
        if found is None and key in self.states and self.states[key].state == Prompt.ANSWERED:
            found = self._kept(key)
        return found


def _stored(value: Any) -> Any:
    """An answer as the memo keeps it: a model's fields, or a free-form prompt's text."""
    return value.model_dump() if isinstance(value, BaseModel) else value


def _method_of(body: dict[str, Any]) -> StructuredMethod | None:
    """The structured-output method a request body asks by (None for plain text)."""
    if body.get("tools"):
        return StructuredMethod.FUNCTION_CALLING
    kind = (body.get("response_format") or {}).get("type")
    return {"json_schema": StructuredMethod.JSON_SCHEMA, "json_object": StructuredMethod.JSON_MODE}.get(kind)


def _custom_id() -> str:
    return f"di-{uuid.uuid4().hex[:24]}"
