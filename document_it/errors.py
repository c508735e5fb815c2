"""One exception tree; every message is written for the user."""

from __future__ import annotations

import re

__all__ = [
    "DocumentItError",
    "ConfigError",
    "SourceError",
    "FetchError",
    "ParseError",
    "LLMError",
    "LLMFatalError",
    "LLMAuthError",
    "LLMClientError",
    "LLMUnusableError",
    "LLMTransientError",
    "WorkerLost",
    "OutputError",
    "connection_reason",
    "Interrupted",
    "BatchDeferred",
]

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed ('connection refused'), not the HTTP library's whole retry story."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip().rstrip(".").lower()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:200]


class DocumentItError(Exception):
    """Base of every error document-it raises on purpose."""


class ConfigError(DocumentItError):
    """A flag, environment variable or setting is unusable."""


class SourceError(DocumentItError):
    """The page index (llms.txt, sitemap, URL list, folder) cannot be read."""


class FetchError(DocumentItError):
    """One page could not be downloaded (status, timeout, size, type)."""


class ParseError(DocumentItError):
    """One page could not be turned into text."""


class LLMError(DocumentItError):
    """A model call failed or its reply did not validate; `kind` names how a server's reply failed ("HTTP 502",
    "not JSON", "no connection") where that is known, so that failures alike can be told apart from others."""

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class LLMFatalError(LLMError):
    """No later call can succeed either: the run stops at once with this message (exit 2)."""


class LLMAuthError(LLMFatalError):
    """The provider rejected the API key."""


class LLMClientError(LLMFatalError):
    """Our side failed before the request left the machine (building the client or the request): a bug or
    a broken install, not a server fault; never retried, never counted against the server."""


class LLMUnusableError(LLMFatalError):
    """The server answers, but nothing it answers can be used: the first requests of the run all came back
    the same unusable way, or it takes none of the structured-output methods (or not the one forced)."""


class LLMTransientError(LLMError):
    """A failure worth retrying: rate limit, server error, timeout, dropped connection, malformed reply."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 rate_limited: bool = False, headers: dict[str, str] | None = None, timed_out: bool = False,
                 kind: str | None = None) -> None:
        super().__init__(message, kind=kind)
        self.status = status
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        self.timed_out = timed_out
        self.headers = headers or {}


class WorkerLost(DocumentItError):
    """A page's task on a Dask worker was lost: its worker died more often than the scheduler allows, or
    the cluster went away."""


class OutputError(DocumentItError):
    """A local file could not be written (disk full, read-only or vanished folder); what was finished is kept."""


class Interrupted(Exception):
    """The run was stopped by a signal after writing what finished; the exit code is 128 + signum."""

    def __init__(self, signum: int, resumable: bool = False) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum
        self.resumable = resumable  # the job queue kept the rest: --resume continues


class BatchDeferred(Exception):
    """Not an error: a prompt was left for the provider's Batch API and its page (or topic) waits for the batch's
    answers (--batch-api). Code that records a failure and goes on lets it through."""
