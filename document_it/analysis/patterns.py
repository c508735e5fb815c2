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
import logging
import math
import string
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..errors import BatchDeferred
from ._calls import Ask, Callback, Failure, asker, default_llm, error_text, gather_all, notify, run_sync
from .extraction import (LLMClient, ParallelProcessor, ProcessedChunk, ProcessingMetadata, ProcessingRequest,
                         PromptReply, RequestStatus)
from .voting import TaskResult, VotingResult, VotingStrategy, label, quorum_met, tally

__all__ = [
    "ParallelTask", "ParallelizerBuilder", "Parallelizer", "VotingStrategy", "TaskResult", "VotingResult",
    "parallel_query", "aparallel_query",
    "ProcessingRequest", "ProcessedChunk", "ProcessingMetadata", "PromptReply", "LLMClient",
    "ParallelProcessor", "RequestStatus",
]

log = logging.getLogger(__name__)

Combiner = Callable[[dict[str, TaskResult]], Any]


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
        await notify(on_start, task.name)
        timeout = task.timeout if task.timeout is not None else self.timeout
        started = time.monotonic()
        try:
            output, raw = await asyncio.wait_for(self._answer(task, context), timeout)
        except BatchDeferred:
            raise
        except Exception as exc:
            error = error_text(exc, timeout)
            await notify(on_error, task.name, error)
            raw = exc.raw if isinstance(exc, Failure) else None
            return TaskResult(task.name, None, raw, error, task.weight, time.monotonic() - started)
        await notify(on_result, task.name, output)
        return TaskResult(task.name, output, raw, None, task.weight, time.monotonic() - started)

    async def _answer(self, task: ParallelTask, context: Mapping[str, Any]) -> tuple[Any, str]:
        """The task's (output, raw reply): parsed by its parser, else trimmed and case-folded."""
        try:
            prompt = task.prompt_template.format_map(context)
        except KeyError as exc:
            raise Failure(f"missing placeholder {{{exc.args[0]}}}") from None
        raw = await self._ask(prompt)
        if task.parser is None:
            return label(raw), raw
        try:
            return task.parser(raw), raw
        except Exception as exc:
            raise Failure(f"parser failed: {type(exc).__name__}: {exc}", raw) from exc


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
        return Parallelizer(self._tasks, asker(llm), self._strategy, self._combiner, self._quorum, self._timeout)


# --------------------------------------------------------------------------- parallel_query

async def aparallel_query(prompt_template: str, chunks: Sequence[str], *, llm: Any = None, max_parallel: int = 10,
                          on_start: Callback | None = None, on_result: Callback | None = None,
                          on_error: Callback | None = None) -> list[str]:
    """The answer for each chunk (`{chunk}` in the template), in input order; a failure is 'Error: <reason>'."""
    if "{chunk}" not in prompt_template:
        raise ValueError("prompt_template needs a {chunk} placeholder")
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise ValueError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
    ask = asker(default_llm() if llm is None else llm)
    gate = asyncio.Semaphore(max_parallel)

    async def one(index: int, chunk: str) -> str:
        async with gate:
            await notify(on_start, index)
            try:
                answer = await ask(prompt_template.replace("{chunk}", chunk))
            except BatchDeferred:
                raise
            except Exception as exc:
                error = error_text(exc)
                await notify(on_error, index, error)
                return error
            await notify(on_result, index, answer)
            return answer

    return await gather_all(*(one(i, chunk) for i, chunk in enumerate(chunks)))


def parallel_query(prompt_template: str, chunks: Sequence[str], *, llm: Any = None, max_parallel: int = 10,
                   on_start: Callback | None = None, on_result: Callback | None = None,
                   on_error: Callback | None = None) -> list[str]:
    """aparallel_query for sync code.

    Inside a running event loop (async code, a notebook) the query runs on a fresh loop in another
    thread while this one waits, so `llm` must then be usable from that other loop.
    """
    return run_sync(lambda: aparallel_query(prompt_template, chunks, llm=llm, max_parallel=max_parallel,
                                             on_start=on_start, on_result=on_result, on_error=on_error))


