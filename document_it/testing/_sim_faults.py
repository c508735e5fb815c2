"""Error replies, token-bucket rate limits and seeded fault injection for the LLM simulator."""

from __future__ import annotations

import argparse
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "FAULT_KINDS",
    "ApiError",
    "Fault",
    "FaultPlan",
    "RateLimiter",
    "Reply",
    "add_cli_arguments",
    "cli_kwargs",
    "completion_budget",
    "fault_429",
    "format_duration",
    "parse_body",
    "retry_headers",
    "server_error",
    "truncate_message",
]

FAULT_KINDS = ("429", "500", "hang", "malformed", "reset")
_EPSILON = 1e-9
_CLI_NAMES = ("rpm", "tpm", "burst_seconds", "fail_429", "fault_retry_after_s", "fail_500", "hang", "hang_seconds",
              "malformed", "reset", "seed", "announce_limits")


class ApiError(Exception):
    """An error reply in OpenAI's error shape, with optional extra headers."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        self.headers = dict(headers or {})


@dataclass
class Reply:
    """A chat reply to send, or a connection to drop without reply (`drop` = "close" or "reset")."""

    status: int = 0
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: str | None = None


class Fault(NamedTuple):
    """One drawn fault: its stats key (one of FAULT_KINDS) and the HTTP status it answers with (0 = none)."""

    kind: str
    status: int


def format_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's x-ratelimit-reset-* headers do: 250ms, 1.2s, 1m3s, 1h0m5s."""
    ms = max(0, math.ceil(seconds * 1000 - _EPSILON))
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    prefix = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return prefix + f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"


def retry_headers(seconds: float) -> dict[str, str]:
    """Return Retry-After (whole seconds, rounded up, at least 1) and retry-after-ms (rounded up, at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds - _EPSILON))),
            "retry-after-ms": str(max(1, math.ceil(seconds * 1000 - _EPSILON)))}


class _Bucket:
    """A continuously refilled token bucket: `per_minute / 60` per second, holding at most `capacity`."""

    def __init__(self, per_minute: float, burst_seconds: float, now: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        """Add what has trickled in since the last call."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Return seconds until the bucket can pay `cost` (capped at capacity: a full bucket pays anything)."""
        need = min(cost, self.capacity)
        return 0.0 if self.level + _EPSILON >= need else (need - self.level) / self.rate

    def headers(self, suffix: str) -> dict[str, str]:
        """Return the x-ratelimit-{limit,remaining,reset}-`suffix` headers."""
        return {f"x-ratelimit-limit-{suffix}": f"{self.limit:g}",
                f"x-ratelimit-remaining-{suffix}": str(max(0, math.floor(self.level + _EPSILON))),
                f"x-ratelimit-reset-{suffix}": format_duration((self.capacity - self.level) / self.rate)}


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits as continuously refilled token buckets (0 = unlimited)."""

    def __init__(self, rpm: float = 0, tpm: float = 0, burst_seconds: float = 1.0, announce: bool = True) -> None:
        if rpm < 0 or tpm < 0 or burst_seconds <= 0:
            raise ValueError("rpm and tpm must be >= 0 and burst_seconds > 0")
        now = time.monotonic()
        self._announce = announce  # False: no x-ratelimit-* headers, a 429 says only Retry-After
        self._lock = threading.Lock()
        self._requests = _Bucket(rpm, burst_seconds, now) if rpm > 0 else None
        self._tokens = _Bucket(tpm, burst_seconds, now) if tpm > 0 else None

    def acquire(self, tokens: int, model: str) -> dict[str, str]:
        """Charge one request and `tokens` tokens and return the x-ratelimit-* headers, or raise a 429 ApiError."""
        with self._lock:
            charges = [(b, cost, kind) for b, cost, kind in
                       ((self._requests, 1, "requests"), (self._tokens, tokens, "tokens")) if b is not None]
            for bucket, _, _ in charges:
                bucket.refill(time.monotonic())
            if self._tokens is not None and tokens > self._tokens.limit:
                raise self._too_large(tokens, model)
            wait, kind, cost = max(((b.wait_for(c), k, c) for b, c, k in charges), default=(0.0, "", 0))
            if wait > 0:
                bucket = self._requests if kind == "requests" else self._tokens
                message = (f"Rate limit reached for {kind} per min ({'RPM' if kind == 'requests' else 'TPM'}) on "
                           f"{model}: Limit {bucket.limit:g}, Requested {cost}. "  # type: ignore[union-attr]
                           f"Please try again in {format_duration(wait)}.")
                raise ApiError(429, message, kind=kind, code="rate_limit_exceeded",
                               headers={**self._headers(), **retry_headers(wait)})
            for bucket, cost, _ in charges:
                bucket.level -= cost
            return self._headers()

    def headers(self) -> dict[str, str]:
        """Return the current x-ratelimit-* headers without charging anything."""
        with self._lock:
            for bucket in (self._requests, self._tokens):
                if bucket is not None:
                    bucket.refill(time.monotonic())
            return self._headers()

    def _headers(self) -> dict[str, str]:
        """Return x-ratelimit-* headers for the enabled buckets (caller holds the lock)."""
        out: dict[str, str] = {}
        if not self._announce:
            return out
        if self._requests is not None:
            out.update(self._requests.headers("requests"))
        if self._tokens is not None:
            out.update(self._tokens.headers("tokens"))
        return out

    def _too_large(self, tokens: int, model: str) -> ApiError:
        """Return the permanent 429 for a request costing more than a whole minute of tokens (no Retry-After)."""
        limit = self._tokens.limit  # type: ignore[union-attr]
        message = (f"Request too large for {model} on tokens per min (TPM): Limit {limit:g}, Requested {tokens}. "
                   "The input or output tokens must be reduced in order to run successfully.")
        return ApiError(429, message, kind="tokens", code="rate_limit_exceeded",
                        headers={**self._headers(), "x-should-retry": "false"})


class FaultPlan:
    """Seeded per-request fault draws: exactly one `random()` per chat request, in arrival order."""

    def __init__(self, *, fail_429: float = 0, fail_500: float = 0, hang: float = 0, malformed: float = 0,
                 reset: float = 0, seed: int = 0) -> None:
        self.rates = dict(zip(FAULT_KINDS, (float(fail_429), float(fail_500), float(hang), float(malformed),
                                            float(reset))))
        if any(not 0 <= r <= 1 for r in self.rates.values()) or sum(self.rates.values()) > 1 + _EPSILON:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1: {self.rates}")
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server_errors = 0

    def draw(self) -> Fault | None:
        """Return this request's fault (injected 5xx alternate 500, 503, 500, ...), or None."""
        with self._lock:
            point, total = self._rng.random(), 0.0
            for kind, rate in self.rates.items():
                total += rate
                if point < total:
                    return Fault(kind, self._status(kind))
        return None

    def _status(self, kind: str) -> int:
        """Return the HTTP status a fault answers with (caller holds the lock)."""
        if kind == "500":
            self._server_errors += 1
            return 500 if self._server_errors % 2 else 503
        return {"429": 429, "malformed": 200}.get(kind, 0)


