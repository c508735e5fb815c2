"""Progress while pages finish: a bar on a terminal; a one-line log every few seconds when stderr is a
file or a pipe (a scheduler's log); nothing with --quiet."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..models import DocResult, DocStatus

__all__ = ["RunProgress", "LOG_EVERY_S"]

_log = logging.getLogger("document_it.progress")  # enabled at INFO by the CLI, in text or JSON

LOG_EVERY_S = 10.0  # seconds between progress lines when stderr is not a terminal


class RunProgress:
    """Counts completed and failed pages and draws them."""

    def __init__(self, total: int, enabled: bool, done: int = 0, log_every_s: float = LOG_EVERY_S) -> None:
        self.completed = 0
        self.failed = 0
        self.total, self.done_before = total, done
        console = Console(file=sys.stderr)
        self._log_every = log_every_s if enabled and not console.is_terminal else None
        self._started = self._last_log = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]analysing"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
            console=console, disable=not enabled or not console.is_terminal, transient=False,
        )
        self._task = self._progress.add_task("pages", total=total, completed=done, detail="")
        self._gateway: Any = None

    def __enter__(self) -> "RunProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def watch(self, gateway: Any) -> None:
        """Show this gateway's LLM window (requests allowed in flight) beside the bar."""
        self._gateway = gateway if getattr(gateway.provider, "is_llm", False) else None

    def advance(self, result: DocResult, total: int | None = None) -> None:
        """Count one finished page; `total` grows while a crawl finds more pages."""
        if result.status is DocStatus.COMPLETED:
            self.completed += 1
        else:
            self.failed += 1
        parts = [f"{self.failed} failed"] if self.failed else []
        if self._gateway is not None:
            window = self._gateway.limiter.window
            parts.append(f"LLM window {window.limit}/{window.cap}, {self._gateway.tracker.tokens:,} tokens")
        self._progress.update(self._task, advance=1, detail=" · ".join(parts),
                              **({"total": total} if total is not None else {}))
        self.total = total if total is not None else self.total
        now = time.monotonic()
        if self._log_every is not None and (now - self._last_log >= self._log_every or self._finished()):
            self._last_log = now
            self._line(parts, now)

    def _finished(self) -> bool:
        return self.done_before + self.completed + self.failed >= self.total

    def _line(self, parts: list[str], now: float) -> None:
        done = self.done_before + self.completed + self.failed
        rate = (self.completed + self.failed) / max(now - self._started, 1e-9)
        extra = "".join(f", {part}" for part in parts)
        _log.info("%d/%d pages%s, %.1f pages/s", done, self.total, extra, rate)
