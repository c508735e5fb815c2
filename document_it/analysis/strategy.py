"""--task-strategy auto: one request per page (combined), except where a request per analysis pays."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import LLMKind, Settings, TaskStrategy
from ..netguard import blocked_reason

__all__ = ["resolve_strategy", "separate_pays"]


def resolve_strategy(settings: Settings, pages: int | None) -> TaskStrategy:
    """The strategy a run of `pages` pages (None: not known up front) uses: --task-strategy, or for auto
    combined unless separate requests pay."""
    if settings.task_strategy is not TaskStrategy.AUTO:
        return settings.task_strategy
    return TaskStrategy.SEPARATE if separate_pays(settings, pages) else TaskStrategy.COMBINED


def separate_pays(settings: Settings, pages: int | None) -> bool:
    """True when a request per analysis would finish the run sooner than one per page.

    A combined answer decodes every part one after another; separate requests decode them side by side, but
    each reads the page again (prompt tokens times the tasks, billed) and takes a slot. That pays only when
    every request of the run is served at once: a run of few pages (pages × tasks within the concurrency
    cap), with no request or token rate limit, on a hosted server, where slots are many. Servers on loopback
    or private addresses are the ones people run themselves, often with one slot, where separate requests
    only queue. Measured in docs/benchmarks.md ("One reading per page")."""
    if settings.llm is LLMKind.EXTRACTIVE or pages is None or pages < 1 or len(settings.tasks) < 2:
        return False
    if settings.rpm or settings.tpm:
        return False
    if pages * len(settings.tasks) > settings.max_concurrency:
        return False
    return _hosted(settings.llm_base_url)


def _hosted(base_url: str | None) -> bool:
    """True for a server on a public address or name (no base URL: the provider's own API)."""
    if not base_url:
        return True
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return False
    reason = blocked_reason(host)
    return reason is None or reason == "not an IP address"
