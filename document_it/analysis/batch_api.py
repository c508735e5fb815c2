"""The provider's Batch API through the openai SDK's `files` and `batches` clients: upload a JSONL file, create a
batch from it, poll it, read its output and error files. Transient failures (429, 5xx, a dropped connection)
are retried with backoff here, as the gateway retries chat requests; other refusals are one-line errors."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import urlparse

import httpx2
import openai

from ..config import PLACEHOLDER_KEY, Settings
from ..core.ratelimit import retry_after_seconds
from ..core.retry import RetryPolicy
from ..errors import LLMError
from ..redact import redact
from .replies import error_message, first_line

__all__ = ["BatchClient", "BatchState", "BatchApiError", "TooLarge", "NotFound", "ENDPOINT"]

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
T = TypeVar("T")
_TOO_LARGE = ("too large", "too_large", "exceeds", "maximum", "too many", "too_many")


class BatchApiError(LLMError):
    """The Batch API refused or failed a call; `transient` when it was a 429, a 5xx or no connection (the
    retries ran out: a later poll may fare better)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class TooLarge(BatchApiError):
    """The provider refused a batch file as larger (in bytes or lines) than it takes."""


class NotFound(BatchApiError):
    """The provider does not know the path or the object (no Batch API there, or a batch it no longer has)."""


@dataclass(frozen=True)
class BatchState:
    """What the provider says of one batch."""

    id: str
    status: str
    input_file_id: str
    counts: dict[str, int]
    output_file_id: str | None
    error_file_id: str | None
    errors: list[str]

    @property
    def too_large(self) -> bool:
        """The batch failed because its file is larger than the provider takes."""
        return self.status == "failed" and not self.queue_full and \
            any(word in error.lower() for error in self.errors for word in _TOO_LARGE)

    @property
    def queue_full(self) -> bool:
        """The batch failed because the provider's queue holds as many tokens as it takes (OpenAI's enqueued
        token limit): it is taken once batches ahead of it are done."""
        return self.status == "failed" and any("token_limit_exceeded" in error or "enqueued token" in error.lower()
                                               for error in self.errors)


def _state(batch: Any) -> BatchState:
    """A batch object as the SDK read it; servers that copy the API leave fields out, so each is optional."""
    counts = getattr(batch, "request_counts", None)
    found = getattr(batch, "errors", None)
    found = getattr(found, "data", found) or []
    errors = [f"{getattr(e, 'code', None) or 'error'}: {getattr(e, 'message', None) or ''}"
              for e in (found if isinstance(found, list) else [])]
    tally = {name: int(getattr(counts, name, 0) or 0) for name in ("total", "completed", "failed")} if counts else {}
    return BatchState(batch.id, str(batch.status), str(getattr(batch, "input_file_id", "") or ""), tally,
                      getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None), errors)


