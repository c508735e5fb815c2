"""Reading what an OpenAI-compatible server sent back: a reply's text, JSON and usage, and an error's gist."""

from __future__ import annotations

import json
import os

import openai
from pydantic import ValidationError

from .capped import gist

__all__ = ["status_kind", "wants_completion_tokens", "body_text", "is_malformed", "first_line", "cause_of",
           "error_message"]


def status_kind(status: int) -> str:
    """How alike two error statuses are: 4xx codes each say something of their own, 5xx all say 'server error'."""
    return "HTTP 5xx" if status >= 500 else f"HTTP {status}"


def wants_completion_tokens(status: int, message: str) -> bool:
    """True for "max_tokens is not supported with this model; use max_completion_tokens instead"."""
    return status == 400 and "max_completion_tokens" in message and "max_tokens" in message.replace(
        "max_completion_tokens", "")


def body_text(exc: openai.APIStatusError) -> str:
    """The whole error reply as text (llama-server puts n_ctx and n_prompt_tokens beside the message)."""
    try:
        return json.dumps(exc.body) if exc.body is not None else str(exc.message)
    except (TypeError, ValueError):
        return str(exc.message)


def is_malformed(error: object) -> bool:
    """True when the reply was not JSON at all (cut short or garbled), as opposed to JSON of the wrong shape."""
    if isinstance(error, ValidationError):
        return all(e.get("type") == "json_invalid" for e in error.errors())
    return isinstance(error, json.JSONDecodeError)


def first_line(text: str) -> str:
    """An error's text on one line (a server's multi-line validation error keeps its detail), cut at 300."""
    return " ".join(text.split())[:300]


def cause_of(exc: BaseException) -> str:
    """What went wrong under the SDK's connection error: the reason the system gave ("connection refused"),
    the reason itself when a reply was cut at the size cap (analysis/capped.py), else the innermost type."""
    link: BaseException | None = exc.__cause__ or exc.__context__
    if link is None:
        return "no response"
    innermost = link
    while link is not None:  # the cap's own error, or the system's, may sit deep in the chain
        reason = " ".join(str(link).split())
        if "larger than" in reason and "not read further" in reason:
            return f"{type(link).__name__}: {reason[:160]}"
        if isinstance(link, OSError) and link.errno:
            return os.strerror(link.errno).lower()
        innermost = link
        link = link.__cause__ or link.__context__
    return type(innermost).__name__


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = error.get("message") if isinstance(error, dict) else None
    if not message and isinstance(body.get("detail"), str):  # FastAPI's servers: {"detail": "Not Found"}
        message = body["detail"]
    if not message and not isinstance(exc.body, dict):  # an HTML error page, plain text: its gist
        try:
            message = gist(exc.response.text, 200)
        except Exception:  # noqa: BLE001 - a body that cannot be read says nothing more
            message = None
    return str(message or exc.message or "no message")[:300]
