"""parse(Fetched) -> ParsedDoc: pure and picklable, so it runs inline or in a process pool."""

from __future__ import annotations

import re
from urllib.parse import urldefrag, urljoin, urlparse

import lxml.html
from lxml import etree
from markdown_it import MarkdownIt

from .encoding import decode, not_text
from .chrome import base_url, code_language, main_region, strip_chrome
from .errors import ParseError
from .models import Chunk, CodeBlock, Fetched, Link, PagePlace, ParsedDoc, Section
from .markdown_page import html_markdown, normalise_markdown
from .navigation import up_link
from .titles import head_title, page_title, split_site_name
from .tokens import estimate_tokens, tokens_for_chars

__all__ = ["parse", "chunk_text", "PARSE_VERSION"]

PARSE_VERSION = "8"  # bump when parsing changes, so cached parses are not reused

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {"p", "li", "dt", "dd", "blockquote", "td", "th", "figcaption", "caption", "summary"}
_WS = re.compile(r"[\s\u200b\ufeff]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_JOIN = "\n\n"
_MARKDOWN = MarkdownIt("commonmark").enable("table")
_HUGE_HINT = re.compile(r",?\s*(use|try) XML_PARSE_HUGE.*", re.DOTALL)  # libxml2's advice is not the user's to take
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_MAX_LINKS = 5000  # per page, in-text links and outlinks each: a page listing more is not documentation


def parse(fetched: Fetched, chunk_tokens: int = 800, markdown: bool = True) -> ParsedDoc:
    """Extract title, sections, text, links, code blocks and token-sized chunks from one page; and its clean
    Markdown when `markdown` (a run that writes neither pages/ nor llms-full.txt spares the conversion)."""
    if not fetched.ok:
        raise ParseError(f"nothing to parse: {fetched.error}")
    if not_text(fetched.content, fetched.encoding):
        raise ParseError("not a text document")
    media = fetched.content_type
    source = ""
    if media in ("text/markdown", "text/x-markdown") or _looks_markdown(fetched.final_url, media):
        source = _decode(fetched)
        root = _read_html((_MARKDOWN.render(source) or "<p></p>").encode("utf-8", "replace"))
        fmt = "markdown"
    elif media == "text/plain" and not _looks_html(fetched.content):
        source = _decode(fetched)
        root = _plain_root(source)
        fmt = "text"
    else:
        root = _html_root(fetched)
        fmt = "html"
    return _extract(root, fetched, fmt, chunk_tokens, source, markdown)


def _looks_html(content: bytes) -> bool:
    """HTML served as text/plain (it happens): sniff the start."""
    head = content[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"\xef\xbb\xbf<!doctype html"))


def _looks_markdown(url: str, media: str) -> bool:
    return media == "text/plain" and urlparse(url).path.lower().endswith((".md", ".markdown"))


def _decode(fetched: Fetched, html: bool = False) -> str:
    return decode(fetched.content, fetched.encoding, html)


def _html_root(fetched: Fetched) -> etree._Element:
    if not fetched.content.strip():
        raise ParseError("page is empty")
    return _read_html(_decode(fetched, html=True).encode("utf-8", "replace"))  # decoded by rules lxml lacks


def _read_html(content: bytes) -> etree._Element:
    """The tree of UTF-8 `content`, or ParseError when the page is past what the HTML parser will build (it
    stops at 256 levels of nesting and at 10 MB of unbroken text, and would otherwise hand back a silent part)."""
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True)
    try:
        root = lxml.html.document_fromstring(content, parser=parser)
    except (etree.LxmlError, ValueError) as exc:
        if any(error.type == etree.ErrorTypes.ERR_NO_MEMORY for error in parser.error_log):
            raise MemoryError("the HTML parser ran out of memory") from None
        raise ParseError(f"unreadable HTML: {exc}") from None
    for error in parser.error_log:
        if error.type == etree.ErrorTypes.ERR_RESOURCE_LIMIT:
            raise ParseError(f"past the HTML parser's limits: {_HUGE_HINT.sub('', error.message).strip()}")
    return root


def _plain_root(text: str) -> etree._Element:
    text = _NOT_XML.sub("", text)  # control characters a tree cannot hold (an ESC in a log excerpt)
    root = lxml.html.document_fromstring("<html><body></body></html>")
    body = root.find("body")
    for para in re.split(r"\n\s*\n", text):
        if para.strip():
            etree.SubElement(body, "p").text = para.strip()
    return root


