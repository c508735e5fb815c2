"""Parallel field extraction: a ProcessingRequest's chunks go to an LLMClient at once (bounded), each reply's
JSON is read into the requested fields, and every chunk keeps its metadata (time, tokens, attempts, status)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from ..core.tracker import Prices, RequestRecord, RequestStatus, RequestTracker
from ..errors import BatchDeferred, LLMTransientError
from ..tokens import estimate_tokens
from ._calls import Callback, asker, error_text, gather_all, notify, run_sync

__all__ = ["PromptReply", "LLMClient", "ProcessingRequest", "ProcessingMetadata", "ProcessedChunk",
           "ParallelProcessor", "RequestStatus"]


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
    """An LLMClient over any llm `asker` accepts; token counts are estimated from the text."""

    def __init__(self, llm: Any) -> None:
        self._ask = asker(llm)

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
        return await gather_all(*runs)

    def process_sync(self, request: ProcessingRequest, *, on_start: Callback | None = None,
                     on_result: Callback | None = None, on_error: Callback | None = None) -> list[ProcessedChunk]:
        """process() for sync code (inside a running loop it runs on another thread's loop, like parallel_query)."""
        return run_sync(lambda: self.process(request, on_start=on_start, on_result=on_result, on_error=on_error))

    async def _one(self, index: int, chunk: str, request: ProcessingRequest, gate: asyncio.Semaphore,
                   callbacks: tuple[Callback | None, Callback | None, Callback | None]) -> ProcessedChunk:
        """Extract one chunk's fields under the concurrency cap and record how it went."""
        on_start, on_result, on_error = callbacks
        record = self._records[index]
        async with gate:
            await notify(on_start, index)
            started = time.monotonic()
            fields, error = await self._attempts(request, request.prompt(chunk), record)
            seconds = time.monotonic() - started
        self.tracker.finish(record, error)
        metadata = ProcessingMetadata(seconds, record.tokens_in + record.tokens_out, request.model_name,
                                      record.attempts, record.status, error)
        if error is None:
            await notify(on_result, index, fields)
        else:
            await notify(on_error, index, error)
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
                error = error_text(exc, request.timeout)
                continue
            except BatchDeferred:
                raise
            except Exception as exc:  # a non-transient LLMError, or a bug: retrying will not help
                return None, error_text(exc, request.timeout)
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
