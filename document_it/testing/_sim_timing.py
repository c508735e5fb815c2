"""How long the simulator takes over one request, shaped like a real server's.

A request waits for one of `capacity` sequence slots (0: unlimited), in arrival order. In its slot it pays
time to first token (`latency_ms`, plus optional jitter), then prefill for every prompt token, then decode for
every output token. With `shared_decode` > 0 the sequences decoding at once share the server, as under
continuous batching: each token takes ms_per_token × (1 + shared_decode × (n − 1)) with n of them decoding,
re-evaluated every few milliseconds as others start and finish.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

from document_it.testing._sim_quirks import FifoSlots

__all__ = ["ServiceModel"]

_STEP_S = 0.02  # how often a decoding sequence looks again at how many share the server


class ServiceModel:
    """The service time of each request: slots, time to first token, prefill, decode (shared or not)."""

    def __init__(self, *, latency_ms: float, ms_per_token: float, prefill_ms_per_token: float, jitter_ms: float,
                 capacity: int, shared_decode: float, stopped: threading.Event) -> None:
        if shared_decode < 0:
            raise ValueError("shared_decode must be 0 (off) or more")
        self.latency_ms, self.ms_per_token = float(latency_ms), float(ms_per_token)
        self.prefill_ms_per_token, self.jitter_ms = float(prefill_ms_per_token), float(jitter_ms)
        self.shared_decode = float(shared_decode)
        self._slots = FifoSlots(capacity) if capacity > 0 else None
        self._stopped = stopped
        self._lock = threading.Lock()
        self._jitter = random.Random()
        self.decoding = 0  # sequences decoding right now
        self.max_decoding = 0

    def nominal(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Seconds the request takes alone: first token + prefill + decode + jitter."""
        with self._lock:
            jitter = self._jitter.uniform(0, self.jitter_ms) if self.jitter_ms > 0 else 0.0
        return (self.latency_ms + self.prefill_ms_per_token * prompt_tokens + self.ms_per_token * completion_tokens
                + jitter) / 1000.0

    def serve(self, service: float, completion_tokens: int, started: Callable[[], None],
              ended: Callable[[], None], first_token: Callable[[], None] | None = None) -> tuple[float, float]:
        """Wait for a slot, then take the request's time; returns (seconds queued, seconds served).

        `service` is nominal(); without shared decode the request takes exactly that long. `first_token` is
        called when the first token is ready (after the wait, first-token latency and prefill: a streamed
        reply's first chunk leaves then)."""
        arrived = time.monotonic()
        if self._slots is not None and not self._slots.acquire(self._stopped):
            return time.monotonic() - arrived, 0.0
        queued = time.monotonic() - arrived
        started()
        try:
            clock = time.monotonic()
            decode = self.ms_per_token * completion_tokens / 1000.0
            self._stopped.wait(max(0.0, service - decode))  # first token and prefill
            if first_token is not None:
                first_token()
            if self.shared_decode <= 0 or completion_tokens <= 0:
                self._stopped.wait(min(service, decode))
                return queued, service
            self._decode(completion_tokens)
            return queued, time.monotonic() - clock
        finally:
            ended()
            if self._slots is not None:
                self._slots.release()

    def _decode(self, tokens: int) -> None:
        with self._lock:
            self.decoding += 1
            self.max_decoding = max(self.max_decoding, self.decoding)
        try:
            left = tokens
            while left > 0 and not self._stopped.is_set():
                with self._lock:
                    sharing = self.decoding
                per_token = self.ms_per_token * (1 + self.shared_decode * (sharing - 1)) / 1000.0
                step = max(1, min(left, int(_STEP_S / per_token) if per_token > 0 else left))
                self._stopped.wait(step * per_token)
                left -= step
        finally:
            with self._lock:
                self.decoding -= 1
