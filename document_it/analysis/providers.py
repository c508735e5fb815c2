"""Who answers a prompt: an OpenAI-compatible chat model, or the offline extractive analyser."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import urlparse

import json

import httpx
import openai
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ValidationError

from ..config import LLMKind, Settings, StructuredMethod
from ..errors import LLMAuthError, LLMError
from ..redact import redact
from ..tokens import estimate_tokens
from . import extractive
from .prompts import Context, Task, render, schema_for

__all__ = ["Reply", "Provider", "ChatProvider", "ExtractiveProvider", "make_provider"]

log = logging.getLogger(__name__)

CpuRunner = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Reply:
    """A validated answer and what it cost."""

    value: BaseModel
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


class Provider(Protocol):
    """Answers one task for one context."""

    name: str
    is_llm: bool

    async def complete(self, task: Task, context: Context) -> Reply: ...

    async def aclose(self) -> None: ...


class ExtractiveProvider:
    """The offline analyser; CPU work, so it runs where the mode runs CPU work (a process pool in hybrid)."""

    name = "extractive"
    is_llm = False

    def __init__(self, run_cpu: CpuRunner | None = None) -> None:
        self._run_cpu = run_cpu

    async def complete(self, task: Task, context: Context) -> Reply:
        if self._run_cpu is None:
            return Reply(value=extractive.answer(task, context))
        return Reply(value=await self._run_cpu(extractive.answer, task, context))

    async def aclose(self) -> None:
        """Nothing to release."""


class ChatProvider:
    """Any OpenAI-compatible chat model through ChatOpenAI, asked for structured output."""

    is_llm = True

    def __init__(self, settings: Settings) -> None:
        self.name = settings.provider_name
        self._method = settings.structured_output
        self._secrets = (settings.api_key,)
        self._host = urlparse(settings.llm_base_url or "https://api.openai.com").netloc
        # our own client, bound to this run's event loop (the SDK's shared default outlives loops)
        self._http = httpx.AsyncClient(
            timeout=settings.request_timeout,
            limits=httpx.Limits(max_connections=settings.max_concurrency,
                                max_keepalive_connections=settings.max_concurrency))
        self._llm = ChatOpenAI(
            model=settings.model,
            base_url=settings.llm_base_url,
            api_key=settings.api_key or "no-key-needed",
            max_retries=0,
            timeout=settings.request_timeout,
            use_responses_api=False,
            http_async_client=self._http,
        )
        self._runnables: dict[Task, Any] = {}

    async def complete(self, task: Task, context: Context) -> Reply:
        messages = render(task, context, schema_in_prompt=self._method is StructuredMethod.JSON_MODE)
        first = await self._attempt(task, messages)
        if first.value is not None:
            return first.reply(requests=1)
        log.info("invalid %s reply, asking once more: %s", task.value, first.problem)
        repair = messages + [("user", f"Your previous reply was not valid: {first.problem}\n"
                                      "Answer again with only the structured output the schema asks for.")]
        second = await self._attempt(task, repair)
        if second.value is not None:
            return second.reply(requests=2, earlier=first)
        raise LLMError(f"invalid {task.value} reply after one repair attempt: {second.problem}")

    async def aclose(self) -> None:
        """Close this provider's connections."""
        await self._http.aclose()

    def _runnable(self, task: Task) -> Any:
        if task not in self._runnables:
            self._runnables[task] = self._llm.with_structured_output(
                schema_for(task), method=self._method.value, include_raw=True)
        return self._runnables[task]

    async def _attempt(self, task: Task, messages: list[tuple[str, str]]) -> _Attempt:
        """One request; an answer that does not validate comes back as a problem, not an exception."""
        try:
            out = await self._runnable(task).ainvoke(messages)
        except (ValidationError, json.JSONDecodeError, openai.LengthFinishReasonError,
                openai.ContentFilterFinishReasonError) as exc:
            # the SDK validated and raised before we saw usage: count the prompt we sent
            sent = estimate_tokens("".join(text for _, text in messages))
            return _Attempt(None, _first_line(redact(str(exc), self._secrets)), sent, 0)
        except openai.AuthenticationError:
            raise LLMAuthError(f"API key rejected by {self._host} (HTTP 401)") from None
        except openai.PermissionDeniedError:
            raise LLMAuthError(f"API key not allowed to use model at {self._host} (HTTP 403)") from None
        except openai.APITimeoutError:
            raise LLMError(f"LLM request to {self._host} timed out") from None
        except openai.APIConnectionError:
            raise LLMError(f"cannot reach the LLM at {self._host}") from None
        except openai.APIStatusError as exc:
            raise LLMError(f"LLM server {self._host} answered HTTP {exc.status_code}: "
                           f"{redact(_message(exc), self._secrets)}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # replies the SDK could not read
            return _Attempt(None, "malformed reply: " + _first_line(redact(str(exc), self._secrets)))
        tokens_in, tokens_out = _usage(out["raw"])
        if out["parsed"] is None:
            error = out.get("parsing_error")
            problem = _first_line(redact(str(error), self._secrets)) if error else "the reply held no structured output"
            return _Attempt(None, problem, tokens_in, tokens_out)
        return _Attempt(out["parsed"], "", tokens_in, tokens_out)


@dataclass(frozen=True)
class _Attempt:
    value: BaseModel | None
    problem: str
    tokens_in: int = 0
    tokens_out: int = 0

    def reply(self, requests: int, earlier: "_Attempt | None" = None) -> Reply:
        before_in, before_out = (earlier.tokens_in, earlier.tokens_out) if earlier else (0, 0)
        assert self.value is not None
        return Reply(self.value, requests, self.tokens_in + before_in, self.tokens_out + before_out)


def _usage(raw: Any) -> tuple[int, int]:
    usage = getattr(raw, "usage_metadata", None) or {}
    if usage:
        return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return 0, estimate_tokens(str(getattr(raw, "content", "") or ""))


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or exc.message or "no message")[:300]


def make_provider(settings: Settings, run_cpu: CpuRunner | None = None) -> Provider:
    """The provider the settings ask for."""
    if settings.llm is LLMKind.EXTRACTIVE:
        return ExtractiveProvider(run_cpu)
    if not settings.llm_base_url and settings.llm is LLMKind.SIMULATE:
        raise LLMError("the simulator is not running (no base URL)")
    return ChatProvider(settings)
