"""How long one LLM request attempt may take: --request-timeout at first, stretched for a server that is
slow but alive. A request that times out with nothing else in flight was not waiting behind others, so the
server is slower than the limit: later attempts get twice as long, up to STRETCH times --request-timeout."""

from __future__ import annotations

import logging

__all__ = ["AttemptLimit", "STRETCH", "SLOW_PREFILL_S", "SLOW_DECODE_S"]

log = logging.getLogger(__name__)

STRETCH = 8  # a slow server's attempts may get up to this many times --request-timeout
# a small model on two CPU cores (llama.cpp, SmolLM2-135M): about 90 prompt tokens and 30 answer tokens a second
SLOW_PREFILL_S = 0.012
SLOW_DECODE_S = 0.035


class AttemptLimit:
    """The seconds an attempt may take now, and when a timeout should stretch them."""

    def __init__(self, request_timeout: float) -> None:
        self.start = request_timeout
        self.ceiling = request_timeout * STRETCH
        self.seconds = request_timeout

    @property
    def exhausted(self) -> bool:
        """True once the limit has stretched as far as it goes: a timeout then means the server is down."""
        return self.seconds >= self.ceiling

    def for_work(self, prompt_tokens: int, answer_tokens: int, turn: int = 1) -> float:
        """The limit for an attempt on a self-hosted server that reads `prompt_tokens` and may write
        `answer_tokens`, served `turn`-th by a server that answers one request at a time: at least what a slow
        CPU server needs for that much (times the turn), so a long answer is not cut off, its server time
        wasted and its retry queued behind it, by a limit meant for short ones; within the ceiling."""
        need = (prompt_tokens * SLOW_PREFILL_S + answer_tokens * SLOW_DECODE_S) * max(1, turn)
        return min(self.ceiling, max(self.seconds, need))

    def on_timeout(self, limit: float, alone: bool) -> None:
        """An attempt given `limit` seconds timed out; stretch once per limit, only if it was `alone`."""
        if not alone or limit < self.seconds or self.exhausted:
            return
        self.seconds = min(self.ceiling, limit * 2)
        log.warning("an LLM request took longer than %gs with nothing else in flight: allowing %gs from now on "
                    "(--request-timeout sets the start)", limit, self.seconds)
