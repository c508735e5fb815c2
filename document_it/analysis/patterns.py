"""Parallel LLM building blocks: a voting Parallelizer, parallel_query over chunks, a ParallelProcessor for fields.

Every "llm" argument is one of: a client from `document_it.connect_llm()` (its `query_async` is used,
so calls go through the gateway's limits, retries, batching, cache and accounting), any async callable
`prompt -> str`, or a plain sync callable `prompt -> str` (run in a worker thread). One item's failure
never sinks the call: it becomes `"Error: <reason>"` in that item's place. Progress callbacks
`on_start(key)`, `on_result(key, value)` and `on_error(key, message)` may be sync or async; the key is
the task name or the chunk index; a callback that raises is logged and ignored.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import string
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

from ..core.tracker import Prices, RequestRecord, RequestStatus, RequestTracker
from ..errors import DocumentItError, LLMTransientError
from ..redact import redact
from ..tokens import estimate_tokens
from .voting import TaskResult, VotingResult, VotingStrategy, label, quorum_met, tally

__all__ = [
    "ParallelTask", "ParallelizerBuilder", "Parallelizer", "VotingStrategy", "TaskResult", "VotingResult",
    "parallel_query", "aparallel_query",
    "ProcessingRequest", "ProcessedChunk", "ProcessingMetadata", "PromptReply", "LLMClient",
    "ParallelProcessor", "RequestStatus",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Ask = Callable[[str], Awaitable[str]]
Callback = Callable[..., Any]
Combiner = Callable[[dict[str, TaskResult]], Any]


# --------------------------------------------------------------------------- shared plumbing

class _Failure(Exception):
    """An item failed for a reason already written for the user."""

    def __init__(self, reason: str, raw: str | None = None) -> None:
        super().__init__(reason)
        self.raw = raw


def _asker(llm: Any) -> Ask:
    """One async `prompt -> str` for any supported llm: a client with query_async, an async or a sync callable."""
    method = getattr(llm, "query_async", None)
    if callable(method):
        return _checked(method)
    if inspect.iscoroutinefunction(llm) or inspect.iscoroutinefunction(getattr(llm, "__call__", None)):
        return _checked(llm)
    if callable(llm):
        async def in_thread(prompt: str) -> Any:
            reply = await asyncio.to_thread(llm, prompt)
            return await reply if inspect.isawaitable(reply) else reply  # a lambda wrapping an async call
        return _checked(in_thread)
    raise TypeError(f"llm must be a client with an async query_async(prompt) method (connect_llm() returns one) "
                    f"or a callable taking a prompt and returning str; got {type(llm).__name__}")


def _checked(call: Callable[[str], Awaitable[Any]]) -> Ask:
    """`call`, refusing replies that are not text."""
    async def ask(prompt: str) -> str:
        reply = await call(prompt)
        if not isinstance(reply, str):
            raise _Failure(f"the llm returned {type(reply).__name__}, not text")
        return reply
    return ask


async def _notify(callback: Callback | None, *args: Any) -> None:
    """Call a progress callback (sync or async); one that raises is logged and ignored."""
    if callback is None:
        return
    try:
        outcome = callback(*args)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        log.warning("progress callback %s failed; ignoring it", getattr(callback, "__name__", callback),
                    exc_info=True)


def _error_text(exc: BaseException, timeout: float | None = None) -> str:
    """'Error: <reason>' for one failed item, with anything key-shaped redacted."""
    if isinstance(exc, TimeoutError):  # asyncio.wait_for's timeout (asyncio.TimeoutError is TimeoutError)
        reason = f"timed out after {timeout:g}s" if timeout is not None else "timed out"
    elif isinstance(exc, (DocumentItError, _Failure)):
        reason = str(exc) or type(exc).__name__
    else:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return "Error: " + redact(reason)


def _run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end from sync code; inside a running loop, on a fresh loop in another thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1, thread_name_prefix="document-it-sync") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _default_llm() -> Any:
    """The configured client (`document_it.connect_llm()`), imported only when no llm was given."""
    from .. import connect_llm
    return connect_llm()


# --------------------------------------------------------------------------- parallelizer (voting)

@dataclass(frozen=True)
class ParallelTask:
    """One question asked in parallel: a str.format template over the context, and its vote's weight."""

    name: str
    prompt_template: str
    weight: float = 1.0
    parser: Callable[[str], Any] | None = None
    timeout: float | None = None  # seconds; None: the parallelizer's default

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a ParallelTask needs a non-empty name")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"task {self.name!r}: weight must be a number > 0, got {self.weight!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"task {self.name!r}: timeout must be > 0 seconds, got {self.timeout!r}")
        try:
            list(string.Formatter().parse(self.prompt_template))
        except ValueError as exc:
            raise ValueError(f"task {self.name!r}: prompt_template is not a valid format string: {exc}") from None