def _extract(root: etree._Element, fetched: Fetched, fmt: str, chunk_tokens: int, source: str = "",
             markdown: bool = True) -> ParsedDoc:
    """The page's parts from its tree; `source`: a Markdown or text page's own text, kept as its Markdown."""
    links_base = base_url(root, fetched.final_url)
    outlinks = _outlinks(root, links_base)  # before the chrome goes: a crawl follows the navigation too
    place = PagePlace(*up_link(root, links_base), site=split_site_name(head_title(root))[1])
    strip_chrome(root)
    main = main_region(root)
    title = page_title(root, main)
    walker = _Walker(links_base)
    walker.walk(main)
    sections = walker.sections()
    text = "\n\n".join(s.text if not s.heading else f"{s.heading}\n{s.text}".strip() for s in sections).strip()
    if not text:
        raise ParseError("page has no readable text")
    title = title or next((s.heading for s in sections if s.heading), "") or fetched.ref.title or fetched.ref.url
    return ParsedDoc(
        url=fetched.ref.url,
        title=title,
        topic=fetched.ref.topic,
        text=text,
        headings=tuple(s.heading for s in sections if s.heading),
        sections=tuple(sections),
        links=tuple(walker.links),
        outlinks=outlinks,
        code_blocks=tuple(walker.code),
        chunks=tuple(chunk_text(text, chunk_tokens)),
        tokens=estimate_tokens(text),
        fmt=fmt,
        place=place,
        markdown=("" if not markdown else normalise_markdown(source) if source
                  else html_markdown(main, links_base)),  # after the walk
    )


def _outlinks(root: etree._Element, base: str) -> tuple[str, ...]:
    """Every http(s) link on the whole page, fragment removed, in document order, once each."""
    found: dict[str, None] = {}
    for a in root.iter("a"):
        if len(found) >= _MAX_LINKS:
            break
        href = (a.get("href") or "").strip()
        if href and not href.startswith("#"):
            try:
                url = urldefrag(urljoin(base, href))[0]
                if urlparse(url).scheme in ("http", "https"):
                    found.setdefault(url)
            except ValueError:  # e.g. a malformed IPv6 host: not a link worth following
                continue
    return tuple(found)


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


class _Walker:
    """Walks the main region in document order, collecting sections, links and code."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.links: list[Link] = []
        self.code: list[CodeBlock] = []
        self._seen_links: set[str] = set()
        self._heading, self._level, self._parts = "", 0, []
        self._sections: list[Section] = []

    def walk(self, el: etree._Element) -> None:
        self._text(el.text)
        for child in el:
            tag = child.tag if isinstance(child.tag, str) else ""
            self._collect_links(child)
            if tag in _HEADINGS:
                self._flush()
                self._heading, self._level = _clean(child.text_content()), _HEADINGS[tag]
            elif tag == "pre":
                self._code(child)
            elif tag in _BLOCKS and child.find(".//pre") is None:
                self._text(child.text_content())
            elif tag:
                self.walk(child)
            self._text(child.tail)

    def sections(self) -> list[Section]:
        self._flush()
        return self._sections

    def _text(self, text: str | None) -> None:
        cleaned = _clean(text or "")
        if cleaned:
            self._parts.append(cleaned)

    def _code(self, pre: etree._Element) -> None:
        code = pre.text_content().strip("\n")
        if not code.strip():
            return
        self.code.append(CodeBlock(code=code, language=code_language(pre)))
        self._parts.append(code)

    def _collect_links(self, el: etree._Element) -> None:
        anchors = [el] if el.tag == "a" else el.iter("a") if isinstance(el.tag, str) else []
        for a in anchors:
            if len(self.links) >= _MAX_LINKS:
                return
            href = (a.get("href") or "").strip()
            if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
                continue
            try:
                url = urldefrag(urljoin(self.base_url, href))[0]
                scheme = urlparse(url).scheme
            except ValueError:  # a malformed link (e.g. a broken IPv6 host) is just text
                continue
            if scheme in ("http", "https", "file") and url not in self._seen_links:
                self._seen_links.add(url)
                self.links.append(Link(url, _clean(a.text_content())[:120]))

    def _flush(self) -> None:
        if self._heading or self._parts:
            self._sections.append(Section(self._heading, self._level, "\n".join(self._parts)))
        self._heading, self._level, self._parts = "", 0, []


def chunk_text(text: str, max_tokens: int) -> list[Chunk]:
    """Split text at paragraph, then sentence, then character boundaries into chunks of at most max_tokens."""
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        pieces.extend(_split_piece(para.strip(), max_tokens))
    chunks: list[Chunk] = []
    current: list[str] = []
    chars = 0  # length of "\n\n".join(current), separators included
    for piece in pieces:
        grown = chars + len(piece) + (len(_JOIN) if current else 0)
        if current and tokens_for_chars(grown) > max_tokens:
            chunks.append(_chunk(len(chunks), current))
            current, grown = [], len(piece)
        current.append(piece)
        chars = grown
    if current:
        chunks.append(_chunk(len(chunks), current))
    return chunks


def _split_piece(piece: str, max_tokens: int) -> list[str]:
    if not piece:
        return []
    if estimate_tokens(piece) <= max_tokens:
        return [piece]
    sentences = _SENTENCE.split(piece)
    if len(sentences) > 1:
        return [part for s in sentences for part in _split_piece(s, max_tokens)]
    width = int(max_tokens * 4)
    return [piece[i:i + width] for i in range(0, len(piece), width)]


def _chunk(index: int, parts: list[str]) -> Chunk:
    text = _JOIN.join(parts)
    return Chunk(index=index, text=text, tokens=estimate_tokens(text))
