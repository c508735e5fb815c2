"""Telling a server that queues from one that works in parallel, by latency alone.

A local server with one or a few slots (llama.cpp, Ollama with OLLAMA_NUM_PARALLEL=1) accepts twenty
requests at once and serves them one after another: each waits behind the others, and with a long enough
queue the last ones time out. Two things give it away:

1. Suspicion: replies take far longer than the fastest seen, per unit of work (reply tokens, a tenth of
   the prompt tokens and a fixed start-up, so a long prompt or a batch of answers is not mistaken for a
   queue). The recent median at QUEUEING × the fastest starts a probe, once the steady latency at the
   current window has been measured on replies sent after the suspicion.
2. The probe: the window is halved. If the server queues, latency falls in proportion to the requests in
   flight (half the window, half the wait), and the window is halved again; when latency no longer falls
   with it, the server was working in parallel at the previous window, which becomes the settled window
   (down to two for a one-slot server, which keeps the next request waiting at the server and no more).
   A server that was never queueing shows it at the first halving, and gets its whole window back.

A slow one-slot server can time out the first burst before any of this is measured (twenty requests of
twenty seconds each). So a run starts with a probe (StartProbe): two requests go out together, alone (no
batches), and the second to come back tells: a parallel server served it beside the first, a queueing one
after it (in doubt, queueing). Parallel: the whole window opens at once (one round trip of two requests
is all it costs).
Queueing: the window settles at two (one if a reply takes over a quarter of the request timeout, so the
one waiting never runs out of time), and grows again only if replies then come back as fast as the first.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Callable

__all__ = ["QueueWatch", "StartProbe", "ProbeStream", "QUEUEING", "SAMPLES", "PROBE_WIDTH", "FLAT",
           "PARALLEL_VERDICT", "QUEUEING_VERDICT"]

QUEUEING = 3.0  # recent latency at least this many times the fastest rate seen: suspect a queue
PROPORTIONAL = 1.5  # after halving, latency within this factor of half the old one: it fell with the window
SAMPLES = 4  # replies each judgement is made on
PROBE_WIDTH = 2  # requests the start probe sends together
FLAT = 1.3  # recent latency within this factor of the fastest: the server keeps up at this window
PARALLEL_VERDICT, QUEUEING_VERDICT, CUT_VERDICT, NONE_VERDICT = "parallel", "queueing", "cut", "none"
PROBE_REPLIES = 6  # replies after which a probe whose requests never overlapped gives up (nothing queues)


def _work(tokens_in: int, tokens_out: int) -> float:
    """A reply's work in decode-token equivalents (prefill runs about ten times faster than decode)."""
    return tokens_out + tokens_in / 10 + 64