class Parallelizer:
    """Asks every task at once and combines the answers by vote; built by ParallelizerBuilder."""

    def __init__(self, tasks: Sequence[ParallelTask], ask: Ask, strategy: VotingStrategy,
                 combiner: Combiner | None, quorum: int, timeout: float | None) -> None:
        self.tasks = tuple(tasks)
        self.strategy = strategy
        self.quorum = quorum
        self.timeout = timeout
        self._ask = ask
        self._combiner = combiner

    async def execute(self, context: Mapping[str, Any], *, on_start: Callback | None = None,
                      on_result: Callback | None = None, on_error: Callback | None = None) -> VotingResult:
        """Run every task on `context` and vote; failed tasks are recorded, not raised."""
        runs = [self._run(task, context, on_start, on_result, on_error) for task in self.tasks]
        results = {result.name: result for result in await asyncio.gather(*runs)}
        decision = None
        if self.strategy is VotingStrategy.CUSTOM and self._combiner is not None and quorum_met(results, self.quorum):
            decision = self._combiner(dict(results))
            if inspect.isawaitable(decision):
                decision = await decision
        return tally(results, self.strategy, self.quorum, decision)

    async def _run(self, task: ParallelTask, context: Mapping[str, Any], on_start: Callback | None,
                   on_result: Callback | None, on_error: Callback | None) -> TaskResult:
        """One task's TaskResult; its failure (timeout, error, bad template or parser) is kept in `error`."""
        await _notify(on_start, task.name)
        timeout = task.timeout if task.timeout is not None else self.timeout
        started = time.monotonic()
        try:
            output, raw = await asyncio.wait_for(self._answer(task, context), timeout)
        except Exception as exc:
            error = _error_text(exc, timeout)
            await _notify(on_error, task.name, error)
            raw = exc.raw if isinstance(exc, _Failure) else None
            return TaskResult(task.name, None, raw, error, task.weight, time.monotonic() - started)
        await _notify(on_result, task.name, output)
        return TaskResult(task.name, output, raw, None, task.weight, time.monotonic() - started)

    async def _answer(self, task: ParallelTask, context: Mapping[str, Any]) -> tuple[Any, str]:
        """The task's (output, raw reply): parsed by its parser, else trimmed and case-folded."""
        try:
            prompt = task.prompt_template.format_map(context)
        except KeyError as exc:
            raise _Failure(f"missing placeholder {{{exc.args[0]}}}") from None
        raw = await self._ask(prompt)
        if task.parser is None:
            return label(raw), raw
        try:
            return task.parser(raw), raw
        except Exception as exc:
            raise _Failure(f"parser failed: {type(exc).__name__}: {exc}", raw) from exc


