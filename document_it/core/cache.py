"""A diskcache memo in --state-dir that every process of a run, and every later run, reads.

Keys are content hashes, so an unchanged prompt or page finds its answer; values are plain JSON-able
data. Any trouble with the cache (corrupt, locked, full disk) turns it into "no cache" with one
warning; it never fails a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diskcache

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Memo", "memo_key", "open_memo", "DEFAULT_SIZE_LIMIT"]

log = logging.getLogger(__name__)

DEFAULT_SIZE_LIMIT = 1024 ** 3  # 1 GiB, then least-recently-stored entries are evicted
_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout, ValueError, TypeError, EOFError)


def memo_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (the same parts give the same key in every process)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def open_memo(settings: "Settings") -> "Memo":
    """The run's shared cache in --state-dir (the same directory every worker process reads), or none with
    --no-cache."""
    if settings.no_cache:
        return Memo(None)
    return Memo(settings.cache_dir, size_limit=int(settings.cache_size_mb * 1024 * 1024), refresh=settings.refresh)


class Memo:
    """get/set by namespace and key over a diskcache.Cache; counts hits and misses."""

    def __init__(self, directory: Path | None, *, size_limit: int = DEFAULT_SIZE_LIMIT, refresh: bool = False) -> None:
        self.directory = directory
        self.refresh = refresh  # recompute and overwrite: reads miss, writes still happen
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._cache: diskcache.Cache | None = None
        self._warned = False
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                _probe(directory / "cache.db")
                self._cache = diskcache.Cache(str(directory), size_limit=size_limit, timeout=2,
                                              eviction_policy="least-recently-stored")
                self._cache.stats(enable=True)  # hits and misses kept on disk, across runs
            except _ERRORS as exc:
                self._disable(exc)

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    def get(self, namespace: str, key: str) -> Any | None:
        """The stored value, or None on a miss (or when the cache is off or failing)."""
        if self._cache is None or self.refresh:
            self.misses += 1
            return None
        try:
            value = self._cache.get(f"{namespace}:{key}")
        except _ERRORS as exc:
            self._disable(exc)
            value = None
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def set(self, namespace: str, key: str, value: Any) -> None:
        if self._cache is None:
            return
        try:
            self._cache.set(f"{namespace}:{key}", value)
            self.writes += 1
        except _ERRORS as exc:
            self._disable(exc)

    def stats(self) -> dict[str, Any]:
        """Hits, misses and what is on disk."""
        entries, size, lifetime = 0, 0, (0, 0)
        if self._cache is not None:
            try:
                entries, size, lifetime = len(self._cache), self._cache.volume(), self._cache.stats()
            except _ERRORS as exc:
                self._disable(exc)
        return {"enabled": self.enabled, "hits": self.hits, "misses": self.misses, "writes": self.writes,
                "entries": entries, "size_bytes": size, "lifetime_hits": lifetime[0],
                "lifetime_misses": lifetime[1]}

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        if self._cache is None:
            return 0
        try:
            return self._cache.clear()
        except _ERRORS as exc:
            self._disable(exc)
            return 0

    def close(self) -> None:
        if self._cache is not None:
            try:
                self._cache.close()
            except _ERRORS:
                pass

    def _disable(self, exc: BaseException) -> None:
        if not self._warned:
            log.warning("cache at %s is unusable (%s: %s); continuing without it",
                        self.directory, type(exc).__name__, str(exc)[:120])
            self._warned = True
        cache, self._cache = self._cache, None
        if cache is not None:
            try:
                cache.close()
            except _ERRORS:
                pass


def _probe(database: Path) -> None:
    """Fail fast (2 s) on a locked or corrupt database; diskcache itself would retry a lock for 60 s."""
    if not database.exists():
        return
    connection = sqlite3.connect(str(database), timeout=2)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.rollback()
    finally:
        connection.close()
