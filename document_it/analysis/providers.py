"""Who answers a prompt: an OpenAI-compatible chat model, or the offline extractive analyser."""

from __future__ import annotations

import functools
import json
import logging
import math
import ssl
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import urlparse

import httpx2
import openai
from pydantic import BaseModel

from ..config import PLACEHOLDER_KEY, LLMKind, Settings, StructuredMethod
from ..core.queueing import ProbeStream
from ..core.ratelimit import retry_after_seconds
from ..core.timeouts import AttemptLimit
from ..errors import LLMAuthError, LLMClientError, LLMError, LLMTransientError, LLMUnusableError
from ..models import ParsedDoc
from ..redact import redact
from ..tokens import estimate_tokens
from . import extractive
from .capped import CappedTransport, watch_outbound
from .context import STORE_NAME as WINDOW_STORE
from .context import ContextWindow, LLMContextError, is_context_error
from .negotiate import STORE_NAME, MethodChoice, refuses_method
from .prompts import (ChunkInput, Context, Question, Task, batch_items, material_budget, page_fits, render,
                      render_batch, schema_for, with_schema)
from .schemas import answer_tokens
from .replies import body_text, cause_of, error_message, first_line, status_kind, wants_completion_tokens
from .wire import ChatReply, read_reply, read_stream, request_body, streamed, validated

__all__ = ["Reply", "Attempt", "Provider", "ChatProvider", "ExtractiveProvider", "make_provider", "Messages",
           "CpuRunner"]

log = logging.getLogger(__name__)

CpuRunner = Callable[..., Awaitable[Any]]
Messages = list[tuple[str, str]]


@dataclass(frozen=True)
class Reply:
    """A validated answer from a provider that needs no HTTP (the offline analyser)."""

    value: BaseModel


@dataclass(frozen=True)
class Attempt:
    """What one HTTP request to a model brought back: a valid answer, or the problem with it."""

    value: BaseModel | None
    problem: str = ""
    malformed: bool = False  # the reply was not even JSON (cut short, garbled): worth a plain retry
    tokens_in: int = 0
    tokens_out: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class Provider(Protocol):
    """Answers one task for one context."""

    name: str
    is_llm: bool

    async def aclose(self) -> None: ...


class ExtractiveProvider:
    """The offline analyser; CPU work, so it runs where the mode runs CPU work (a process pool in hybrid)."""

    name = "extractive"
    is_llm = False

    def __init__(self, run_cpu: CpuRunner | None = None) -> None:
        self._run_cpu = run_cpu

    async def complete(self, question: Question, context: Context) -> Reply:
        """The offline answer to `question`; made as plain data where the CPU work runs (a combined answer's
        model is built per process, so it cannot travel back pickled) and validated here."""
        if self._run_cpu is None:
            data = extractive.answer_data(question, context)
        else:
            data = await self._run_cpu(extractive.answer_data, question, context)
        return Reply(value=schema_for(question).model_validate(data))

    async def aclose(self) -> None:
        """Nothing to release."""


