"""RequestTracker: every LLM request's life, and what the run spent."""

from __future__ import annotations

import enum
import itertools
import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestStatus", "RequestRecord", "RequestTracker", "Prices", "PRICES_PER_MTOK"]

# USD per million tokens (input, output); a rough public list, overridable with --price-in/--price-out
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
}


class RequestStatus(str, enum.Enum):
    """Where one request is in its life."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Prices:
    """What a million tokens cost, in and out (USD); None when the model's price is unknown."""

    per_mtok_in: float | None
    per_mtok_out: float | None

    @classmethod
    def for_model(cls, model: str, price_in: float | None = None, price_out: float | None = None) -> "Prices":
        known = PRICES_PER_MTOK.get(model) or next(
            (p for name, p in sorted(PRICES_PER_MTOK.items(), key=lambda kv: -len(kv[0]))
             if model.startswith(name)), None)
        return cls(price_in if price_in is not None else (known[0] if known else None),
                   price_out if price_out is not None else (known[1] if known else None))

    def cost(self, tokens_in: int, tokens_out: int) -> float | None:
        if self.per_mtok_in is None or self.per_mtok_out is None:
            return None
        return (tokens_in * self.per_mtok_in + tokens_out * self.per_mtok_out) / 1_000_000


@dataclass
class RequestRecord:
    """One logical request (all its attempts)."""

    id: int
    task: str
    status: RequestStatus = RequestStatus.PENDING
    attempts: int = 0
    rate_limited: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    waited: float = 0.0  # seconds waiting for a slot (window, 429 pause, RPM/TPM buckets), all attempts
    on_wire: float = 0.0  # seconds from sending to the reply (validation included), all attempts
    tokens_in: int = 0
    tokens_out: int = 0
    error: str | None = None


class RequestTracker:
    """Records each request's status, attempts, latency and tokens; summarises them for run.json."""

    def __init__(self, prices: Prices = Prices(None, None)) -> None:
        self.prices = prices
        self.records: dict[int, RequestRecord] = {}
        self.throttled = 0  # 429s so far (the progress line shows it live)
        self._ids = itertools.count(1)

    def new(self, task: str) -> RequestRecord:
        record = RequestRecord(next(self._ids), task)
        self.records[record.id] = record
        return record

    def attempt(self, record: RequestRecord) -> None:
        record.attempts += 1
        record.status = RequestStatus.IN_PROGRESS

    def retrying(self, record: RequestRecord, error: str, rate_limited: bool = False) -> None:
        record.status = RequestStatus.RETRYING
        record.error = error
        record.rate_limited += int(rate_limited)
        self.throttled += int(rate_limited)

    def usage(self, record: RequestRecord, tokens_in: int, tokens_out: int) -> None:
        record.tokens_in += tokens_in
        record.tokens_out += tokens_out

    def finish(self, record: RequestRecord, error: str | None = None) -> None:
        record.status = RequestStatus.FAILED if error else RequestStatus.COMPLETED
        record.error = error
        record.seconds = time.monotonic() - record.started

    @property
    def tokens(self) -> int:
        return sum(r.tokens_in + r.tokens_out for r in self.records.values())

    @property
    def cost(self) -> float | None:
        tokens_in = sum(r.tokens_in for r in self.records.values())
        tokens_out = sum(r.tokens_out for r in self.records.values())
        return self.prices.cost(tokens_in, tokens_out)

    def get_summary(self) -> dict[str, Any]:
        """Counts per status, attempts, 429s, latency percentiles, tokens and estimated cost."""
        records = list(self.records.values())
        done = sorted(r.seconds for r in records if r.status in (RequestStatus.COMPLETED, RequestStatus.FAILED))
        tokens_in = sum(r.tokens_in for r in records)
        tokens_out = sum(r.tokens_out for r in records)
        cost = self.prices.cost(tokens_in, tokens_out)
        return {
            "requests": len(records),
            "by_status": {s.value: sum(r.status is s for r in records) for s in RequestStatus},
            "by_task": dict(sorted(collections.Counter(r.task for r in records).items())),
            "attempts": sum(r.attempts for r in records),
            "retries": sum(max(0, r.attempts - 1) for r in records),
            "rate_limited": sum(r.rate_limited for r in records),
            "latency_s": {"p50": _pct(done, 50), "p95": _pct(done, 95), "max": done[-1] if done else 0.0},
            "slot_wait_s": round(sum(r.waited for r in records), 3),
            "on_wire_s": round(sum(r.on_wire for r in records), 3),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": None if cost is None else round(cost, 6),
            "price_per_mtok": {"in": self.prices.per_mtok_in, "out": self.prices.per_mtok_out},
        }


def _pct(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    rank = max(0, math.ceil(pct / 100 * len(ordered)) - 1)
    return round(ordered[rank], 4)
