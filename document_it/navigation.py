"""Topics from a site's own navigation: each page's "up" link (DocBook's and Sphinx's accesskey="u", <link
rel="up">, a breadcrumb's last step) leads to its chapter, and the chapters right below the home page are the
topics. A flat folder of 1,200 DocBook pages is grouped into its parts this way instead of one topic."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
import re
from typing import Iterable, Mapping, NamedTuple
from urllib.parse import urldefrag, urljoin

import lxml.html
from lxml import etree

from .chrome import main_region
from .models import DocRef, DocResult
from .titles import shared_name, site_name, split_site_name

__all__ = ["PageNav", "read_nav", "up_link", "nav_topics", "folder_site_name", "with_nav_topics", "pages_site_name",
           "TocLink", "toc_links", "toc_sections", "site_order", "home_name", "reading_order"]

_HEAD_BYTES = 96 * 1024  # the up link sits in the header (DocBook, Django) or the top breadcrumb (Sphinx)
_UP = ("//a[translate(@accesskey, 'U', 'u')='u'][@href]", "//link[@rel='up'][@href]",
       "(//*[contains(concat(' ', normalize-space(@class), ' '), ' breadcrumb ') or "
       "contains(concat(' ', normalize-space(@class), ' '), ' breadcrumbs ') or "
       "contains(translate(@aria-label, 'B', 'b'), 'breadcrumb')])[1]//a[@href]")
_MAX_DEPTH = 64
_STUB_WORDS = 40
_HOME_WORDS = re.compile(r"\s*[-–—:|]?\s*\b(home ?page|home|start page|welcome)\s*$", re.IGNORECASE)
_NOT_UP = re.compile(r"_sources/|\bview (page )?source\b|\bedit (on|this)\b|\bshow source\b", re.IGNORECASE)
_FEW = 6  # pages below which any grouping the navigation gives is taken


@dataclass(frozen=True)
class PageNav:
    """What a page's head says about its place: its <title> and the page one level up (URL, name)."""

    title: str = ""
    up: str = ""
    up_title: str = ""
    stub: bool = False  # a redirect stub (<meta http-equiv="refresh"> and next to no text): not a page
    next: str = ""  # the page after it in the site's reading order (<link rel="next">, accesskey="n")


def read_nav(path: Path, url: str) -> PageNav:
    """The <title> and up link of the HTML file at `path` (whose URL is `url`), from its first bytes."""
    root = _html_tree(path, _HEAD_BYTES)
    if root is None:
        return PageNav()
    title = " ".join("".join(root.xpath("//head/title//text()")).split())
    refresh = root.xpath("//meta[translate(@http-equiv, 'REFSH', 'refsh')='refresh']")
    stub = bool(refresh) and len(" ".join(root.xpath("//body//text()")).split()) < _STUB_WORDS
    following = root.xpath("(//link[@rel='next'] | //a[@rel='next'] | //a[translate(@accesskey, 'N', 'n')='n'])"
                           "[@href][1]/@href")
    after = urldefrag(urljoin(url, following[0].strip()))[0] if following else ""
    return PageNav(title, *up_link(root, url), stub=stub, next=after if after != url else "")


