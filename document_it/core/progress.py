"""A progress bar on stderr while pages finish; silent with --quiet or when not a terminal."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..models import DocResult, DocStatus

__all__ = ["RunProgress"]


class RunProgress:
    """Counts completed and failed pages and draws them."""

    def __init__(self, total: int, enabled: bool, done: int = 0) -> None:
        self.completed = 0
        self.failed = 0
        console = Console(file=sys.stderr)
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
