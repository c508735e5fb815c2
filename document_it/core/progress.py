"""Progress while pages move through the stages: a bar per stage (discovered, downloaded, parsed,
analysed, failed) with rate and ETA on a terminal, beside the LLM window, cache hits, 429s and failures; a
one-line log every few seconds when stderr is a file or a pipe (a scheduler's log); nothing with --quiet."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeRemainingColumn)
from rich.text import Text

from ..models import DocResult, DocStatus

__all__ = ["RunProgress", "LOG_EVERY_S", "STAGES"]

_log = logging.getLogger("document_it.progress")  # enabled at INFO by the CLI, in text or JSON

LOG_EVERY_S = 10.0  # seconds between progress lines when stderr is not a terminal
STAGES = ("downloaded", "parsed", "analysed")


class _Rate(ProgressColumn):
    """Items per second over rich's recent window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f}/s" if speed else "    -/s", style="cyan")


class RunProgress:
    """Counts pages per stage and draws them; `stage()` is called as pages are downloaded and parsed,
    `advance()` when a page's result lands."""

    def __init__(self, total: int, enabled: bool, done: int = 0, log_every_s: float = LOG_EVERY_S,
                 console: Console | None = None) -> None:
        self.total, self.done_before = total, done
        self.counts = dict.fromkeys(STAGES, 0)
        self.completed = self.failed = 0
        console = console or Console(file=sys.stderr)
        self._log_every = log_every_s if enabled and not console.is_terminal else None
        self._started = self._last_log = time.monotonic()
        self._progress = Progress(
            TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), _Rate(),
            TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
            console=console, disable=not enabled or not console.is_terminal, transient=False,
        )
        self._discovered = self._progress.add_task("discovered", total=total, completed=total, detail="")
        self._bars = {name: self._progress.add_task(name, total=total, completed=done, detail="") for name in STAGES}
        self._failed = self._progress.add_task("failed", total=total, completed=0, detail="")
        self._gateway: Any = None
        self._observed = False  # stage() is called (stages in this process); else results carry the stages

    def __enter__(self) -> "RunProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def watch(self, gateway: Any, stages: Any = None) -> None:
        """Show this gateway's LLM window, cache hits and 429s; count downloads and parses as `stages` does them."""
        self._gateway = gateway if getattr(gateway.provider, "is_llm", False) else None
        if stages is not None:
            stages.observer = self.stage
            self._observed = True

    def stage(self, name: str) -> None:
        """One page got through `name` ("downloaded" or "parsed")."""
        self.counts[name] += 1
        self._progress.update(self._bars[name], advance=1)

    def advance(self, result: DocResult, total: int | None = None) -> None:
        """Count one finished page; `total` grows while a crawl finds more pages."""
        if result.status is DocStatus.COMPLETED:
            self.completed += 1
        else:
            self.failed += 1
            self._progress.update(self._failed, advance=1)
        if not self._observed:  # worker processes did the stages: the result says which
            for name, timing in (("downloaded", "fetch"), ("parsed", "parse")):
                if timing in result.timings:
                    self.stage(name)
        self.counts["analysed"] += 1
        if total is not None and total != self.total:
            self.total = total
            self._progress.update(self._discovered, total=total, completed=total)
            for bar in (*self._bars.values(), self._failed):
                self._progress.update(bar, total=total)
        parts = self._details()
        self._progress.update(self._bars["analysed"], advance=1, detail=" · ".join(parts))
        now = time.monotonic()
        if self._log_every is not None and (now - self._last_log >= self._log_every or self._finished()):
            self._last_log = now
            self._line(parts, now)

    def _details(self) -> list[str]:
        parts = [f"{self.failed} failed"] if self.failed else []
        gateway = self._gateway
        if gateway is not None:
            window = gateway.limiter.window
            parts.append(f"LLM window {window.limit}/{window.cap}")
            parts.append(f"cache hits {gateway.memo.hits}")
            parts.append(f"429s {gateway.tracker.throttled}")
            parts.append(f"{gateway.tracker.tokens:,} tokens")
        return parts

    def _finished(self) -> bool:
        return self.done_before + self.completed + self.failed >= self.total

    def _line(self, parts: list[str], now: float) -> None:
        done = self.done_before + self.completed + self.failed
        rate = (self.completed + self.failed) / max(now - self._started, 1e-9)
        eta = f", ETA {(self.total - done) / rate:.0f} s" if rate > 0 and done < self.total else ""
        extra = "".join(f", {part}" for part in parts)
        _log.info("%d/%d pages (downloaded %d, parsed %d)%s, %.1f pages/s%s", done, self.total,
                  self.done_before + self.counts["downloaded"], self.done_before + self.counts["parsed"],
                  extra, rate, eta)
