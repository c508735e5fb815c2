"""Shared plumbing of the parallel patterns: turning any llm into one async `prompt -> str`, progress
callbacks, the "Error: <reason>" text of a failed item, and running a coroutine from sync code."""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from ..errors import DocumentItError
from ..redact import redact

__all__ = ["Ask", "Callback", "Failure", "asker", "notify", "error_text", "run_sync", "default_llm", "gather_all"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Ask = Callable[[str], Awaitable[str]]
Callback = Callable[..., Any]


class Failure(Exception):
    """An item failed for a reason already written for the user."""

    def __init__(self, reason: str, raw: str | None = None) -> None:
        super().__init__(reason)
        self.raw = raw


async def gather_all(*awaitables: Awaitable[T]) -> list[T]:
    """Every result, in order, once all have finished; then the first exception any raised, if one did. Unlike
    asyncio.gather, none is left running when one fails: a prompt left for a batch (BatchDeferred) waits for
    its siblings, so all of them go in the same round."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def asker(llm: Any) -> Ask:
    """One async `prompt -> str` for any supported llm: a client with query_async, an async or a sync callable."""
    method = getattr(llm, "query_async", None)
    if callable(method):
        return checked(method)
    if inspect.iscoroutinefunction(llm) or inspect.iscoroutinefunction(getattr(llm, "__call__", None)):
        return checked(llm)
    if callable(llm):
        async def in_thread(prompt: str) -> Any:
            reply = await asyncio.to_thread(llm, prompt)
            return await reply if inspect.isawaitable(reply) else reply  # a lambda wrapping an async call
        return checked(in_thread)
    raise TypeError(f"llm must be a client with an async query_async(prompt) method (connect_llm() returns one) "
                    f"or a callable taking a prompt and returning str; got {type(llm).__name__}")


def checked(call: Callable[[str], Awaitable[Any]]) -> Ask:
    """`call`, refusing replies that are not text."""
    async def ask(prompt: str) -> str:
        reply = await call(prompt)
        if not isinstance(reply, str):
            raise Failure(f"the llm returned {type(reply).__name__}, not text")
        return reply
    return ask


async def notify(callback: Callback | None, *args: Any) -> None:
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


def error_text(exc: BaseException, timeout: float | None = None) -> str:
    """'Error: <reason>' for one failed item, with anything key-shaped redacted."""
    if isinstance(exc, TimeoutError):  # asyncio.wait_for's timeout (asyncio.TimeoutError is TimeoutError)
        reason = f"timed out after {timeout:g}s" if timeout is not None else "timed out"
    elif isinstance(exc, (DocumentItError, Failure)):
        reason = str(exc) or type(exc).__name__
    else:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return "Error: " + redact(reason)


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end from sync code; inside a running loop, on a fresh loop in another thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1, thread_name_prefix="document-it-sync") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def default_llm() -> Any:
    """The configured client (`document_it.connect_llm()`), imported only when no llm was given."""
    from .. import connect_llm
    return connect_llm()
