"""What the job queue remembers across runs: each page's last analysed state, its clean Markdown and each
topic's synthesis (the tables `pages`, `markdown` and `topics` of jobs.sqlite), read by nightly runs to tell
what changed and to write what did not."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = ["PageRecord", "PageMemory", "upsert_page", "to_json", "from_json"]

_PAGE_COLUMNS = "key, url, topic, content_hash, etag, last_modified, result, links, headings, words, analysed_at"
_UPSERT_PAGE = f"""INSERT INTO pages (source, {_PAGE_COLUMNS}, removed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
    ON CONFLICT (source, key) DO UPDATE SET url = excluded.url, topic = excluded.topic,
    content_hash = excluded.content_hash, etag = excluded.etag, last_modified = excluded.last_modified,
    result = excluded.result, links = excluded.links, headings = excluded.headings, words = excluded.words,
    analysed_at = excluded.analysed_at, removed = 0"""


@dataclass(frozen=True)
class PageRecord:
    """The latest analysed state of one page of a source, read by the next run to spot changes."""

    key: str
    url: str
    topic: str
    content_hash: str
    etag: str | None
    last_modified: str | None
    result: dict | None
    links: tuple[str, ...]
    headings: tuple[str, ...]
    words: int
    analysed_at: float


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _page_record(row: tuple) -> PageRecord:
    return PageRecord(row[0], row[1], row[2], row[3], row[4], row[5], from_json(row[6]),
                      tuple(from_json(row[7])), tuple(from_json(row[8])), row[9], row[10])



def upsert_page(db: sqlite3.Connection, source: str, page: PageRecord) -> None:
    """Store a page's latest analysed state (inside the caller's transaction)."""
    db.execute(_UPSERT_PAGE, (source, page.key, page.url, page.topic, page.content_hash, page.etag,
                              page.last_modified, None if page.result is None else to_json(page.result),
                              to_json(list(page.links)), to_json(list(page.headings)), page.words, page.analysed_at))


class PageMemory:
    """Cross-run page memory; mixed into JobQueue, which provides the connection and its locking."""

    # JobQueue's: one read, one write, one write transaction, each under its connection lock
    _read: Callable[..., list[tuple]]
    _write: Callable[..., int]
    _tx: Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]

    def previous(self, source: str, key: str) -> PageRecord | None:
        """The page's last analysed state for this source, unless it was marked removed."""
        rows = self._read(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE source = ? AND key = ? AND removed = 0",
                          source, key)
        return _page_record(rows[0]) if rows else None

    def known(self, source: str) -> dict[str, str]:
        """key -> url of the source's pages not marked removed."""
        return dict(self._read("SELECT key, url FROM pages WHERE source = ? AND removed = 0", source))

    def mark_removed(self, source: str, keys: Iterable[str]) -> int:
        """Mark pages gone from the source; returns how many were newly marked."""
        with self._tx() as db:
            marked = 0
            for key in keys:
                marked += db.execute("UPDATE pages SET removed = 1 WHERE source = ? AND key = ? AND removed = 0",
                                     (source, key)).rowcount
                db.execute("DELETE FROM markdown WHERE source = ? AND key = ?", (source, key))
            return marked

    def topic_synthesis(self, source: str, topic: str) -> tuple[str, dict] | None:
        """(fingerprint, synthesis) last saved for a topic, or None."""
        rows = self._read("SELECT fingerprint, synthesis FROM topics WHERE source = ? AND topic = ?", source, topic)
        return (rows[0][0], from_json(rows[0][1])) if rows else None

    def save_topic_synthesis(self, source: str, topic: str, fingerprint: str, synthesis: dict) -> None:
        """Store a topic's synthesis with the fingerprint of the pages it was made from."""
        self._write("INSERT OR REPLACE INTO topics (source, topic, fingerprint, synthesis) VALUES (?, ?, ?, ?)",
                    source, topic, fingerprint, to_json(synthesis))

    def save_markdown(self, source: str, key: str, markdown: str) -> None:
        """Keep a page's clean Markdown, for pages/ and llms-full.txt; an unchanged page keeps it across runs."""
        self._write("INSERT OR REPLACE INTO markdown (source, key, markdown) VALUES (?, ?, ?)", source, key, markdown)

    def markdown(self, source: str, keys: Iterable[str]) -> dict[str, str]:
        """key -> the Markdown kept for each of `keys` that has one."""
        wanted = set(keys)
        return {key: text for key, text in self._read("SELECT key, markdown FROM markdown WHERE source = ?", source)
                if key in wanted}
