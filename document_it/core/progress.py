"""Progress while pages move through the stages, on a terminal: a row each for pages discovered, downloaded,
parsed, completed and failed (the count first, then bar, rate and ETA), and under them a row for the LLM window,
cache hits, 429s and tokens; a one-line log every few seconds when stderr is a file or a pipe (a scheduler's
log); nothing with --quiet. Totals are what has been discovered so far: a crawl's bars grow with its frontier."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

from rich.console import Console, RenderableType
from rich.constrain import Constrain
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Column
from rich.text import Text

from ..models import DocResult, DocStatus

__all__ = ["RunProgress", "LOG_EVERY_S", "RATE_WINDOW_S", "ROWS"]

_log = logging.getLogger("document_it.progress")  # enabled at INFO by the CLI, in text or JSON

LOG_EVERY_S = 10.0  # seconds between progress lines when stderr is not a terminal
RATE_WINDOW_S = 30.0  # rates (and so ETAs) are taken over this many recent seconds
ROWS = ("discovered", "downloaded", "parsed", "completed", "failed")
_BARS = ("downloaded", "parsed", "completed")  # rows counting towards the total; the others are plain counts
_UNKNOWN = "-:--:--"
_MAX_WIDTH = 100  # the rows fill the terminal up to this width (then the bars stop growing)


class _Meter:
    """Events per second over the last RATE_WINDOW_S seconds (over the time since the start, until then)."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._times: deque[float] = deque()
        self._lock = threading.Lock()  # ticked by the run, read by rich's refresh thread as well

    def tick(self, now: float, events: int = 1) -> None:
        with self._lock:
            self._times.extend([now] * events)

    def rate(self, now: float) -> float | None:
        """Events per second lately; None when there was none."""
        with self._lock:
            while self._times and self._times[0] < now - RATE_WINDOW_S:
                self._times.popleft()
            if not self._times:
                return None
            return len(self._times) / max(min(now - self._started, RATE_WINDOW_S), 1.0)


class _Count(ProgressColumn):
    """'done/total' on a bar's row, the bare number on the others."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        return Text(f"{done}/{int(task.total or 0)}" if task.fields["bar"] else str(done), style="progress.download")


class _Bar(BarColumn):
    """The bar, on the rows that have one."""

    def render(self, task: Task) -> RenderableType:
        return super().render(task) if task.fields["bar"] else Text("")


class _Rate(ProgressColumn):
    """Pages per second lately through this row."""

    def __init__(self, rate: Callable[[str, float], float | None]) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self._rate = rate

    def render(self, task: Task) -> Text:
        rate = self._rate(task.description, time.monotonic())
        return Text(f"{rate:5.1f}/s" if rate else "    -/s", style="cyan")


class _Eta(ProgressColumn):
    """Time left on a bar's row; '-:--:--' while unknown (no rate yet, or caught up with a total still growing)."""

    def __init__(self, eta: Callable[[str, float], float | None]) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self._eta = eta

    def render(self, task: Task) -> Text:
        if not task.fields["bar"]:
            return Text("")
        seconds = self._eta(task.description, time.monotonic())
        if seconds is None:
            return Text(_UNKNOWN, style="progress.remaining")
        minutes, secs = divmod(math.ceil(seconds), 60)
        return Text(f"{minutes // 60:d}:{minutes % 60:02d}:{secs:02d}", style="progress.remaining")


class _Board(Progress):
    """rich's Progress with one more line under the rows (the LLM's status), cut to the terminal's width."""

    def __init__(self, *columns: ProgressColumn, status: Callable[[], str], **options: Any) -> None:
        self._status = status  # before rich's __init__, which renders once
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield Constrain(self.make_tasks_table(self.tasks), _MAX_WIDTH)
        for line in self._status().splitlines():  # one row each, cut to the width
            yield Text(line, no_wrap=True, overflow="ellipsis")


