"""How long one LLM request attempt may take: --request-timeout at first, stretched for a server that is
slow but alive. A request that times out with nothing else in flight was not waiting behind others, so the
server is slower than the limit: later attempts get twice as long, up to STRETCH times --request-timeout."""

from __future__ import annotations

import logging

__all__ = ["AttemptLimit", "STRETCH"]

log = logging.getLogger(__name__)

STRETCH = 8  # a slow server's attempts may get up to this many times --request-timeout


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

    def on_timeout(self, limit: float, alone: bool) -> None:
        """An attempt given `limit` seconds timed out; stretch once per limit, only if it was `alone`."""
        if not alone or limit < self.seconds or self.exhausted:
            return
        self.seconds = min(self.ceiling, limit * 2)
        log.warning("an LLM request took longer than %gs with nothing else in flight: allowing %gs from now on "
                    "(--request-timeout sets the start)", limit, self.seconds)
