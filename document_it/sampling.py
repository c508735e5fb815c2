"""sample(refs, n) -> at most n pages spread across a site's sections, for `--limit`.

The first n pages of an index in order are rarely a fair picture of a site: a folder lists its files
alphabetically, so `--limit 60` on the Python docs would read 58 pages of `c-api/`. Instead the pages are
put in a tree of sections (an llms.txt's `##` sections when it has them, else the folders of their URLs
below the folders all pages share) and n is dealt out round-robin:

- a section's landing page (index.html, index.md, README.md, the folder's own URL) is taken first;
- the rest of its share goes round-robin to its own pages (a group of their own, first) and its
  subsections, each capped at its size, so a small section's unused share goes to the others; when a
  round cannot reach every group, the groups it reaches are spread evenly over them;
- within a group of pages, the share is spaced evenly (every k-th page), not the first ones.

No randomness: the same pages and n always give the same sample, returned in the original order.
With n at or above the number of pages every page is kept, in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Sequence
from urllib.parse import unquote, urlparse

from .models import DocRef

__all__ = ["sample"]

log = logging.getLogger(__name__)

_LANDING = {"index.html", "index.htm", "index.md", "index.markdown", "readme.md", "readme.markdown", "readme"}

Place = tuple[tuple[str, ...], bool]  # (section path, is the section's landing page)


@dataclass
class _Section:
    """A node of the section tree: its landing page, its own other pages and its subsections."""

    landing: int | None = None
    pages: list[int] = field(default_factory=list)
    children: dict[str, _Section] = field(default_factory=dict)  # in order of first appearance
    size: int = 0

    def all(self) -> list[int]:
        """Every page at or below this section."""
        found = ([self.landing] if self.landing is not None else []) + self.pages
        return found + [i for child in self.children.values() for i in child.all()]


def sample(refs: Sequence[DocRef], n: int | None, by_topic: bool = False) -> list[DocRef]:
    """At most `n` of `refs`, spread across the site's sections (`by_topic`: the index's topics, an llms.txt's
    `##` sections or a folder's navigation; else its folders)."""
    if not n or n >= len(refs):
        return list(refs)
    places = _places(refs, by_topic)
    root = _tree(places)
    chosen = sorted(_pick(root, n))
    sections = len(root.children) + bool(root.pages or root.landing is not None)
    log.info("--limit %d: sampled %d of %d pages across %d top-level %s", n, len(chosen), len(refs), sections,
             "sections" if by_topic else "folders")
    return [refs[i] for i in chosen]


def _place(url: str) -> Place:
    """Where a page sits: its host and folders, and whether it is the landing page of the last one.

    `/guide/` (a folder's own URL) and `/guide/index.html` are the landing page of `guide`."""
    parsed = urlparse(url)
    parts = PurePosixPath(unquote(parsed.path) or "/").parts[1:]
    if not parts or parsed.path.endswith("/"):
        return (parsed.netloc, *parts), True
    return (parsed.netloc, *parts[:-1]), parts[-1].lower() in _LANDING


def _places(refs: Sequence[DocRef], by_topic: bool) -> list[Place]:
    """Each page's section path below the root all pages (or all pages of one index section) share."""
    if not by_topic:
        return _below_common([_place(ref.url) for ref in refs])
    topics: dict[str, list[int]] = {}
    for i, ref in enumerate(refs):
        topics.setdefault(ref.topic, []).append(i)
    places: list[Place] = [((), False)] * len(refs)
    for topic, members in topics.items():
        for i, (path, landing) in zip(members, _below_common([_place(refs[i].url) for i in members])):
            places[i] = ((topic, *path), landing)
    return places


def _below_common(places: list[Place]) -> list[Place]:
    common = 0
    paths = [path for path, _ in places]
    while all(len(p) > common for p in paths) and len({p[common] for p in paths}) == 1:
        common += 1
    return [(path[common:], landing) for path, landing in places]


def _tree(places: list[Place]) -> _Section:
    root = _Section()
    for i, (path, landing) in enumerate(places):
        node = root
        node.size += 1
        for name in path:
            node = node.children.setdefault(name, _Section())
            node.size += 1
        if landing and node.landing is None:
            node.landing = i
        else:
            node.pages.append(i)
    return root


def _pick(section: _Section, n: int) -> list[int]:
    """`n` pages of `section`: its landing page, then its share dealt round-robin to its groups."""
    if n >= section.size:
        return section.all()
    chosen = []
    if section.landing is not None and n > 0:
        chosen.append(section.landing)
        n -= 1
    groups: list[list[int] | _Section] = ([section.pages] if section.pages else []) + list(section.children.values())
    sizes = [len(g) if isinstance(g, list) else g.size for g in groups]
    for group, share in zip(groups, _shares(sizes, n)):
        if share:
            chosen += _spaced(group, share) if isinstance(group, list) else _pick(group, share)
    return chosen


def _shares(sizes: list[int], n: int) -> list[int]:
    """`n` dealt one at a time to each group in turn, skipping full ones; a last partial round goes to
    groups spread evenly among those still open."""
    shares = [0] * len(sizes)
    while n > 0:
        open_ = [g for g, size in enumerate(sizes) if shares[g] < size]
        if not open_:
            break
        reached = open_ if n >= len(open_) else [open_[g] for g in _spread(len(open_), n)]
        for g in reached:
            shares[g] += 1
        n -= len(reached)
    return shares


def _spaced(pages: list[int], n: int) -> list[int]:
    """`n` of `pages` spaced evenly, from the first."""
    return [pages[k] for k in _spread(len(pages), n)]


def _spread(count: int, n: int) -> list[int]:
    """`n` distinct positions in range(count) spaced evenly, starting at 0 (n <= count)."""
    return [k * count // n for k in range(n)]