class ChatProvider:
    """Any OpenAI-compatible chat model through the openai SDK, asked for structured output; one request per
    send()."""

    is_llm = True

    def __init__(self, settings: Settings) -> None:
        self.name = settings.provider_name
        self.host = urlparse(settings.llm_base_url or "https://api.openai.com").netloc.rpartition("@")[2]
        server = _server_key(settings.llm_base_url or "https://api.openai.com/v1", settings.model)
        self.choice = MethodChoice(settings.structured_output, settings.state_dir / STORE_NAME, server)
        self.window = ContextWindow(settings.context_tokens, settings.state_dir / WINDOW_STORE, server)
        self._secrets = (settings.api_key,)
        self._settings = settings
        self._http: httpx2.AsyncClient | None = None
        self._sdk: openai.AsyncOpenAI | None = None
        self.streams = True  # the start probe's requests are streamed, until the server refuses a stream
        # the answer limit: sent to the servers people run (small windows, small models that ramble); not to
        # OpenAI itself, whose windows are large and whose reasoning models need room beyond the answer
        self._limit_field: str | None = "max_tokens" if settings.llm_base_url else None

    def _client(self) -> openai.AsyncOpenAI:
        """The SDK client this provider sends on, made on the first request (a fully cached run needs none)."""
        if self._sdk is not None:
            return self._sdk
        settings = self._settings
        # our own HTTP client, bound to this run's event loop (the SDK's shared default outlives loops)
        # the gateway times each attempt itself, stretching the limit for a server that is slow but alive;
        # the client's own limit is that stretch's ceiling (and a connect limit for a server that is gone)
        timeout = httpx2.Timeout(AttemptLimit(settings.request_timeout).ceiling,
                                connect=min(10.0, settings.request_timeout))
        limits = httpx2.Limits(max_connections=settings.max_concurrency,
                              max_keepalive_connections=settings.max_concurrency)
        # replies read up to a cap; redirects not followed (httpx's default), so the key goes nowhere else
        self._http = httpx2.AsyncClient(timeout=timeout, transport=CappedTransport(httpx2.AsyncHTTPTransport(
            limits=limits, verify=_tls_context(settings.llm_base_url))), follow_redirects=False)
        # retries are the gateway's (max_retries=0): Retry-After and backoff are honoured in one place
        self._sdk = openai.AsyncOpenAI(api_key=settings.api_key or PLACEHOLDER_KEY, base_url=settings.llm_base_url,
                                       max_retries=0, timeout=timeout, http_client=self._http)
        return self._sdk

    def messages(self, question: Question, context: Context) -> Messages:
        """The prompt for `question`, within what the context window leaves it beside room for the answer
        (json mode adds the schema when it sends)."""
        return render(question, context, self._room(question), _schema_tokens(schema_for(question)))

    def fits_whole(self, question: Question, context: Context, scale: float | None = None) -> bool:
        """True when `context` goes into one `question` prompt uncut (a topic is always cut to fit); at `scale`
        when given (what would fit were the server to count that way)."""
        if isinstance(context, ChunkInput):
            return estimate_tokens(context.text) <= self.material_room(question)
        if not isinstance(context, ParsedDoc):
            return True
        return page_fits(context, question, self._room(question, scale), _schema_tokens(schema_for(question)))

    def material_room(self, question: Question) -> int:
        """The estimated tokens of material (page text, a chunk) one prompt of `question` may carry."""
        return (material_budget(question, self._room(question), _schema_tokens(schema_for(question))) or 0) - 24

    def _room(self, question: Question, scale: float | None = None) -> int:
        """The estimated prompt tokens one request of `question` may take."""
        return self.window.prompt_room(1, answer_tokens(question), scale)

    @staticmethod
    def repair(messages: Messages, problem: str) -> Messages:
        """The same prompt plus a note on what was wrong with the last answer."""
        return messages + [("user", f"Your previous reply was not valid: {problem}\n"
                                    "Answer again with only the structured output the schema asks for.")]

    async def aclose(self) -> None:
        """Close this provider's connections."""
        if self._http is not None:
            await self._http.aclose()

    def batch_messages(self, question: Question, items: list[tuple[str, Context]]) -> Messages:
        """One prompt for several items of `question`, each cut as it would be alone."""
        return render_batch(question, items, self._room(question), _schema_tokens(schema_for(question)))

    def batch_fits(self, question: Question, prompt_tokens: int, answers: int) -> bool:
        """True when `answers` prompts of `prompt_tokens` estimated tokens in all fit one batched request."""
        return self.window.fits(prompt_tokens + _schema_tokens(schema_for(question)), answers,
                                answer_tokens(question))

    def _limit_size(self, max_tokens: int) -> int:
        """The answer limit to send, rounded down to 128s so a few model copies serve; 0 when none is sent."""
        if self._limit_field is None:
            return 0
        return max(16, max_tokens // 128 * 128) if max_tokens >= 128 else max_tokens

    async def send(self, task: Question, messages: Messages, schema: type[BaseModel] | None = None,
                   watch: ProbeStream | None = None) -> Attempt:
        """One request. Raises LLMAuthError, LLMTransientError (worth a retry) or LLMError (not).

        While the structured-output method is being negotiated (--structured-output auto), a refusal or a
        reply that is not JSON at all moves on to the next method and asks again at once. With `watch` (a
        start-probe request) the reply is streamed and the watch told of its first token; a server that
        refuses streaming is asked again at once without, and never streamed to again."""
        schema, batch = _answered_by(task, schema)
        method = self.choice.current
        body, prompt, max_tokens = self.request(task, messages, schema)
        streaming = watch is not None and self.streams
        outbound = watch_outbound()
        try:
            try:
                # the SDK's own request (auth, base URL, errors) with a body built once per schema: its typed
                # create() and parse() cost more CPU than the request itself (wire.py)
                if streaming:
                    assert watch is not None
                    reply = await self._streamed(body, watch)
                else:
                    response = await self._client().post("/chat/completions", body=body, cast_to=httpx2.Response)
                    reply = read_reply(response.json(), dict(response.headers))
            except Exception as exc:
                if not outbound.left and not isinstance(exc, (openai.APIStatusError, openai.APITimeoutError)):
                    raise self._our_fault(exc) from None  # nothing reached the server: it cannot be its fault
                raise
        except openai.APIStatusError as exc:
            if streaming and (exc.status_code >= 500 or "stream" in error_message(exc).lower()):
                # it refused the stream, or failed on it: whole replies from now on (the retry of a 5xx too)
                self.streams = False
                if exc.status_code < 500:
                    return await self.send(task, messages, schema)
            if self._limit_field == "max_tokens" and wants_completion_tokens(exc.status_code, error_message(exc)):
                self._limit_field = "max_completion_tokens"  # a newer API behind the base URL
                return await self.send(task, messages, schema)
            if is_context_error(exc.status_code, body_text(exc)):
                sent_limit = max_tokens if self._limit_field else 0
                raise self._too_long(exc, prompt, sent_limit, batch, answer_tokens(task)) from None
            if task is not Task.TEXT and refuses_method(exc.status_code, error_message(exc)):
                if self.choice.refused(method, f"HTTP {exc.status_code}: {self._clean(error_message(exc))}"):
                    return await self.send(task, messages, schema)
                raise self._refusal(exc, method) from None
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            raise LLMTransientError(f"LLM request to {self.host} timed out", timed_out=True) from None
        except openai.APIConnectionError as exc:
            self.streams = self.streams and not streaming  # a stream cut short: whole replies from now on
            raise LLMTransientError(f"connection to the LLM at {self.host} failed: {cause_of(exc)}",
                                    kind="no connection") from None
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:  # unreadable replies
            self.streams = self.streams and not streaming
            raise LLMTransientError(f"unreadable reply from {self.host} ({outbound.described()}): "
                                    f"{type(exc).__name__}: {self._clean(exc)}", kind="not JSON") from None
        # the schema is in the messages in json mode; a tool or a response format a server may not count
        uncertain = _schema_tokens(schema) if schema is not None and method is not StructuredMethod.JSON_MODE else 0
        self.window.observe(prompt, reply.tokens_in, uncertain)
        if schema is None:
            return Attempt(reply.text, "", False, reply.tokens_in, reply.tokens_out, reply.headers)  # type: ignore[arg-type]
        parsed, problem, malformed = validated(schema, reply)
        if parsed is None:
            # a reply with no JSON object in it says the server ignored the method; one cut short (a small model
            # rambling to the answer limit) or garbled inside its JSON says nothing of the method
            shapeless = malformed and not reply.cut and not reply.json_text.lstrip().startswith("{")
            if shapeless and self.choice.refused(method, "the reply held no structured output"):
                return await self.send(task, messages, schema)
            return Attempt(None, self._clean(problem), malformed, reply.tokens_in, reply.tokens_out, reply.headers)
        self.choice.worked(method)
        return Attempt(parsed, "", False, reply.tokens_in, reply.tokens_out, reply.headers)

    def request(self, task: Question, messages: Messages,
                schema: type[BaseModel] | None = None) -> tuple[dict[str, Any], int, int]:
        """The JSON body of one request of `messages` as it leaves now (the structured-output method in use, the
        answer limit), its estimated prompt tokens and answer limit; raises LLMContextError when the window
        cannot hold it. The live path sends it; the Batch API's path writes it as a line."""
        schema, _ = _answered_by(task, schema)
        method = self.choice.current
        prompt, max_tokens = self.work(task, messages, schema)
        if not self.window.holds(prompt):
            # built before the window learned its size, or too big anyway: cut or split, never sent as it is
            raise LLMContextError(f"the model's context window ({self.window.tokens:,} tokens) cannot hold this "
                                  f"prompt (about {math.ceil(prompt * self.window.scale):,} tokens)", shrunk=True)
        sent = with_schema(messages, schema) if schema is not None and method is StructuredMethod.JSON_MODE \
            else messages
        body = request_body(self._settings.model, sent, schema, method, self._limit_field,
                            self._limit_size(max_tokens))
        return body, prompt, max_tokens

    @staticmethod
    def read_answer(completion: Any, schema: type[BaseModel] | None) -> Attempt:
        """A chat completion's JSON that came back another way (a Batch API output line) read as a live reply
        is: its text when `schema` is None, else its answer validated (tolerantly) against `schema`. Raises
        ValueError, KeyError, TypeError or IndexError when it is not a chat completion."""
        reply = read_reply(completion, {})
        if schema is None:
            return Attempt(reply.text, reply.problem, False, reply.tokens_in, reply.tokens_out)  # type: ignore[arg-type]
        parsed, problem, malformed = validated(schema, reply)
        return Attempt(parsed, problem, malformed, reply.tokens_in, reply.tokens_out)

    async def _streamed(self, body: dict[str, Any], watch: ProbeStream) -> ChatReply:
        """The reply to `body` streamed (server-sent events), the watch told when its first event arrives. A
        server that ignores "stream" and answers whole is read as such."""
        kwargs = streamed(body)
        async with self._client().chat.completions.with_streaming_response.create(**kwargs) as response:
            try:
                return await read_stream(response, watch)
            except httpx2.TransportError as exc:  # cut short, or over the size cap: as the SDK says it of a request
                raise openai.APIConnectionError(request=response.http_request) from exc

    def work(self, task: Question, messages: Messages, schema: type[BaseModel] | None = None) -> tuple[int, int]:
        """What one request of `messages` asks of the server: its estimated prompt tokens (schema included) and
        the answer limit, the room kept for the answers asked, never more than the window leaves (a small model
        that rambles stops there)."""
        schema, batch = _answered_by(task, schema)
        prompt = _prompt_tokens(messages) + (_schema_tokens(schema) if schema is not None else 0)
        room = self.window.answer_room(batch_items(messages) if batch else 1, answer_tokens(task))
        return prompt, min(self.window.max_tokens(prompt), room)

    @property
    def self_hosted(self) -> bool:
        """True for a server at a base URL (sent the answer limit; often a small model on a CPU)."""
        return self._limit_field == "max_tokens" or bool(self._settings.llm_base_url)

    def _our_fault(self, exc: Exception) -> LLMClientError:
        """An error raised on this machine before the request left: a bug or a broken install."""
        where = f"{type(exc).__module__.split('.')[0]}.{type(exc).__name__}"
        return LLMClientError(f"the request to the LLM could not be built, so nothing was sent to {self.host} "
                              f"({where}: {self._clean(exc)}); this is a fault on this machine (a bug, or "
                              "installed packages other than requirements.txt pins), not the server's")

    def _refusal(self, exc: openai.APIStatusError, method: StructuredMethod) -> LLMUnusableError:
        """The server does not take `method` and there is no other to try: no request of the run can succeed,
        so the run stops (exit 2) rather than fail every page alike."""
        reason = f"HTTP {exc.status_code}: {self._clean(error_message(exc))}"
        if self.choice.forced:
            return LLMUnusableError(f"{self.host} does not take --structured-output {method.value} ({reason}); "
                            "--structured-output auto finds a method it supports")
        return LLMUnusableError(f"{self.host} refused every structured-output method ({'; '.join(self.choice.refusals)})")

    def _too_long(self, exc: openai.APIStatusError, prompt: int, max_tokens: int, batch: bool,
                  each: int) -> LLMContextError:
        """The window learns from a context-length refusal; `resend` when the same prompt now fits as it is
        (only its answer limit was too large)."""
        shrunk = self.window.learn(body_text(exc), prompt, max_tokens)
        error = LLMContextError(f"{self.host} refused the request as longer than the model's context "
                                f"(HTTP {exc.status_code}: {self._clean(error_message(exc))})", shrunk=shrunk,
                                resend=shrunk and not batch and self.window.fits(prompt, 1, each))
        return error

    def _status_error(self, exc: openai.APIStatusError) -> LLMError:
        status = exc.status_code
        message = redact(error_message(exc), self._secrets)
        headers = dict(exc.response.headers) if exc.response is not None else {}
        if status == 401:
            return LLMAuthError(f"API key rejected by {self.host} (HTTP 401): {message}")
        if status == 403:
            return LLMAuthError(f"API key not allowed to use this model at {self.host} (HTTP 403): {message}")
        text = f"LLM server {self.host} answered HTTP {status}: {message}"
        if status in (408, 409, 429) or status >= 500:
            never = headers.get("x-should-retry", "").lower() == "false"
            if not never:
                return LLMTransientError(text, status=status, retry_after=retry_after_seconds(headers),
                                         rate_limited=status == 429, headers=headers, kind=status_kind(status))
        return LLMError(text, kind=status_kind(status))

    def _clean(self, error: object) -> str:
        return first_line(redact(str(error), self._secrets))


def _answered_by(task: Question, schema: type[BaseModel] | None) -> tuple[type[BaseModel] | None, bool]:
    """The schema a request of `task` is answered by (`schema`, else the task's own; plain text has none) and
    whether it is a batch's (a schema other than the task's own)."""
    if task is Task.TEXT:
        return schema, False
    return schema or schema_for(task), schema is not None and schema is not schema_for(task)


def _tls_context(base_url: str | None) -> ssl.SSLContext:
    """The model's client's TLS context: httpx2's usual one, and for a plain-http server one with no
    certificates to load (this client never speaks TLS to it: it follows no redirect; any TLS peer would be
    refused, as nothing could verify it)."""
    if base_url and urlparse(base_url).scheme == "http":
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return httpx2.create_ssl_context()


def _server_key(base_url: str, model: str) -> str:
    """Whom a remembered finding belongs to: the base URL without credentials or query, and the model."""
    parts = urlparse(base_url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path} {model}"


@functools.cache
def _schema_tokens(schema: type[BaseModel]) -> int:
    """What the schema adds to a request, spelled out as chat templates spell a tool or a response format (with
    spaces; json mode spells it tighter) and with what the request wraps it in (its name, strict mode)."""
    return estimate_tokens(json.dumps(schema.model_json_schema())) + 40


def _prompt_tokens(messages: Messages) -> int:
    return estimate_tokens("".join(text for _, text in messages)) + 4 * len(messages)


def make_provider(settings: Settings, run_cpu: CpuRunner | None = None) -> ChatProvider | ExtractiveProvider:
    """The provider the settings ask for."""
    if settings.llm is LLMKind.EXTRACTIVE:
        return ExtractiveProvider(run_cpu)
    if not settings.llm_base_url and settings.llm is LLMKind.SIMULATE:
        raise LLMError("the simulator is not running (no base URL)")
    return ChatProvider(settings)
