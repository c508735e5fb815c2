"""Until an LLM server gives its first usable answer, watch how the run's requests fail: when the first
attempts all fail the same way (an HTML error page, a reply that is not JSON, always the same HTTP status),
the server will not serve this run, and retrying each page until --max-wait would only hide that."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

__all__ = ["FirstContact"]


@dataclass
class FirstContact:
    """Says stop when `attempts` failed attempts over at least `requests` requests, and no success before
    them, all failed alike; one usable answer disarms it for the rest of the run."""

    attempts: int = 5
    requests: int = 2
    armed: bool = True
    _kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    _requests: set[int] = field(default_factory=set)
    _example: dict[str, str] = field(default_factory=dict)
    _verdict: str | None = None

    def success(self) -> None:
        """The server answered usably: from now on failures are the retry policy's and the breaker's."""
        self.armed = False

    def failure(self, request: int, kind: str, detail: str) -> str | None:
        """Note one failed attempt of `request`; the reason to stop the run, or None to carry on."""
        if self._verdict is not None or not self.armed:
            return self._verdict
        self._kinds[kind] += 1
        self._requests.add(request)
        self._example.setdefault(kind, detail)
        failed = sum(self._kinds.values())
        if len(self._kinds) > 1:  # failing in different ways: maybe a flaky server, not a wrong one
            self.armed = False
            return None
        if failed < self.attempts or len(self._requests) < self.requests:
            return None
        self._verdict = (f"the first {failed} attempts ({len(self._requests)} requests) all failed the same way, "
                         f"with no usable reply: {kind} ({self._example[kind]})")
        return self._verdict
