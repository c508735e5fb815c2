"""A crawl's policy: where it starts, which links it follows, what robots.txt forbids, how pages get topics."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterable
from urllib.parse import urlsplit

from ..config import Settings
from ..fetch import USER_AGENT, FetchLimits, fetch_text
from ..models import ROOT_TOPIC, DocRef
from ..politeness import Robots
from ..scope import Scope, clean_url, is_page_link, url_key
from ..sources import read_sitemap

__all__ = ["CrawlSpec", "Crawl", "NewJob"]

log = logging.getLogger(__name__)

NewJob = tuple[str, DocRef, int]  # (dedupe key, page, depth): what the job queue takes


@dataclass(frozen=True)
class CrawlSpec:
    """What a crawl was asked to do; stored with the run so --resume crawls the same way."""

    start: str
    max_depth: int = 2
    max_pages: int = 500
    allow_domains: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, start: str) -> "CrawlSpec":
        return cls(start, settings.max_depth, settings.max_pages, settings.allow_domains,
                   settings.include, settings.exclude)

    def to_options(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "CrawlSpec":
        return cls(**{**options, **{k: tuple(options.get(k, ())) for k in ("allow_domains", "include", "exclude")}})


class Crawl:
    """Turns a start page, sitemaps and each page's links into jobs, within scope, depth and robots.txt."""

    def __init__(self, spec: CrawlSpec, limits: FetchLimits) -> None:
        self.spec = spec
        self.scope = Scope.from_start(spec.start, spec.allow_domains, spec.include, spec.exclude)
        self.robots = Robots(lambda url: fetch_text(url, limits), USER_AGENT)
        self._limits = limits

    def seeds(self) -> list[NewJob]:
        """The start page, then the in-scope pages of the site's sitemaps (as if linked from the start)."""
        jobs: list[NewJob] = [(url_key(self.spec.start), DocRef(self.spec.start, topic=self.topic(self.spec.start)), 0)]
        if self.spec.max_depth < 1:
            return jobs
        parts = urlsplit(self.spec.start)
        origin = f"{parts.scheme}://{parts.netloc}"
        sitemaps = self.robots.sitemaps(self.spec.start) or [origin + self.scope.prefix + "sitemap.xml",
                                                              origin + "/sitemap.xml"]
        listed: list[str] = []
        for sitemap in dict.fromkeys(sitemaps):
            if self.robots.allowed(sitemap):
                listed += [ref.url for ref in read_sitemap(sitemap, self._limits)]
        followed = self.follow(listed, 0)
        if followed:
            log.info("sitemap lists %d pages in scope", len(followed))
        return jobs + followed

    def follow(self, links: Iterable[str], depth: int) -> list[NewJob]:
        """Jobs for the links of a page at `depth` that the crawl may follow (none past --max-depth)."""
        if depth >= self.spec.max_depth:
            return []
        jobs = []
        for link in links:
            if is_page_link(link) and self.scope.allows(link):
                url = clean_url(link)
                jobs.append((url_key(url), DocRef(url, topic=self.topic(url)), depth + 1))
        return jobs

    def refused(self, url: str) -> str | None:
        """Why robots.txt forbids this page, or None."""
        return None if self.robots.allowed(url) else "disallowed by robots.txt"

    def redirect_check(self, url: str) -> str | None:
        """Redirects are followed only within the crawl's scope (and where robots.txt allows)."""
        if not self.scope.allows(url):
            return "off the crawl's scope (not followed)"
        return self.refused(url)

    def topic(self, url: str) -> str:
        """The first folder below the crawl's start folder, or '(root)'."""
        path = urlsplit(url).path
        rest = path[len(self.scope.prefix):] if path.startswith(self.scope.prefix) else path.lstrip("/")
        folder, slash, _ = rest.partition("/")
        return folder if slash and folder else ROOT_TOPIC
