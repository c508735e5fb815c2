"""discover(source) -> LlmsIndex: read an llms.txt, sitemap, URL list or local folder into pages to analyse."""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import replace
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeXML

from .encoding import choose_encoding, decode
from .errors import SourceError
from .fetch import INDEX_TYPES, FetchLimits, fetch
from .models import ROOT_TOPIC, DocRef
from .navigation import (PageNav, TocLink, folder_site_name, home_name, nav_topics, read_nav, reading_order, site_order,
                         toc_links, toc_sections)
from .titles import split_site_name
from .redact import printable
from .sampling import sample

__all__ = ["discover", "read_sitemap", "parse_llms_txt", "parse_sitemap", "parse_url_list", "topic_for_url", "LlmsIndex"]

log = logging.getLogger(__name__)

PAGE_SUFFIXES = (".html", ".htm", ".md", ".markdown")
_ITEM = r"^\s*(?:[-*+]|\d+[.)])\s+"
# - [title](url "optional title"): note   (titles may hold [brackets], URLs one level of (parentheses);
#  the note may follow ':' or a dash)
_LINK = re.compile(_ITEM + r"\[(?P<title>(?:[^\[\]]|\[[^\]]*\])*)\]"
                   r"\(<?(?P<url>(?:[^()\s<>]|\([^()\s]*\))+)>?(?:\s+\"[^\"]*\")?\)"
                   r"\s*(?:[:\-–—]\s*(?P<note>.*))?$")
_BARE = re.compile(_ITEM + r"<?(?P<url>https?://[^\s<>]+?)>?\s*$")
_MAX_SITEMAPS = 50
_DEFUSED = {"DTDForbidden": "declares a DTD (sitemaps need none; entity expansion is refused)",
            "EntitiesForbidden": "declares entities (entity expansion is refused)",
            "ExternalReferenceForbidden": "refers to an external entity"}
_SCHEMES = ("http", "https", "file")


class LlmsIndex:
    """What an index says: a title, a summary and the pages, each with its topic.

    When the source is a web page rather than an index, `crawl_from` is that page's URL and `refs`
    holds only it: the crawl finds the rest. `sectioned`: the topics are the site's own sections (an
    llms.txt's `##` sections, a folder's navigation), which --limit samples across."""

    def __init__(self, title: str, summary: str, refs: list[DocRef], crawl_from: str | None = None,
                 sectioned: bool = False, named: bool = False) -> None:
        self.title, self.summary, self.refs, self.crawl_from = title, summary, refs, crawl_from
        self.sectioned = sectioned
        self.named = named  # `title` is the site's own name (an llms.txt's H1, a folder's common <title> part)


_CONTENTS = ("contents.html", "docs.html", "toc.html", "doclist.html")  # a site's contents page, besides its home
_NAV_FILES = 20_000  # past this many HTML files, topics come from folders alone (reading heads costs ~1 ms a file)


def discover(source: str, limits: FetchLimits = FetchLimits(), limit: int | None = None,
             own: tuple[Path, ...] = ()) -> LlmsIndex:
    """Turn what the user pointed at into the pages to analyse (no duplicates) and the site's title. Files
    under `own` folders (the run's output and state dirs) are never pages: a report is not documentation.
    `limit` keeps that many pages spread across the site's sections (sampling.sample), not the first ones."""
    source = source.strip()
    if not source:
        raise SourceError("--source is empty")
    scheme = urlparse(source).scheme
    if scheme in ("http", "https"):
        data, final = _read_url(source, limits)
        if _is_html(data):  # a page, not an index: crawl its site from here
            return LlmsIndex(urlparse(final).netloc, "", [DocRef(url=final, topic=ROOT_TOPIC)], crawl_from=final)
        found = _from_bytes(data, final, limits, depth=0)
    elif scheme == "file":
        found = _from_bytes(*_read_url(source, limits), limits, depth=0)
    elif len(scheme) > 1:
        raise SourceError(f"unsupported source {source!r}: use an http(s) URL or a local path")
    else:
        found = _from_path(Path(source).expanduser(), limits)
    refs = [ref for ref in _dedupe(found.refs) if not _under_any(ref.url, own)]
    if not refs:
        raise SourceError(f"no pages found in {source}")
    return LlmsIndex(found.title or source, found.summary, sample(refs, limit, by_topic=found.sectioned),
                     sectioned=found.sectioned, named=found.named)


def _from_path(path: Path, limits: FetchLimits) -> LlmsIndex:
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if path.is_dir():
        return _from_folder(path)
    return _from_bytes(*_read_url(path.resolve().as_uri(), limits), limits, depth=0)