class RunProgress:
    """Counts pages per stage and shows them; `discovered()` is called as a crawl's frontier grows, `stage()` as
    pages are downloaded and parsed, `advance()` when a page's result lands."""

    def __init__(self, total: int, enabled: bool, done: int = 0, log_every_s: float = LOG_EVERY_S,
                 console: Console | None = None, failed: int = 0, growing: bool = False) -> None:
        """`done` pages, `failed` of them failed, were finished before (a resumed run); `growing`: a crawl, whose
        total may grow until the run ends."""
        self.total, self.growing = total, growing
        self.counts = {"downloaded": done, "parsed": done, "completed": done - failed, "failed": failed}
        console = console or Console(file=sys.stderr)
        self._log_every = log_every_s if enabled and not console.is_terminal else None
        self._started = self._last_log = now = time.monotonic()
        self._logged_end: tuple[int, int] | None = None
        self._meters = {name: _Meter(now) for name in (*ROWS, "finished")}
        self._closed = False
        self._gateway: Any = None
        self._observed = False  # stage() is called (stages in this process); else results carry the stages
        self._batches = ""  # the Batch API's batches and their states (--batch-api)
        self._progress = _Board(
            TextColumn("{task.description:>10}", table_column=Column(no_wrap=True)),
            _Count(table_column=Column(no_wrap=True, justify="right")),
            _Bar(bar_width=None, table_column=Column(ratio=1)), _Rate(self._rate), _Eta(self._eta),
            status=self._status, console=console, disable=not enabled or not console.is_terminal, expand=True,
        )
        self._rows = {name: self._progress.add_task(name, total=None, bar=name in _BARS) for name in ROWS}
        self._show()

    def __enter__(self) -> "RunProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True  # the total is final: a row that caught up is done
        self._progress.stop()

    def __rich__(self) -> RenderableType:
        """The rows and the LLM's status as a terminal shows them now (print it for a snapshot)."""
        return self._progress.get_renderable()

    @property
    def finished(self) -> int:
        """Pages completed or failed so far (those of an earlier, interrupted run included)."""
        return self.counts["completed"] + self.counts["failed"]

    def watch(self, gateway: Any, stages: Any = None) -> None:
        """Show this gateway's LLM window, cache hits and 429s; count downloads and parses as `stages` does them."""
        self._gateway = gateway if getattr(gateway.provider, "is_llm", False) else None
        if stages is not None:
            stages.observer = self.stage
            self._observed = True

    def discovered(self, total: int) -> None:
        """The run now has `total` pages: a crawl queued new links (or pages turned out not to be documents)."""
        now = time.monotonic()
        self._grow(total, now)
        self._show(now)

    def stage(self, name: str) -> None:
        """One page got through `name` ("downloaded" or "parsed")."""
        now = time.monotonic()
        self._count(name, now)
        self._show(now)

    def batches(self, text: str) -> None:
        """Show (and log, when it changes) where the run's batches stand at the provider."""
        if text != self._batches:
            _log.info("batches: %s", text)
        self._batches = text
        self._progress.refresh()

    def advance(self, result: DocResult, total: int | None = None) -> None:
        """Count one finished page, completed or failed; `total`, if given, is the run's pages as discovered()."""
        now = time.monotonic()
        if total is not None:
            self._grow(total, now)
        if not self._observed:  # worker processes did the stages: the result says which
            for name, timing in (("downloaded", "fetch"), ("parsed", "parse")):
                if timing in result.timings:
                    self._count(name, now)
        self._count("completed" if result.status is DocStatus.COMPLETED else "failed", now)
        self._meters["finished"].tick(now)
        self._show(now)

    def _grow(self, total: int, now: float) -> None:
        if total > self.total:
            self._meters["discovered"].tick(now, total - self.total)
        self.total = total

    def _count(self, name: str, now: float) -> None:
        self.counts[name] += 1
        self._meters[name].tick(now)

    def _show(self, now: float | None = None) -> None:
        """Redraw the rows (no bar ever shows more done than its total) and log a line when one is due."""
        update = self._progress.update
        update(self._rows["discovered"], completed=self.total)
        update(self._rows["failed"], completed=self.counts["failed"])
        for name in _BARS:
            count = self.counts[name]
            update(self._rows[name], completed=count, total=max(self.total, count))
        if now is not None and self._log_every is not None:
            self._maybe_log(now)

    def _rate(self, row: str, now: float) -> float | None:
        return self._meters[row].rate(now)

    def _eta(self, row: str, now: float) -> float | None:
        """Seconds until the row reaches the total; None while unknown."""
        done, meter = (self.finished, "finished") if row == "completed" else (self.counts.get(row, 0), row)
        if done >= self.total:
            return None if self.growing and not self._closed else 0.0
        rate = self._meters[meter].rate(now)
        return (self.total - done) / rate if rate else None

    def _llm(self) -> list[str]:
        """The watched LLM's window, cache hits, 429s and tokens; nothing without one."""
        gateway = self._gateway
        if gateway is None:
            return []
        window, tracker = gateway.limiter.window, gateway.tracker
        tokens, _ = gateway.spent  # live requests' and the batch answers read (--batch-api)
        return [f"window {window.limit}/{window.cap}", f"cache hits {gateway.memo.hits}", f"429s {tracker.throttled}",
                f"{tokens:,} tokens"]

    def _status(self) -> str:
        """The terminal's row under the counts."""
        llm = self._llm()
        status = f"{'LLM':>10} " + " · ".join(llm) if llm else ""
        return status + (f"\n{'batches':>10} {self._batches}" if self._batches else "")

    def _maybe_log(self, now: float) -> None:
        """A line every `log_every_s`, and one when every page found so far is finished."""
        due = now - self._last_log >= (self._log_every or 0.0)
        end = (self.finished, self.total) if self.finished >= self.total else None
        if due or (end is not None and end != self._logged_end):
            self._last_log, self._logged_end = now, end or self._logged_end
            _log.info("%s", self._line(now))

    def _line(self, now: float) -> str:
        """The log's progress line: finished of discovered, completed and failed apart, stages, rate, ETA, LLM."""
        counts = self.counts
        parts = [f"{self.finished}/{self.total} pages finished: {counts['completed']} completed, "
                 f"{counts['failed']} failed", f"downloaded {counts['downloaded']}, parsed {counts['parsed']}"]
        open_ended = self.growing and not self._closed and self.finished < self.total
        if open_ended:
            parts.append(f"{self.total} found so far")
        rate = self._meters["finished"].rate(now) or 0.0
        eta = self._eta("completed", now)
        parts.append(f"{rate:.1f} pages/s" + (f", ETA {'at least ' if open_ended else ''}{math.ceil(eta)} s"
                                               if eta and self.finished < self.total else ""))
        llm = self._llm()
        if llm:
            parts.append("LLM " + ", ".join(llm))
        return "; ".join(parts)
