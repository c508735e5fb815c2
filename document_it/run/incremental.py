"""Nightly runs: what a page's previous visit tells us, what changed since, and changes.md."""

from __future__ import annotations

import enum
import hashlib
import time
from typing import Any

from ..core.page_memory import PageRecord
from ..models import Fetched, ParsedDoc
from ..report import link_target, one_line

__all__ = ["Change", "content_hash", "page_record", "what_changed", "changes_block", "render_changes"]

_LISTED = 200  # pages named per list in changes.md; the counts are always complete


class Change(str, enum.Enum):
    """How a page differs from its last analysed visit."""

    ADDED = "added"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    REMOVED = "removed"


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def page_record(key: str, fetched: Fetched, page: ParsedDoc, result: dict[str, Any],
                links: tuple[str, ...]) -> PageRecord:
    """What the next run needs to know about this visit."""
    return PageRecord(key=key, url=fetched.ref.url, topic=fetched.ref.topic, content_hash=content_hash(fetched.content),
                      etag=fetched.validators.get("ETag"), last_modified=fetched.validators.get("Last-Modified"),
                      result=result, links=links, headings=page.headings, words=len(page.text.split()),
                      analysed_at=time.time())


def what_changed(previous: PageRecord | None, page: ParsedDoc) -> str:
    """One short line: sections added or removed, and how the length moved."""
    words = len(page.text.split())
    if previous is None:
        return f"new page: {len(page.headings)} sections, {words:,} words"
    parts = []
    old_title = (previous.result or {}).get("title")
    if old_title and old_title != page.title:
        parts.append(f"title now {page.title!r}")
    added = [h for h in page.headings if h not in previous.headings]
    gone = [h for h in previous.headings if h not in page.headings]
    if added:
        parts.append("sections added: " + _names(added))
    if gone:
        parts.append("sections removed: " + _names(gone))
    if words != previous.words:
        parts.append(f"{previous.words:,} → {words:,} words")
    return "; ".join(parts) or "text edited (same sections and length)"


def changes_block(changes: list[tuple[str, str, str]]) -> dict[str, Any]:
    """run.json's `changes`: counts, and the URLs of each kind."""
    block: dict[str, Any] = {kind.value: 0 for kind in Change}
    for kind in Change:
        urls = [url for url, change, _ in changes if change == kind.value]
        block[kind.value] = len(urls)
        if kind is not Change.UNCHANGED:
            block[f"{kind.value}_urls"] = urls
    return block


def render_changes(title: str, changes: list[tuple[str, str, str]], complete: bool) -> str:
    """changes.md: what this run found new, changed, removed and unchanged since the last one."""
    block = changes_block(changes)
    lines = [f"# {title or 'Documentation'} — changes since the last run", "",
             " · ".join(f"{block[k.value]} {k.value}" for k in Change), ""]
    if not complete:
        lines += ["_This run did not finish, so pages it did not reach are not counted as removed._", ""]
    for kind in (Change.ADDED, Change.CHANGED, Change.REMOVED):
        rows = [(url, note) for url, change, note in changes if change == kind.value]
        lines += [f"## {kind.value.capitalize()} ({len(rows)})", ""]
        lines += [f"- {link_target(url)}" + (f" — {one_line(note)}" if note else "") for url, note in rows[:_LISTED]] \
            or ["None."]
        if len(rows) > _LISTED:
            lines.append(f"- … and {len(rows) - _LISTED} more (see run.json)")
        lines.append("")
    lines += [f"{block[Change.UNCHANGED.value]} pages unchanged: their previous analysis was kept "
              "(no parse and no LLM call; no download either when the server answered 304).", ""]
    return "\n".join(lines)


def _names(headings: list[str], most: int = 4) -> str:
    shown = ", ".join(one_line(h, 60) for h in headings[:most])
    return shown + (f" and {len(headings) - most} more" if len(headings) > most else "")
