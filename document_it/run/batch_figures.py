"""What a run did through the provider's Batch API, and run.json's `llm.batch_api`: the batch share of requests
and tokens, and the cost at the batch price beside what the same work would have cost live."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.tracker import Prices

__all__ = ["BatchFigures"]


@dataclass
class BatchFigures:
    """Counted as the rounds go."""

    rounds: int = 0
    files: int = 0  # input files uploaded or written
    batches: int = 0  # batches created
    lines: int = 0  # lines sent (a line sent again in a smaller file counts once)
    split: int = 0  # files the provider refused as too large, sent again in halves
    answered: int = 0  # prompts answered from batch output
    failed: int = 0  # prompts a batch did not answer (asked again live, or in a new batch with strict)
    requests: int = 0  # lines that came back with HTTP 200
    ended: dict[str, int] = field(default_factory=dict)  # batches by how they ended

    def summary(self, mode: str, llm: dict[str, Any], usage: tuple[int, int], prices: Prices, discount: float,
                left: str | None, left_kind: str) -> dict[str, Any]:
        """run.json's llm.batch_api, beside `llm` (the gateway's figures of the requests sent live); `usage`: the
        tokens in and out of the batch answers read (the lane counts them)."""
        tokens_in, tokens_out = usage
        live_cost = prices.cost(tokens_in, tokens_out)  # None when the model's price is unknown
        batch_cost = None if live_cost is None else live_cost * (1 - discount)
        other = llm.get("cost_usd")  # the requests sent live
        requests = self.requests + int(llm.get("attempts") or 0)
        tokens = tokens_in + tokens_out
        all_tokens = tokens + int(llm.get("tokens_in") or 0) + int(llm.get("tokens_out") or 0)
        return {
            "mode": mode, "rounds": self.rounds, "files": self.files, "batches": self.batches, "lines": self.lines,
            "split": self.split, "ended": self.ended, "prompts_answered": self.answered,
            "prompts_failed": self.failed, "requests": self.requests, "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "share_of_requests": round(self.requests / requests, 4) if requests else 0.0,
            "share_of_tokens": round(tokens / all_tokens, 4) if all_tokens else 0.0,
            "discount": discount,
            "cost_usd": _money(batch_cost),
            "cost_if_live_usd": _money(live_cost),
            "run_cost_usd": None if batch_cost is None or other is None else _money(batch_cost + other),
            "run_cost_if_live_usd": None if live_cost is None or other is None else _money(live_cost + other),
            "left": left, "left_kind": left_kind,
        }


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
