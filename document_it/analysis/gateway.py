"""The one door to an LLM: every prompt passes here, capped and counted."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from pydantic import BaseModel

from .prompts import Context, Task
from .providers import Provider

__all__ = ["Gateway", "LLMStats"]


@dataclass
class LLMStats:
    """What the gateway spent: requests, prompts and tokens."""

    requests: int = 0
    prompts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    failures: int = 0
    max_in_flight: int = 0

    def add(self, other: "LLMStats") -> None:
        """Fold another process's figures into these."""
        for name in ("requests", "prompts", "tokens_in", "tokens_out", "failures"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_in_flight = max(self.max_in_flight, other.max_in_flight)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Gateway:
    """Asks the provider for one task's answer, never more than `max_concurrency` at once."""

    def __init__(self, provider: Provider, max_concurrency: int) -> None:
        self.provider = provider
        self.max_concurrency = max_concurrency
        self.stats = LLMStats()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._in_flight = 0

    async def __aenter__(self) -> "Gateway":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.provider.aclose()

    async def ask(self, task: Task, context: Context) -> BaseModel:
        """The validated answer to `task` for `context`; raises LLMError when there is none."""
        self.stats.prompts += 1
        async with self._slots:
            self._in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
            try:
                reply = await self.provider.complete(task, context)
            except Exception:
                self.stats.failures += 1
                raise
            finally:
                self._in_flight -= 1
        self.stats.requests += reply.requests
        self.stats.tokens_in += reply.tokens_in
        self.stats.tokens_out += reply.tokens_out
        return reply.value