def _from_folder(folder: Path) -> LlmsIndex:
    """Every page file under `folder`. Topics come from the pages' navigation (their up links) where they
    have one, else from their subfolder; the title is the site's name, from what the pages' titles share."""
    root = folder.resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES
                   and _inside(p, root)  # a symlink out of the folder is not one of its pages
                   and not _built(p.relative_to(root)))
    html = [file for file in files if file.suffix.lower() in (".html", ".htm")]
    navs = {file.as_uri(): read_nav(file, file.as_uri()) for file in html} if len(html) <= _NAV_FILES else {}
    files = _pages_only(files, html, navs)
    home = next(((root / name).as_uri() for name in ("index.html", "index.htm") if (root / name).is_file()), None)
    by_nav = nav_topics({url: replace(nav, title=split_site_name(nav.title)[0]) for url, nav in navs.items()}, home)
    home_topic = home_name(split_site_name(navs[home].title)[0]) if home in navs and navs[home].title else ROOT_TOPIC
    links = toc_links(root / Path(home).name, home) if home else []
    # pages with no up link at the top of the folder: the sections of a table of contents that lists them
    listed, toc = ({}, links) if by_nav else _toc_sections(root, home, links, set(navs))
    refs = []
    for file in files:
        url = file.as_uri()
        rel = file.relative_to(root)
        folder_topic = str(rel.parent) if str(rel.parent) != "." else listed.get(url, home_topic)
        refs.append(DocRef(url=url, title="", topic=by_nav.get(url) or folder_topic))
    name = folder_site_name(navs, home, "")
    return LlmsIndex(name or root.name, "", site_order(refs, reading_order(navs, home, toc)), sectioned=bool(by_nav or listed),
                     named=bool(name))


def _toc_sections(root: Path, home: str | None, links: list[TocLink],
                  pages: set[str]) -> tuple[dict[str, str], list[TocLink]]:
    """The sections of the home page's table of contents, or of a contents page beside it (SQLite's
    docs.html, Sphinx's contents.html) when that one groups more pages; with the links that gave them."""
    best: tuple[dict[str, str], list[TocLink]] = (toc_sections(links, pages), links)
    for name in _CONTENTS:
        page = root / name
        if page.is_file() and page.as_uri() != home:
            found = toc_links(page, page.as_uri())
            sections = toc_sections(found, pages)
            if len(sections) > len(best[0]):
                best = (sections, found)
    return best


def _built(rel: Path) -> bool:
    """A generator's own files, not the docs: Sphinx's _static, _sources, _modules (highlighted source code),
    _images, _downloads; any folder whose name starts with "_" or "." holds such."""
    return any(part.startswith(("_", ".")) for part in rel.parts[:-1])


def _pages_only(files: list[Path], html: list[Path], navs: dict[str, PageNav]) -> list[Path]:
    """`files` without what is not a page of its own: redirect stubs (MkDocs' "Redirecting..."), a 404
    page, and a Markdown source beside the HTML page made from it (Node.js ships both)."""
    made = {file.with_suffix("") for file in html}
    return [file for file in files
            if not (file.suffix.lower() in (".md", ".markdown") and file.with_suffix("") in made)
            and file.stem not in ("404", "404-page")
            and not (file.as_uri() in navs and navs[file.as_uri()].stub)]


def _read_url(url: str, limits: FetchLimits) -> tuple[bytes, str]:
    got = fetch(DocRef(url), replace(limits, allowed_types=INDEX_TYPES | {""}))
    if not got.ok:
        raise SourceError(f"cannot read source {url}: {got.error}")
    return got.content, got.final_url


_XML_ENCODING = re.compile(rb"""^(\s*<\?xml[^>]*?encoding\s*=\s*["'])[^"']+""")


def _from_bytes(data: bytes, base_url: str, limits: FetchLimits, depth: int) -> LlmsIndex:
    data = _gunzipped(data, limits, base_url)
    if choose_encoding(data).startswith(("utf-16", "utf-32")):  # read as UTF-8 from here on
        data = _XML_ENCODING.sub(rb"\1utf-8", decode(data).encode("utf-8", "replace"), count=1)
    if b"\x00" in data[:4096]:
        raise SourceError(f"{base_url} is a binary file, not an llms.txt, sitemap, URL list or folder")
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:500].lower()
    if _is_sitemap(data):
        return _from_sitemap(data, base_url, limits, depth)
    if head.startswith(b"<"):
        raise SourceError(f"{base_url} is an HTML page, not an index: point --source at an llms.txt, "
                          "sitemap.xml, URL list or folder (or at a web page's http(s) URL to crawl its site)")
    text = decode(data)
    lines = text.splitlines()
    if any(_LINK.match(line) for line in lines):
        return parse_llms_txt(text, base_url)
    try:
        return LlmsIndex("", "", parse_url_list(text, base_url))
    except SourceError:
        if any(line.startswith(("## ", "> ")) for line in lines):  # sections or a summary: an llms.txt
            raise SourceError(f"{base_url} reads as an llms.txt but lists no links in the '- [title](url)' "
                              "form") from None
        raise