class ParallelizerBuilder:
    """Fluent set-up of a Parallelizer: tasks, voting strategy, quorum and default per-task timeout."""

    def __init__(self) -> None:
        self._tasks: list[ParallelTask] = []
        self._strategy = VotingStrategy.MAJORITY
        self._combiner: Combiner | None = None
        self._quorum = 1
        self._timeout: float | None = None

    def add_task(self, task: ParallelTask) -> ParallelizerBuilder:
        """Add one task to run in parallel."""
        if not isinstance(task, ParallelTask):
            raise TypeError(f"add_task takes a ParallelTask, got {type(task).__name__}")
        self._tasks.append(task)
        return self

    def set_voting_strategy(self, strategy: VotingStrategy | str,
                            custom_combiner: Combiner | None = None) -> ParallelizerBuilder:
        """Choose how answers are combined; CUSTOM needs `custom_combiner(task_results) -> decision`."""
        try:
            self._strategy = VotingStrategy(strategy.lower() if isinstance(strategy, str) else strategy)
        except ValueError:
            choices = ", ".join(s.value for s in VotingStrategy)
            raise ValueError(f"unknown voting strategy {strategy!r}; choose one of {choices}") from None
        if custom_combiner is not None and not callable(custom_combiner):
            raise TypeError("custom_combiner must be callable")
        self._combiner = custom_combiner
        return self

    def set_quorum(self, n: int) -> ParallelizerBuilder:
        """Decide only when at least `n` tasks answered (default 1)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"quorum must be a whole number >= 1, got {n!r}")
        self._quorum = n
        return self

    def set_timeout(self, seconds: float | None) -> ParallelizerBuilder:
        """Default per-task time limit (None: only the client's own timeouts apply)."""
        if seconds is not None and not seconds > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {seconds!r}")
        self._timeout = seconds
        return self

    def build(self, llm: Any) -> Parallelizer:
        """A Parallelizer asking `llm`; raises ValueError for an incomplete set-up, TypeError for a bad llm."""
        if not self._tasks:
            raise ValueError("add at least one ParallelTask before build()")
        names = [task.name for task in self._tasks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"task names must be unique; repeated: {', '.join(repeated)}")
        if self._quorum > len(self._tasks):
            raise ValueError(f"quorum {self._quorum} is more than the {len(self._tasks)} tasks")
        if self._strategy is VotingStrategy.CUSTOM and self._combiner is None:
            raise ValueError("the custom voting strategy needs a custom_combiner")
        if self._strategy is not VotingStrategy.CUSTOM and self._combiner is not None:
            raise ValueError(f"custom_combiner is only used by the custom strategy, not {self._strategy.value}")
        return Parallelizer(self._tasks, _asker(llm), self._strategy, self._combiner, self._quorum, self._timeout)


# --------------------------------------------------------------------------- parallel_query

async def aparallel_query(prompt_template: str, chunks: Sequence[str], *, llm: Any = None, max_parallel: int = 10,
                          on_start: Callback | None = None, on_result: Callback | None = None,
                          on_error: Callback | None = None) -> list[str]:
    """The answer for each chunk (`{chunk}` in the template), in input order; a failure is 'Error: <reason>'."""
    if "{chunk}" not in prompt_template:
        raise ValueError("prompt_template needs a {chunk} placeholder")
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise ValueError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
    ask = _asker(_default_llm() if llm is None else llm)
    gate = asyncio.Semaphore(max_parallel)

    async def one(index: int, chunk: str) -> str:
        async with gate:
            await _notify(on_start, index)
            try:
                answer = await ask(prompt_template.replace("{chunk}", chunk))
            except Exception as exc:
                error = _error_text(exc)
                await _notify(on_error, index, error)
                return error
            await _notify(on_result, index, answer)
            return answer

    return list(await asyncio.gather(*(one(i, chunk) for i, chunk in enumerate(chunks))))


def parallel_query(prompt_template: str, chunks: Sequence[str], *, llm: Any = None, max_parallel: int = 10,
                   on_start: Callback | None = None, on_result: Callback | None = None,
                   on_error: Callback | None = None) -> list[str]:
    """aparallel_query for sync code.

    Inside a running event loop (async code, a notebook) the query runs on a fresh loop in another
    thread while this one waits, so `llm` must then be usable from that other loop.
    """
    return _run_sync(lambda: aparallel_query(prompt_template, chunks, llm=llm, max_parallel=max_parallel,
                                             on_start=on_start, on_result=on_result, on_error=on_error))


# --------------------------------------------------------------------------- parallel field extraction

@dataclass(frozen=True)
class PromptReply:
    """A model's reply text and the tokens it cost."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0


@runtime_checkable
class LLMClient(Protocol):
    """What ParallelProcessor needs from a client: one prompt in, one PromptReply out."""

    async def process_prompt(self, prompt: str, *, model_name: str, timeout: float) -> PromptReply:
        """The reply to `prompt` from `model_name`, within `timeout` seconds."""
        ...


class _CallableClient:
    """An LLMClient over any llm `_asker` accepts; token counts are estimated from the text."""

    def __init__(self, llm: Any) -> None:
        self._ask = _asker(llm)

    async def process_prompt(self, prompt: str, *, model_name: str, timeout: float) -> PromptReply:
        """The reply to `prompt`, with estimated token counts (`model_name` is the llm's own business)."""
        text = await self._ask(prompt)
        return PromptReply(text, estimate_tokens(prompt), estimate_tokens(text))


@dataclass(frozen=True)
class ProcessingRequest:
    """Which fields to extract from which chunks, with what prompt ({chunk}, {fields}) and limits."""

    chunks: Sequence[str]
    prompt_template: str
    fields: Sequence[str]
    model_name: str
    max_concurrency: int = 20
    timeout: float = 60.0   # seconds per attempt
    retry_attempts: int = 3  # attempts per chunk, the first included

    def __post_init__(self) -> None:
        for name in ("chunks", "fields"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"{name} must be a list of strings")
            object.__setattr__(self, name, tuple(value))
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ValueError("fields must name at least one field, each once")
        if "{chunk}" not in self.prompt_template:
            raise ValueError("prompt_template needs a {chunk} placeholder")
        if not self.model_name.strip():
            raise ValueError("model_name must not be empty")
        for name in ("max_concurrency", "retry_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")

    def prompt(self, chunk: str) -> str:
        """The prompt for one chunk ({fields} is filled first, so braces inside a chunk are left alone)."""
        return self.prompt_template.replace("{fields}", ", ".join(self.fields)).replace("{chunk}", chunk)


@dataclass(frozen=True)
class ProcessingMetadata:
    """How one chunk's extraction went."""

    processing_time: float  # seconds from its first attempt to its last
    token_count: int        # tokens in + out over every attempt
    model_name: str
    attempt_count: int
    status: RequestStatus   # COMPLETED or FAILED (equal to "completed" / "failed")
    error: str | None = None


@dataclass(frozen=True)
class ProcessedChunk:
    """One chunk, the fields extracted from it (None where not found) and how it went."""

    chunk: str
    result: dict[str, Any]
    processing_metadata: ProcessingMetadata


class ParallelProcessor:
    """Extracts the requested fields from every chunk in parallel, retrying replies that hold no JSON object."""

    def __init__(self, client: Any) -> None:
        self.client: LLMClient = client if isinstance(client, LLMClient) else _CallableClient(client)
        self.tracker = RequestTracker()  # the latest process() call's requests, one per chunk
        self._records: dict[int, RequestRecord] = {}

    def statuses(self) -> dict[int, RequestStatus]:
        """Each chunk's request status (by chunk index) in the latest process() call."""
        return {index: record.status for index, record in self._records.items()}

    async def process(self, request: ProcessingRequest, *, on_start: Callback | None = None,
                      on_result: Callback | None = None, on_error: Callback | None = None) -> list[ProcessedChunk]:
        """One ProcessedChunk per chunk, in input order; failed chunks carry status 'failed' and the reason."""
        self.tracker = RequestTracker(Prices.for_model(request.model_name))
        self._records = {index: self.tracker.new(f"chunk {index}") for index in range(len(request.chunks))}
        gate = asyncio.Semaphore(request.max_concurrency)
        callbacks = (on_start, on_result, on_error)
        runs = (self._one(index, chunk, request, gate, callbacks) for index, chunk in enumerate(request.chunks))
        return list(await asyncio.gather(*runs))

    def process_sync(self, request: ProcessingRequest, *, on_start: Callback | None = None,
                     on_result: Callback | None = None, on_error: Callback | None = None) -> list[ProcessedChunk]:
        """process() for sync code (inside a running loop it runs on another thread's loop, like parallel_query)."""
        return _run_sync(lambda: self.process(request, on_start=on_start, on_result=on_result, on_error=on_error))

    async def _one(self, index: int, chunk: str, request: ProcessingRequest, gate: asyncio.Semaphore,
                   callbacks: tuple[Callback | None, Callback | None, Callback | None]) -> ProcessedChunk:
        """Extract one chunk's fields under the concurrency cap and record how it went."""
        on_start, on_result, on_error = callbacks
        record = self._records[index]
        async with gate:
            await _notify(on_start, index)
            started = time.monotonic()
            fields, error = await self._attempts(request, request.prompt(chunk), record)
            seconds = time.monotonic() - started
        self.tracker.finish(record, error)
        metadata = ProcessingMetadata(seconds, record.tokens_in + record.tokens_out, request.model_name,
                                      record.attempts, record.status, error)
        if error is None:
            await _notify(on_result, index, fields)
        else:
            await _notify(on_error, index, error)
        return ProcessedChunk(chunk, fields if fields is not None else dict.fromkeys(request.fields), metadata)

    async def _attempts(self, request: ProcessingRequest, prompt: str,
                        record: RequestRecord) -> tuple[dict[str, Any] | None, str | None]:
        """(fields, None) from the first usable reply; (None, error) when attempts run out or a call fails for good."""
        error = ""
        for attempt in range(1, request.retry_attempts + 1):
            if attempt > 1:
                self.tracker.retrying(record, error)
            self.tracker.attempt(record)
            try:
                reply = await asyncio.wait_for(self.client.process_prompt(
                    prompt, model_name=request.model_name, timeout=request.timeout), request.timeout)
            except (LLMTransientError, TimeoutError) as exc:
                error = _error_text(exc, request.timeout)
                continue
            except Exception as exc:  # a non-transient LLMError, or a bug: retrying will not help
                return None, _error_text(exc, request.timeout)
            self.tracker.usage(record, reply.tokens_in, reply.tokens_out)
            found = _json_object(reply.text or "")
            if found is not None:
                return {name: found.get(name) for name in request.fields}, None
            error = "Error: the reply held no JSON object"
        suffix = f" (after {request.retry_attempts} attempts)" if request.retry_attempts > 1 else ""
        return None, error + suffix


_DECODER = json.JSONDecoder()


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text`, past any ```json fence or leading prose; None when there is none."""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except ValueError:
            pass
        else:
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    return None
