"""A chat-completions request as it goes on the wire, and its reply read back, as plain data.

The structure a method asks for is built once per schema, so a request costs the client its HTTP and one
pydantic validation. LangChain's structured-output wrapper cost about 7 ms of CPU a request, and a
bound ChatOpenAI about 4 ms; this path costs about 1.5 ms (docs/benchmarks.md, "The client's own cost").
The bodies are the ones ChatOpenAI sent for each method, so servers see the same requests as before."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from ..config import StructuredMethod
from ..core.queueing import ProbeStream
from ..tokens import estimate_tokens
from .replies import is_malformed
from .tolerant import tolerant_parse

__all__ = ["request_body", "ChatReply", "read_reply", "read_stream", "validated", "streamed", "Assembled"]

_ROLES = {"human": "user", "ai": "assistant"}


def request_body(model: str, messages: list[tuple[str, str]], schema: type[BaseModel] | None,
                 method: StructuredMethod, limit_field: str | None = None, limit: int = 0) -> dict[str, Any]:
    """The JSON body of one chat completion: `messages` as (role, text), asked for `schema` by `method`
    (plain text when `schema` is None), with the answer limit `limit` in `limit_field` when both are set."""
    body: dict[str, Any] = {"model": model, "stream": False,
                            "messages": [{"role": _ROLES.get(role, role), "content": text} for role, text in messages]}
    if schema is not None:
        body.update(_structure(schema, method))
    if limit_field and limit:
        body[limit_field] = limit
    return body


def streamed(body: dict[str, Any]) -> dict[str, Any]:
    """`body` asked to be streamed, with the usage in the last event."""
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


class Assembled:
    """The events of a streamed chat completion put back together as the completion's JSON (read_reply's
    input): the text and each tool call's arguments joined, the finish reason, the refusal and the usage."""

    def __init__(self) -> None:
        self.events = 0
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._arguments: dict[int, list[str]] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def feed(self, event: Any) -> None:
        """Take one event's JSON (a chunk)."""
        if not isinstance(event, dict):
            raise ValueError(f"a streamed event is a JSON object, not {type(event).__name__}")
        self.events += 1
        if event.get("usage"):
            self._usage = event["usage"]
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            self._text.append(_text(delta.get("content")))
            self._refusal.append(str(delta.get("refusal") or ""))
            for call in delta.get("tool_calls") or []:
                arguments = _arguments(call)
                if arguments:
                    self._arguments.setdefault(int(call.get("index") or 0), []).append(arguments)
            self._finish = choice.get("finish_reason") or self._finish

    def completion(self) -> dict[str, Any]:
        if not self.events:
            raise ValueError("the event stream ended before any event")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text),
                                   "refusal": "".join(self._refusal) or None}
        if self._arguments:
            message["tool_calls"] = [{"type": "function", "function": {"arguments": "".join(parts)}}
                                     for _, parts in sorted(self._arguments.items())]
        data: dict[str, Any] = {"choices": [{"index": 0, "message": message, "finish_reason": self._finish}]}
        if self._usage:
            data["usage"] = self._usage
        return data


@functools.cache
def _structure(schema: type[BaseModel], method: StructuredMethod) -> dict[str, Any]:
    """What asks a server for `schema` by `method`: a strict response format (as the SDK's parse() sends
    it), one forced tool, or JSON mode (the schema then goes in the prompt: prompts.with_schema)."""
    if method is StructuredMethod.FUNCTION_CALLING:
        tool = convert_to_openai_tool(schema)
        return {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": tool["function"]["name"]}},
                "parallel_tool_calls": False}
    if method is StructuredMethod.JSON_MODE:
        return {"response_format": {"type": "json_object"}}
    strict = openai.pydantic_function_tool(schema)["function"]["parameters"]
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"schema": strict, "name": schema.__name__, "strict": True}}}


@dataclass(frozen=True, slots=True)
class ChatReply:
    """What a chat completion brought back: its text, the JSON its structured answer is in (the first tool
    call's arguments, else the text), why it stopped, its usage (estimated when the server sent none), the
    model's refusal, and the reply's headers."""

    text: str
    json_text: str
    finish: str
    tokens_in: int
    tokens_out: int
    refusal: str
    headers: dict[str, str]

    @property
    def cut(self) -> bool:
        """The reply stopped at the answer limit: what came is not whole."""
        return self.finish == "length"

    @property
    def problem(self) -> str:
        """Why the reply holds no whole answer whatever its text ('' when it may): cut at the answer limit,
        filtered, or refused."""
        if self.refusal:
            return f"the model refused: {self.refusal}"
        if self.cut:
            return "the reply was cut short at the answer limit (finish_reason length)"
        if self.finish == "content_filter":
            return "the reply was stopped by the server's content filter"
        return ""


def read_reply(data: Any, headers: dict[str, str]) -> ChatReply:
    """The reply in a chat completion's JSON `data`; raises KeyError, IndexError, TypeError or ValueError
    when it is not one."""
    if not isinstance(data, dict):
        raise ValueError(f"a chat completion is a JSON object, not {type(data).__name__}")
    choice = data["choices"][0]
    message = choice.get("message") or {}
    text = _text(message.get("content"))
    json_text = text
    for call in message.get("tool_calls") or []:
        arguments = _arguments(call)
        if arguments is not None:
            json_text = arguments
            break
    usage = data.get("usage") or {}
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if not usage:
        tokens_out = estimate_tokens(json_text)
    return ChatReply(text, json_text, str(choice.get("finish_reason") or ""), tokens_in, tokens_out,
                     str(message.get("refusal") or ""), headers)


async def read_stream(response: Any, watch: ProbeStream) -> ChatReply:
    """The reply in a streamed response (server-sent events), `watch` told when its first event arrives; a
    server that ignored "stream" and answered whole is read as such."""
    headers = dict(response.headers)
    if "text/event-stream" not in headers.get("content-type", ""):
        return read_reply(json.loads(await response.read()), headers)
    events = Assembled()
    async for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        if not events.events:
            watch.first()
        events.feed(json.loads(data))
    return read_reply(events.completion(), headers)


def validated(schema: type[BaseModel], reply: ChatReply) -> tuple[BaseModel | None, str, bool]:
    """The reply's answer as `schema` (read loosely when it does not validate as it is: tolerant.py), else
    None with the problem and whether the reply was not JSON at all (cut short, garbled, empty)."""
    if reply.problem and not reply.cut:  # refused or filtered
        return None, reply.problem, False
    try:
        return schema.model_validate_json(reply.json_text), "", False
    except ValidationError as exc:
        # "Summary" for "summary", fences, prose, a number out of range, a list item missing a field: a
        # grammar (llama.cpp's, for tools or json_schema) keeps the shape but not every rule
        parsed = tolerant_parse(schema, reply.json_text)
        if parsed is not None:
            return parsed, "", False
        if reply.cut:
            return None, reply.problem, True
        if not reply.json_text.strip():
            return None, "the reply held no structured output", True
        return None, str(exc), is_malformed(exc)


def _arguments(call: Any) -> str | None:
    """A tool call's arguments as JSON text (a few servers send them as an object), or None."""
    arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
    if isinstance(arguments, dict):
        return json.dumps(arguments)
    return arguments if isinstance(arguments, str) else None


def _text(content: Any) -> str:
    """A message's text (content may be a string or a list of parts)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")