def _is_html(data: bytes) -> bool:
    """A web page, XHTML included (DocBook's start with <?xml and a DOCTYPE html), not a sitemap."""
    head = _head(data)
    if b"<urlset" in head or b"<sitemapindex" in head:
        return False
    if head.startswith(b"<?xml"):
        return b"<!doctype html" in head or b"<html" in head
    return head.startswith(b"<")


def _head(data: bytes) -> bytes:
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1000].lower()


def read_sitemap(url: str, limits: FetchLimits) -> list[DocRef]:
    """The pages a sitemap (or sitemap index) at `url` lists; none when it is missing or unreadable."""
    try:
        data, final = _read_url(url, limits)
        data = _gunzipped(data, limits, final)
        if not _is_sitemap(data):
            return []
        return _from_sitemap(data, final, limits, depth=0).refs
    except SourceError as exc:
        log.info("no sitemap at %s: %s", url, exc)
        return []


def _gunzipped(data: bytes, limits: FetchLimits, where: str) -> bytes:
    """A gzip file (sitemap.xml.gz) inflated, to at most the page cap: a small file that would inflate to
    gigabytes stops there with the reason. Anything else comes back as it is."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limits.max_bytes + 1)
    except zlib.error as exc:
        raise SourceError(f"{where} is not a readable gzip file ({exc})") from None
    if len(out) > limits.max_bytes:
        raise SourceError(f"{where} inflates to more than {limits.max_bytes:,} bytes (--max-page-mb); not read")
    if not inflater.eof:
        raise SourceError(f"{where} is a truncated gzip file")
    return out


def _is_sitemap(data: bytes) -> bool:
    head = _head(data)
    return b"<urlset" in head or b"<sitemapindex" in head or (head.startswith(b"<?xml") and not _is_html(data))


def _from_sitemap(data: bytes, base_url: str, limits: FetchLimits, depth: int) -> LlmsIndex:
    pages, children = parse_sitemap(data, base_url)
    if depth >= 2 and children:
        raise SourceError("sitemap index nests too deeply (more than two levels)")
    for child in children[:_MAX_SITEMAPS]:
        try:
            pages.extend(_from_bytes(*_read_url(child, limits), limits, depth + 1).refs)
        except SourceError as exc:  # one broken child does not sink the others
            log.warning("skipping sitemap %s: %s", child, exc)
    if children and not pages:
        raise SourceError(f"none of the {len(children)} sitemaps listed in {base_url} could be read")
    return LlmsIndex(urlparse(base_url).netloc or "sitemap", "", _topics_by_prefix(pages))


def parse_llms_txt(text: str, base_url: str) -> LlmsIndex:
    """Read the llms.txt convention: `# Title`, `> summary`, `## Section`, `- [title](url): note`."""
    title, summary, section, refs = "", "", "", []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("# ") and not title:
            title = stripped[2:].strip()
        elif stripped.startswith(">") and not summary and not section:
            summary = stripped.lstrip("> ").strip()
        elif stripped.startswith("## "):
            section = stripped[3:].strip()
        elif match := (_LINK.match(line) or _BARE.match(line)):
            url = _joined(base_url, match["url"])
            if url is None:
                log.warning("llms.txt line %d: skipping a link that is not a URL: %s", number, match["url"][:100])
                continue
            refused = _not_listable(url, base_url)
            if refused:
                log.warning("llms.txt line %d: skipping %s (%s)", number, printable(match["url"][:200]), refused)
                continue
            groups = match.groupdict()
            refs.append(DocRef(url=urldefrag(url)[0], title=(groups.get("title") or "").strip(),
                               topic=section or title or ROOT_TOPIC, note=(groups.get("note") or "").strip()))
        elif "](" in stripped:
            log.warning("llms.txt line %d does not read as a link, skipped: %s", number, stripped[:100])
    return LlmsIndex(title, summary, refs, sectioned=bool(section), named=bool(title))


def parse_sitemap(data: bytes, base_url: str) -> tuple[list[DocRef], list[str]]:
    """Pages of a <urlset>, and child sitemaps of a <sitemapindex>."""
    try:  # defusedxml: a sitemap is someone else's file; no DTD, so no entity bombs and no external entities
        root = SafeXML.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise SourceError(f"sitemap {base_url} refused: it {_DEFUSED.get(type(exc).__name__, 'is unsafe XML')}"
                          ) from None
    except SafeXML.ParseError as exc:
        raise SourceError(f"sitemap {base_url} is not valid XML: {exc}") from None
    texts = [(el.text or "").strip() for el in root.iterfind(".//{*}loc")]
    odd = [text for text in texts if text and not _one_token(text)]
    if odd:
        log.warning("sitemap %s: %d <loc> entries are not URLs (spaces or control characters), skipped: %s",
                    base_url, len(odd), printable(odd[0][:100]))
    joined = [_joined(base_url, text) for text in texts if text and _one_token(text)]
    locs = [loc for loc in joined if loc is not None and not _not_listable(loc, base_url)]  # left out
    if root.tag.rpartition("}")[2] == "sitemapindex":
        return [], locs
    return [DocRef(url=urldefrag(loc)[0], topic=topic_for_url(loc)) for loc in locs], []


def parse_url_list(text: str, base_url: str) -> list[DocRef]:
    """One URL per line; blank lines and `#` comments are skipped."""
    refs = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        joined = _joined(base_url, stripped)
        if joined is None:
            raise SourceError(f"line {number} of the URL list is not a URL: {stripped[:60]!r}")
        url, scheme = joined, urlparse(joined).scheme
        refused = _not_listable(url, base_url) if scheme == "file" else None
        if refused:
            log.warning("line %d of the URL list: skipping %s (%s)", number, printable(stripped[:200]), refused)
            continue
        if scheme not in _SCHEMES or not _one_token(stripped):
            raise SourceError(f"line {number} of the URL list is not a URL: {stripped[:60]!r}")
        refs.append(DocRef(url=urldefrag(url)[0], topic=topic_for_url(url)))
    return _topics_by_prefix(refs)


def _one_token(text: str) -> bool:
    """A URL has no spaces or control characters in it (a sentence is not a relative link)."""
    return text.isprintable() and not any(char.isspace() for char in text)


def _joined(base_url: str, href: str) -> str | None:
    """`href` resolved against `base_url`, or None when it is not a URL (e.g. a stray bracket in the host:
    "Invalid IPv6 URL")."""
    try:
        url = urljoin(base_url, href)
        urlparse(url)
        topic_for_url(url)
    except ValueError:
        return None
    return url


def _not_listable(url: str, base_url: str) -> str | None:
    """Why an index may not list `url`: it lists http(s) pages, and a local index also files inside its own
    folder (after `..` and symlinks are resolved), so an index cannot reach ~/.ssh or /etc."""
    scheme, base = urlparse(url).scheme, urlparse(base_url)
    if scheme in ("http", "https"):
        return None
    if scheme != "file" or base.scheme != "file":
        return f"unsupported scheme {scheme or '(none)'}"
    return None if _inside(_local_path(url), _local_path(base_url).parent) else "a file outside the index's folder"


def _under_any(url: str, folders: tuple[Path, ...]) -> bool:
    return urlparse(url).scheme == "file" and any(_inside(_local_path(url), folder) for folder in folders)


def _local_path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop: not a page
        return False


def topic_for_url(url: str) -> str:
    """A page's topic when the index names none: the first folder of its path."""
    parts = _folders(url)
    return parts[0] if parts else ROOT_TOPIC


def _folders(url: str) -> tuple[str, ...]:
    """The folders a page sits in. The last part of the path is the page itself, with or without a
    trailing slash: /guide/install/ (MkDocs' and Hugo's pretty URLs) is the page 'install' in 'guide'."""
    return PurePosixPath(urlparse(url).path).parts[1:-1]


def _topics_by_prefix(refs: list[DocRef]) -> list[DocRef]:
    """Topics from the first folder below the folders all pages share (so /docs/v2/api/x → 'api')."""
    if len(refs) < 2:
        return refs
    folders = [_folders(ref.url) for ref in refs]
    common = 0
    while all(len(f) > common for f in folders) and len({f[common] for f in folders}) == 1:
        common += 1
    return [DocRef(ref.url, ref.title, f[common] if len(f) > common else ROOT_TOPIC, ref.note)
            for ref, f in zip(refs, folders)]


def _dedupe(refs: list[DocRef]) -> list[DocRef]:
    seen: set[str] = set()
    unique = []
    for ref in refs:
        key = re.sub(r"/index\.html?$", "/", ref.url)
        key = key.rstrip("/") if urlparse(key).path not in ("", "/") else key
        if key not in seen:
            seen.add(key)
            unique.append(ref)
    return unique