def server_error(status: int) -> ApiError:
    """Return the injected 500/503 error."""
    if status == 503:
        return ApiError(503, "The server is overloaded or not ready yet.", kind="server_error")
    return ApiError(500, "The server had an error while processing your request. Sorry about that!",
                    kind="server_error")


def fault_429(retry_after: float, headers: dict[str, str]) -> ApiError:
    """Return the injected 429 with Retry-After `retry_after` seconds."""
    message = f"Rate limit reached for requests (simulated fault). Please try again in {format_duration(retry_after)}."
    return ApiError(429, message, kind="requests", code="rate_limit_exceeded",
                    headers={**headers, **retry_headers(retry_after)})


def truncate_message(message: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Cut the content (or each tool call's arguments) in half; return (message, delivered text)."""
    if message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            args = call["function"]["arguments"]
            calls.append({**call, "function": {**call["function"], "arguments": args[: len(args) // 2]}})
        return {**message, "tool_calls": calls}, "".join(c["function"]["arguments"] for c in calls)
    content = message.get("content") or ""
    return {**message, "content": content[: len(content) // 2]}, content[: len(content) // 2]


def completion_budget(body: dict[str, Any], estimate: int) -> int:
    """Return the completion tokens the tpm bucket charges: max_completion_tokens/max_tokens if set, else `estimate`."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return estimate


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse and validate a chat-completions request body."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "'messages' must be a non-empty array of message objects.", param="messages")
    return body


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    """Add the rate-limit and fault-injection flags to the simulator's CLI."""
    p.add_argument("--rpm", type=float, default=0, help="requests per minute, token bucket (0 = unlimited)")
    p.add_argument("--tpm", type=float, default=0, help="tokens per minute (prompt + max_tokens), 0 = unlimited")
    p.add_argument("--burst-seconds", type=float, default=1.0, help="bucket size in seconds of refill (at least 1)")
    p.add_argument("--fail-429", type=float, default=0, help="fraction of chat requests answered 429")
    p.add_argument("--fault-retry-after", dest="fault_retry_after_s", type=float, default=1.0,
                   help="Retry-After of injected 429s, seconds")
    p.add_argument("--fail-500", type=float, default=0, help="fraction answered 500/503 (alternating)")
    p.add_argument("--hang", type=float, default=0, help="fraction that hang, then close without a reply")
    p.add_argument("--hang-seconds", type=float, default=120, help="how long a hung request hangs, seconds")
    p.add_argument("--malformed", type=float, default=0, help="fraction answered 200 with content cut in half")
    p.add_argument("--reset", type=float, default=0, help="fraction whose connection is reset without a reply")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    p.add_argument("--hide-limits", dest="announce_limits", action="store_false",
                   help="send no x-ratelimit-* headers (a 429 still carries Retry-After)")


def cli_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Return the SimServer keyword arguments for the flags added by `add_cli_arguments`."""
    return {name: getattr(args, name) for name in _CLI_NAMES}
