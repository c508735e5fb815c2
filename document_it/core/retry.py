"""How often and how long to wait between attempts at one LLM request."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts: Retry-After wins, else full-jitter backoff."""

    retries: int = 3
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, failure: int, retry_after: float | None) -> float:
        """Seconds to wait after the `failure`-th failed attempt (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.cap_s * 4)
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** failure))
