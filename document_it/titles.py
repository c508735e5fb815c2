"""A page's own title: the heading of its content, never the site's header; else its <title> without the
site's name. Also the site's name, from what its pages' titles share."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from lxml import etree

__all__ = ["page_title", "head_title", "split_site_name", "site_name", "shared_name"]

_WS = re.compile(r"[\s\u200b\ufeff]+")
# what doc generators put between a page's name and the site's: "Models — Django 3.2 documentation",
# "Install - MkDocs", "Intro | Docusaurus", "Page · GitBook", "Guide :: Antora"
_SEPARATOR = re.compile(r"\s+(?:—|–|\||·|::|»|-)\s+")
# containers of a site's header or logo, by id or class (Django's #hd, Bootstrap's navbar, themes' masthead)
_HEADER_MARKS = frozenset({"hd", "header", "site-header", "masthead", "navbar", "topbar", "banner", "logo", "brand",
                           "site-title", "site-name", "wy-side-nav-search", "md-header"})


def page_title(root: etree._Element, main: etree._Element) -> str:
    """The content's own <h1> (not a site header); else, or when the content has several <h1>s (SQLite's
    pages head each section "1. Overview" with one), the <title> without the site's name; else any <h1>
    that is not a site header."""
    own = _h1s(main)
    text = head_title(root)
    if own and (len(own) == 1 or not text):
        return own[0]
    if text:
        return split_site_name(text)[0]
    return next(iter(_h1s(root)), "")


def head_title(root: etree._Element) -> str:
    """The page's <title>, as written."""
    head = root.xpath("//head/title")
    return _clean(head[0].text_content()) if head else ""


def split_site_name(title: str) -> tuple[str, str]:
    """("Models", "Django 3.2.25 documentation") from "Models — Django 3.2.25 documentation": the site's
    name is the last part after a separator; a title with none is all page ("CREATE TABLE", "")."""
    cuts = list(_SEPARATOR.finditer(title))
    if not cuts:
        return title, ""
    page, site = title[:cuts[-1].start()].strip(), title[cuts[-1].end():].strip()
    return (page, site) if page and site else (title, "")


def site_name(titles: Iterable[str]) -> str:
    """The site's name: the suffix after a separator that most of the pages' <title>s share ("Django
    3.2.25 documentation"); "" when none does."""
    return shared_name([split_site_name(t)[1] for t in titles if t])


def shared_name(names: list[str]) -> str:
    """The name at least half of `names` (and two or more) agree on; "" (no name) never wins."""
    counts = Counter(name for name in names if name)
    if not counts:
        return ""
    name, seen = counts.most_common(1)[0]
    return name if seen >= max(2, len(names) / 2) else ""


def _h1s(scope: etree._Element) -> list[str]:
    """The texts of the <h1>s under `scope` that are not site headers, in order."""
    return [text for h1 in scope.iter("h1") if not _site_header(h1) and (text := _clean(h1.text_content()))]


def _site_header(h1: etree._Element) -> bool:
    """An <h1> that names the site, not the page: all of its text is a link to another page (Sphinx themes
    link the site's name home: Django's <h1><a href="../../index.html">Django documentation</a>), or it sits
    in a header or logo container (a <header> outside the content is gone with the chrome already)."""
    text = _clean(h1.text_content())
    links = [a for a in h1.iter("a") if not (a.get("href") or "#").startswith("#")]
    if links and _clean(" ".join(a.text_content() for a in links)) == text:
        return True
    parent = h1.getparent()
    while parent is not None:
        marks = {parent.get("id", "").lower(), *(parent.get("class") or "").lower().split()}
        if not _HEADER_MARKS.isdisjoint(marks):
            return True
        parent = parent.getparent()
    return False


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()
