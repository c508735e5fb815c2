"""Telling a documentation page's content from its chrome (navigation, sidebars, permalink marks)."""

from __future__ import annotations

from urllib.parse import urljoin

from lxml import etree

__all__ = ["strip_chrome", "main_region", "code_language", "base_url"]

_DROP_TAGS = ("script", "style", "noscript", "nav", "aside", "form", "svg", "iframe", "template", "button",
              "select", "object", "embed", "canvas", "footer")
_ROLES = ("navigation", "search", "banner", "contentinfo", "complementary")
# class names doc generators give to chrome (Sphinx, MkDocs, Docusaurus, VitePress, Hugo, DocBook …)
_CHROME_CLASS = ("headerlink", "linenos", "linenodiv", "lineno", "breadcrumb", "breadcrumbs", "sidebar",
                 "sphinxsidebar", "related", "toc", "table-of-contents", "tableofcontents", "pagination",
                 "pagination-nav", "edit-this-page", "md-source-file", "skip-link", "sr-only", "visually-hidden",
                 "copybtn", "anchor", "hash-link", "header-anchor", "theme-doc-toc-mobile", "theme-doc-toc-desktop",
                 "theme-doc-footer", "theme-doc-breadcrumbs", "md-sidebar", "md-header", "md-footer", "md-tabs",
                 "md-content__button", "edit-link", "editlink", "last-updated", "navheader", "navfooter")
# the content region, most specific first
_MAIN = ("//main//article", "//article", "//main", "//*[@role='main']", "//*[@itemprop='articleBody']",
         "//div[contains(concat(' ', normalize-space(@class), ' '), ' body ')]",
         "//*[@id='apicontent']", "//*[@id='yui-main']", "//*[@id='main-content']",  # Node.js, Django, others
         "//body")
_CHROME = frozenset(_CHROME_CLASS)
_DROP = frozenset(_DROP_TAGS)
_FOOTNOTES = frozenset({"footnote", "footnote-list", "footnotes"})
_PERMALINK_TEXT = {"¶", "#", "§", "🔗", "\u200b", ""}


def strip_chrome(root: etree._Element) -> None:
    """Remove navigation, sidebars, footers, line numbers and permalink marks, in place. One pass over the
    elements (a union of XPath searches walked the tree once per tag). Footnotes stay: Sphinx puts them in
    an <aside class="footnote">."""
    doomed = []
    for el in root.iter(etree.Element):
        tag = el.tag
        classes = (el.get("class") or "").split()
        if tag in _DROP:
            if tag != "aside" or _FOOTNOTES.isdisjoint(classes):
                doomed.append(el)
        elif el.get("role") in _ROLES or el.get("aria-hidden") == "true" or not _CHROME.isdisjoint(classes):
            doomed.append(el)
        elif tag == "header" and next(el.iterancestors("main", "article"), None) is None:
            doomed.append(el)
        elif tag == "a" and el.get("href", "").startswith("#") and _clean(el.text_content()) in _PERMALINK_TEXT:
            doomed.append(el)  # a heading's permalink anchor
        elif tag == "a" and "edit this page" in f"{el.get('title', '')} {el.text_content()}".lower():
            doomed.append(el)
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()


def main_region(root: etree._Element) -> etree._Element:
    """The element holding the page's own content."""
    for path in _MAIN:
        found = root.xpath(path)
        if found:
            return found[0]
    return root


def code_language(pre: etree._Element) -> str:
    """The language a code block declares on itself, its <code>, or a wrapping highlight <div>."""
    candidates = [*pre.iter("code"), pre]
    parent = pre.getparent()
    for _ in range(6):  # MkDocs nests <pre> in a line-number table inside div.language-x
        if parent is None or parent.tag in ("article", "main", "section", "body"):
            break
        candidates.append(parent)
        parent = parent.getparent()
    for el in candidates:
        for cls in (el.get("class") or "").split():
            for prefix in ("language-", "lang-", "highlight-source-", "highlight-"):
                if cls.startswith(prefix) and cls[len(prefix):] not in ("", "default", "none", "text"):
                    return cls[len(prefix):]
    return ""


def base_url(root: etree._Element, page_url: str) -> str:
    """The URL relative links resolve against: the page's, or its <base href>."""
    base = root.xpath("//head/base/@href")
    return urljoin(page_url, base[0].strip()) if base and base[0].strip() else page_url


def _clean(text: str) -> str:
    return " ".join(text.split()).strip("\u200b ")