class QueueWatch:
    """Decides, reply by reply, the window a server that may queue should get; `settled` once decided."""

    def __init__(self) -> None:
        self._best = float("inf")  # the fastest seconds per unit of work seen so far
        self._recent: deque[float] = deque(maxlen=SAMPLES)  # seconds per unit of work, under this window
        self._probe: tuple[int, float] | None = None  # (window before the last halving, its latency)
        self._measuring = False  # suspected: the steady latency at this window is being measured
        self.settled: int | None = None

    def observe(self, seconds: float, tokens_in: int, tokens_out: int, window: int) -> int | None:
        """Take one reply sent under `window`; the window to switch to (the same one: judge only replies sent
        from now on), or None to carry on."""
        rate = max(seconds, 1e-3) / _work(tokens_in, tokens_out)
        self._best = min(self._best, rate)
        self._recent.append(rate)
        if self.settled is not None or len(self._recent) < SAMPLES:
            return None
        latency = statistics.median(self._recent)
        if self._probe is None:
            if not self._measuring:
                if latency < QUEUEING * self._best or window < 2:
                    return None
                self._measuring = True  # the first replies of a burst ramp up: measure the steady wait first
                self._recent.clear()
                return window
            self._measuring = False
            if window < 2:  # already down to one (timeouts cut it): a queue it is; keep one request waiting
                return self._settle(2)
            return self._halve(window, latency)
        before, was = self._probe
        if latency <= was * (window / before) * PROPORTIONAL:  # the wait fell with the window: still queueing
            return self._halve(window, latency) if window > 1 else self._settle(2)
        return self._settle(before)  # no longer queueing at this window: the one before was the server's

    @property
    def samples(self) -> int:
        """Replies in the current judgement."""
        return len(self._recent)

    @property
    def ratio(self) -> float:
        """Recent latency against the fastest rate seen (1.0 until there are enough replies)."""
        if len(self._recent) < SAMPLES:
            return 1.0
        return statistics.median(self._recent) / self._best

    @property
    def keeps_up(self) -> bool:
        """May the window grow? Not during a probe, nor past a settled window."""
        return self._probe is None and not self._measuring and self.settled is None

    def note_fastest(self, seconds: float, tokens_in: int, tokens_out: int) -> None:
        """Take a reply into the fastest rate seen, and into nothing else (the start probe's replies)."""
        self._best = min(self._best, max(seconds, 1e-3) / _work(tokens_in, tokens_out))

    def settle(self, window: int) -> None:
        """Settle at `window` without a probe (the start probe found a queue)."""
        self._settle(window)

    def unsettle(self) -> None:
        """Forget the settled window: replies since say the server keeps up."""
        self.settled = None
        self._recent.clear()

    def _halve(self, window: int, latency: float) -> int:
        self._probe = (window, latency)
        self._recent.clear()
        return max(1, window // 2)

    def _settle(self, window: int) -> int:
        self.settled = window
        self._probe = None
        self._recent.clear()
        return window


class ProbeStream:
    """One probe request's reply as it streams: decoding from its first token until it ends."""

    def __init__(self, probe: "StartProbe") -> None:
        self._probe = probe
        self.decoding = False
        self.ended = False

    def first(self) -> None:
        """Its first token arrived."""
        self.decoding = True
        self._probe._decoding()

    def end(self) -> None:
        """It ended (answered, failed or given up)."""
        self.ended = True


class StartProbe:
    """The first PROBE_WIDTH requests, sent together: did the server serve them side by side, or in turn?

    Streamed, the answer comes at their first tokens: two replies decoding at the same moment are served side
    by side, so the whole window opens about one time-to-first-token after the start, not one whole reply
    (seconds, for a page's combined answer on a hosted API). A server that serves in turn starts the second
    only when the first has ended; that, or a server that does not stream, is judged on the whole replies."""

    def __init__(self, fast_s: float = 0.0) -> None:
        """`fast_s`: a reply this quick could wait behind the whole window and still not time out."""
        self.fast_s = fast_s
        self._replies: list[tuple[float, float, float]] = []  # (sent at, seconds, work)
        self.verdict: str | None = None  # "parallel" or "queueing" once two replies are in
        self.first_s = 0.0  # the seconds of the reply that came back first (its own service, no wait)
        self.early = False  # the verdict came from first tokens, before the replies ended
        self.on_verdict: Callable[[str], None] | None = None  # told of a verdict reached from first tokens
        self._streams: list[ProbeStream] = []
        self._seen = 0

    def stream(self) -> ProbeStream:
        """A watch for one probe request's streamed reply."""
        watch = ProbeStream(self)
        self._streams.append(watch)
        return watch

    def _decoding(self) -> None:
        if self.verdict is not None:
            return
        if sum(watch.decoding and not watch.ended for watch in self._streams) >= PROBE_WIDTH:
            self.verdict, self.early = PARALLEL_VERDICT, True
            if self.on_verdict is not None:
                self.on_verdict(self.verdict)

    def observe(self, sent_at: float, seconds: float, tokens_in: int, tokens_out: int) -> str | None:
        """Take one reply of a probe request; the verdict once two that were out together are in."""
        if self.verdict is not None:
            return None
        self._replies.append((sent_at, max(seconds, 1e-3), _work(tokens_in, tokens_out)))
        self._seen += 1
        if len(self._replies) < PROBE_WIDTH:
            return None
        first, second = sorted(self._replies, key=lambda r: r[0] + r[1])[-2:]
        # how long the second was out while the first was being served (all of it, when sent together)
        overlap = min(first[1], first[0] + first[1] - second[0])
        if overlap < 0.5 * first[1]:  # one after the other: this pair tells nothing, wait for the next
            self._replies = [second]
            # requests come one at a time (no queue to find), or replies so quick that a queue of the whole
            # window would not time out (nothing to guard against; requests spaced by a request limit do not
            # overlap, and the probe's narrow window would only hold them back)
            if self._seen >= PROBE_REPLIES or first[1] < self.fast_s:
                self.verdict = NONE_VERDICT
            return self.verdict
        self.first_s = first[1]
        # the first back waited for nothing, whatever the server. Side by side the second takes its own time;
        # in turn, the first's too: judge at the midpoint. Its own time is the first's scaled by work when
        # the server's time grows with tokens, the first's when it is mostly a fixed cost per request; where
        # the two readings differ, the smaller is taken, so a doubt ends as "queueing" (a parallel server
        # shows it within SAMPLES replies and gets the window back; a queue sent twenty requests times out)
        own = first[1] * min(1.0, second[2] / first[2])
        self.verdict = QUEUEING_VERDICT if second[1] > own + overlap / 2 else PARALLEL_VERDICT
        return self.verdict

    def cut(self) -> None:
        """The window was cut during the probe (a 429, a timeout): the probe ends without a verdict."""
        if self.verdict is None:
            self.verdict = CUT_VERDICT