def _html_tree(path: Path, limit: int) -> etree._Element | None:
    """The tree of the first `limit` bytes of the HTML file at `path`; None when it cannot be read or holds
    nothing."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit)
        if not data.strip():
            return None
        return lxml.html.document_fromstring(data, parser=lxml.html.HTMLParser(encoding="utf-8",
                                                                               remove_comments=True))
    except (OSError, etree.LxmlError, ValueError):
        return None


def up_link(root: etree._Element, url: str) -> tuple[str, str]:
    """(URL, name) of the page one level up from the page at `url`, or ("", "") when it names none. A
    breadcrumb is read from its end: the nearest step that is neither the page itself nor a link to its
    source or an edit form (Read the Docs' "View page source")."""
    here = urldefrag(url)[0]
    for path_expr in _UP:
        for link in reversed(root.xpath(path_expr)):
            href = link.get("href", "").strip()
            target = urldefrag(urljoin(url, href))[0] if href and not href.startswith("#") else ""
            name = link.get("title") or " ".join(link.text_content().split())
            if not target or target == here or _NOT_UP.search(f"{href} {name}"):
                continue
            return target, (name if name.lower() not in ("up", "parent") else "")
    return "", ""


def nav_topics(navs: Mapping[str, PageNav], home: str | None) -> dict[str, str]:
    """Each page's topic: the title of its ancestor right below the home page (or below the top when there
    is no home), at the shallowest level that splits the site into two topics or more. Pages with no up link
    (the home page, indexes, search) are left out: the caller falls back to folders for them; so are all
    pages when that level leaves most topics with one page (a navigation that groups nothing)."""
    chains = {url: _chain(url, navs, home) for url in navs if navs[url].up}  # no up link: not placed
    chains = {url: chain for url, chain in chains.items() if chain}
    for level in range(_MAX_DEPTH):
        heads = {url: chain[min(level, len(chain) - 1)] for url, chain in chains.items()}
        groups = len(set(heads.values()))
        if groups >= 2 or all(len(chain) <= level + 1 for chain in chains.values()):
            if len(heads) >= _FEW and groups > len(heads) / 2:
                return {}  # every page a topic of its own (Django's topics/ are all "up" to one page): no grouping
            # a head with no up link of its own (Sphinx's library/index.html) leads its topic all the same
            heads.update({head: head for head in set(heads.values())})
            linked = {nav.up: nav.up_title for nav in navs.values() if nav.up and nav.up_title}
            names = {head: _name(head, navs, linked) for head in set(heads.values())}
            return {url: names[head] for url, head in heads.items()}
    return {}


def _chain(url: str, navs: Mapping[str, PageNav], home: str | None) -> list[str]:
    """The page's ancestors from the top down, the page last; the home page is not part of any chain (its
    own is empty), and a chain that loops or leaves the site is cut where it does."""
    chain = [url]
    seen = {url}
    while True:
        up = navs[chain[-1]].up
        # a parent outside the pages read is the top, if it is named
        if not up or up == home or up in seen or up not in navs or len(chain) > _MAX_DEPTH:
            break
        chain.append(up)
        seen.add(up)
    if url == home:
        return []
    return chain[::-1]


def _name(url: str, navs: Mapping[str, PageNav], linked: Mapping[str, str]) -> str:
    """A topic's name: its page's title (the caller's, without the site's name), else how its children link
    it (`linked`: up URL → the name a child gives it)."""
    own = navs[url].title if url in navs else ""
    return own or linked.get(url) or url.rstrip("/").rsplit("/", 1)[-1]


def folder_site_name(navs: Mapping[str, PageNav], home: str | None, fallback: str) -> str:
    """The site's name: the suffix most page titles share ("Django 3.2.25 documentation"), else the home
    page's title, else `fallback` (the folder's name)."""
    shared = site_name(nav.title for nav in navs.values())
    if shared:
        return shared
    if home and home in navs and navs[home].title:
        return home_name(split_site_name(navs[home].title)[0])
    return fallback


def home_name(title: str) -> str:
    """A home page's title without the words that say it is one ("SQLite Home Page" → "SQLite")."""
    return _HOME_WORDS.sub("", title).strip() or title


def with_nav_topics(results: list[DocResult]) -> list[DocResult]:
    """The results with topics from the up links their pages recorded (a crawl's or a sitemap's pages,
    whose URLs may say nothing of the site's structure); a page that recorded none keeps its topic."""
    navs = {r.url: PageNav(r.title, (r.place or {}).get("up", ""), (r.place or {}).get("up_title", ""))
            for r in results}
    topics = nav_topics(navs, None)
    return [replace(r, topic=topics[r.url]) if r.url in topics else r for r in results]


def pages_site_name(results: Iterable[DocResult]) -> str:
    """The site's name the pages' <title>s give, when most of them give the same one; else ""."""
    return shared_name([(r.place or {}).get("site", "") for r in results])


_HOME_BYTES = 5 * 1024 * 1024
_SECTION_HEADINGS = ("h2", "h3", "h4", "h5", "h6")
_LONGEST_HEADING = 120


class TocLink(NamedTuple):
    """A link of a table-of-contents page, in document order."""

    target: str
    section: str  # the heading above it ("" under none)
    listed: bool  # a list entry (<li>, <dt>), not a link in running text
    label: str  # the label of the outermost list item it is nested in ("" when not nested)


def toc_links(path: Path, url: str) -> list[TocLink]:
    """The links of the page at `path` (URL `url`, a home page or a contents page) in document order. Its
    table of contents is what is wanted here, so nothing is stripped as chrome (DocBook's is a div.toc)."""
    root = _html_tree(path, _HOME_BYTES)
    if root is None:
        return []
    links = []
    section = ""
    for el in main_region(root).iter(etree.Element):
        if el.tag in _SECTION_HEADINGS:
            text = " ".join(el.text_content().split())
            section = text if len(text) <= _LONGEST_HEADING else ""  # a "heading" that wraps a whole list is not one
        elif el.tag == "a" and el.get("href"):
            target = urldefrag(urljoin(url, el.get("href", "").strip()))[0]
            if target != url:
                items = el.xpath("ancestor::li")
                label = _own_text(items[0]) if len(items) >= 2 else ""
                links.append(TocLink(target, section, bool(items or el.xpath("ancestor::dt")), label))
    return links


def _own_text(item: etree._Element) -> str:
    """A list item's own label, without the lists nested in it (SQLite's "► Programming Interfaces")."""
    text = " ".join("".join(item.xpath("text() | *[not(self::ul or self::ol or self::dl)]//text()")).split())
    text = text.lstrip("▼►▶▸•·-–—*> ").strip()
    return text if len(text) <= _LONGEST_HEADING else ""


def toc_sections(links: list[TocLink], pages: set[str]) -> dict[str, str]:
    """url → the section of a table of contents that lists it: the heading above it (git's manual lists its
    150 commands under "Main porcelain commands", "Interrogation commands", …), else the item its entry is
    nested in (SQLite's docs.html: "Programming Interfaces", "Extensions", …). This groups a folder whose
    pages carry no up links. Only list entries count, not a link in running text; a page listed twice keeps
    its first section. {} unless two sections or more list pages."""
    for part in ("section", "label"):
        found: dict[str, str] = {}
        for link in links:
            name = getattr(link, part)
            if name and link.listed and link.target in pages:
                found.setdefault(link.target, name)
        if len(set(found.values())) >= 2:
            return found
    return {}


def reading_order(navs: Mapping[str, PageNav], home: str | None, links: list[TocLink]) -> dict[str, int]:
    """url → its place in the site's reading order: the chain of "next" links from the home page (DocBook's
    and Sphinx's <link rel="next">, MkDocs' footer), then what a table of contents lists, in its order."""
    order: dict[str, int] = {}
    page = home or ""
    while page and page not in order:
        order[page] = len(order)
        page = navs[page].next if page in navs else ""
    for link in links:
        order.setdefault(link.target, len(order))
    return order


def site_order(refs: list[DocRef], order: Mapping[str, int]) -> list[DocRef]:
    """`refs` in the site's reading order (`order`, reading_order's): each topic where its first page comes,
    and its pages in that order; pages the order does not know come after, as they came."""
    never = len(order)
    rank: dict[str, int] = {}
    for ref in refs:
        rank[ref.topic] = min(rank.get(ref.topic, never), order.get(ref.url, never))
    arrival = {topic: i for i, topic in enumerate(dict.fromkeys(ref.topic for ref in refs))}
    return sorted(refs, key=lambda ref: (rank[ref.topic], arrival[ref.topic], order.get(ref.url, never)))
