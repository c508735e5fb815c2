"""Where a run's pages sit in their site, once the index or the pages have said: whether the index's topics
say anything (a flat folder of URLs does not), topics from the pages' own up links, the site's home page and
the order of its topics."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from urllib.parse import urlsplit

from ..core.job_queue import JobQueue
from ..models import ROOT_TOPIC, DocRef, DocResult
from ..navigation import home_name, with_nav_topics
from .loop import RunSpec

__all__ = ["flat_topics", "placed", "home_title", "topic_order"]


def flat_topics(refs: list[DocRef]) -> bool:
    """True when the index's topics (URL folders) say little of the site's structure: one of them holds
    most of a site of ten pages or more (a DocBook site of 1,200 pages in one folder)."""
    counts = Counter(ref.topic for ref in refs)
    return len(refs) >= 10 and max(counts.values()) > 0.6 * len(refs)


def placed(spec: RunSpec, results: list[DocResult]) -> list[DocResult]:
    """The results with their topics from the pages' navigation, for a run whose index had none to give; the
    pages it does not place at the top of a crawl take the start page's name (the site's home), not "(root)"."""
    if not spec.nav_topics:
        return results
    found = with_nav_topics(results)
    home = home_title(spec, found)
    return [replace(r, topic=home) if home and r.topic == ROOT_TOPIC else r for r in found]


def home_title(spec: RunSpec, results: list[DocResult]) -> str:
    """The site's home page's title without the words that say it is one: a crawl's start page, else the
    shallowest index page a sitemap or URL list has ("" when none)."""
    if spec.crawl is not None:
        home = spec.crawl.start
    else:
        homes = [r.url for r in results if re.search(r"/(index\.html?)?$", urlsplit(r.url).path or "/")]
        home = min(homes, key=lambda url: urlsplit(url).path.count("/"), default=None)
    return next((home_name(r.title) for r in results if r.url == home and r.title), "")


def topic_order(queue: JobQueue, spec: RunSpec, results: list[DocResult]) -> list[str]:
    """The site's own order of its topics: the index's, or for topics from the pages' navigation, the order
    of `results` (as their pages were found: a crawl from the home page meets its table of contents first)."""
    if not spec.nav_topics:
        return queue.run(spec.run_id).options.get("topic_order") or []
    return list(dict.fromkeys(r.topic for r in results))