class BatchClient:
    """One run's connection to the Batch API at --llm-base-url (or OpenAI)."""

    def __init__(self, settings: Settings, deadline: float | None = None) -> None:
        """A client for the Batch API at the settings' base URL, with their key (nothing is sent yet); no retry
        waits past `deadline` (time.monotonic(): the run's --batch-wait)."""
        self._deadline = deadline
        self.host = urlparse(settings.llm_base_url or "https://api.openai.com").netloc.rpartition("@")[2]
        self._secrets = (settings.api_key,)
        self._retry = RetryPolicy(settings.retries)
        self._http = httpx2.AsyncClient(timeout=httpx2.Timeout(300.0, connect=10.0), follow_redirects=False)
        self._sdk = openai.AsyncOpenAI(api_key=settings.api_key or PLACEHOLDER_KEY, base_url=settings.llm_base_url,
                                       max_retries=0, http_client=self._http)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def upload(self, name: str, data: bytes) -> str:
        """Upload a batch input file; its file id."""
        try:
            found = await self._call("upload the batch file", self._sdk.files.create, file=(name, data),
                                     purpose="batch")
        except NotFound as exc:
            raise NotFound(f"{exc}: this server does not seem to offer the Batch API; run without --batch-api, or "
                           "write the batch file with --batch-api export") from None
        return self._read("upload the batch file", lambda: str(found.id))

    async def create(self, input_file_id: str, metadata: dict[str, str]) -> BatchState:
        """Start a batch over an uploaded file."""
        try:
            found = await self._call("create the batch", self._sdk.batches.create, input_file_id=input_file_id,
                                     endpoint=ENDPOINT, completion_window="24h", metadata=metadata)
        except BatchApiError as exc:
            if exc.transient or "metadata" not in str(exc).lower():
                raise
            # a server that copies the API without metadata: the batch is found by its file instead
            found = await self._call("create the batch", self._sdk.batches.create, input_file_id=input_file_id,
                                     endpoint=ENDPOINT, completion_window="24h")
        return self._read("create the batch", lambda: _state(found))

    async def find(self, input_file_id: str, since: float) -> BatchState | None:
        """The batch already made from `input_file_id` (a run killed between creating it and recording its id),
        among the provider's batches created since `since` (newest first, page after page)."""
        after: str | None = None
        while True:
            extra = {"after": after} if after else {}
            page = await self._call("list batches", self._sdk.batches.list, limit=100, **extra)
            batches = self._read("list batches", lambda: list(page.data))
            for batch in batches:
                if getattr(batch, "input_file_id", None) == input_file_id:
                    return self._read("list batches", lambda: _state(batch))
            older = any((getattr(batch, "created_at", None) or 0) < since - 60 for batch in batches)
            if not batches or older or not getattr(page, "has_more", False):
                return None
            after = batches[-1].id

    async def state(self, batch_id: str) -> BatchState:
        """What the provider says of the batch now."""
        found = await self._call("poll the batch", self._sdk.batches.retrieve, batch_id)
        return self._read("poll the batch", lambda: _state(found))

    async def content(self, file_id: str) -> str:
        """A file's text (a batch's output or error JSONL)."""
        response = await self._call("download the batch results", self._sdk.files.content, file_id)
        return self._read("download the batch results", lambda: str(response.text))

    def _read(self, what: str, read: Callable[[], T]) -> T:
        """What a reply holds; a reply that is not the object asked for (HTML from a proxy, a bare string) is a
        one-line error, not a traceback."""
        try:
            return read()
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise BatchApiError(f"the Batch API at {self.host} could not {what}: its reply was not the expected "
                                f"object ({type(exc).__name__}: {self._clean(exc)})") from None

    async def _call(self, what: str, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        failures = 0
        while True:
            try:
                return await call(*args, **kwargs)
            except openai.APIStatusError as exc:
                status, message = exc.status_code, self._clean(error_message(exc))
                text = f"the Batch API at {self.host} could not {what} (HTTP {status}: {message})"
                if status == 413 or (status == 400 and any(word in message.lower() for word in _TOO_LARGE)):
                    raise TooLarge(text) from None
                if status in (404, 405, 501):
                    raise NotFound(text) from None
                if status not in (408, 409, 429) and status < 500:
                    raise BatchApiError(text) from None
                retry_after = retry_after_seconds(dict(exc.response.headers)) if exc.response is not None else None
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                text = f"the Batch API at {self.host} could not {what}: {self._clean(exc)}"
                retry_after = None
            failures += 1
            if failures > self._retry.retries:
                raise BatchApiError(f"{text} (gave up after {failures} attempts)", transient=True)
            delay = self._retry.delay(failures, retry_after)
            if self._deadline is not None and time.monotonic() + delay > self._deadline:
                raise BatchApiError(f"{text} (--batch-wait runs out before the next attempt)", transient=True)
            log.info("%s; trying again in %.1f s", text, delay)
            await asyncio.sleep(delay)

    def _clean(self, error: object) -> str:
        return first_line(redact(str(error), self._secrets))
