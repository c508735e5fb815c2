"""discover(source) -> [DocRef]: read an llms.txt, sitemap, URL list or local folder."""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urldefrag, urljoin, urlparse

from lxml import etree

from .errors import SourceError
from .fetch import INDEX_TYPES, FetchLimits, fetch
from .models import DocRef

__all__ = ["discover", "parse_llms_txt", "parse_sitemap", "parse_url_list", "topic_for_url", "LlmsIndex"]

log = logging.getLogger(__name__)

PAGE_SUFFIXES = (".html", ".htm", ".md", ".markdown")
_LINK = re.compile(r"^\s*[-*+]\s*\[(?P<title>[^\]]*)\]\((?P<url>[^)\s]+)(?:\s+\"[^\"]*\")?\)\s*(?::\s*(?P<note>.*))?$")
_MAX_SITEMAPS = 50


class LlmsIndex:
    """What an llms.txt says: a title, a summary and links grouped in sections."""

    def __init__(self, title: str, summary: str, refs: list[DocRef]) -> None:
        self.title, self.summary, self.refs = title, summary, refs


def discover(source: str, limits: FetchLimits = FetchLimits(), limit: int | None = None) -> LlmsIndex:
    """Turn what the user pointed at into the pages to analyse (no duplicates) and the site's title."""
    source = source.strip()
    if not source:
        raise SourceError("--source is empty")
    scheme = urlparse(source).scheme
    if scheme in ("http", "https", "file"):
        found = _from_url(source, limits, depth=0)
    elif len(scheme) > 1:
        raise SourceError(f"unsupported source {source!r}: use an http(s) URL or a local path")
    else:
        found = _from_path(Path(source).expanduser(), limits)
    refs = _dedupe(found.refs)
    if not refs:
        raise SourceError(f"no pages found in {source}")
    return LlmsIndex(found.title or source, found.summary, refs[:limit] if limit else refs)


def _from_path(path: Path, limits: FetchLimits) -> LlmsIndex:
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if path.is_dir():
        return LlmsIndex(path.resolve().name, "", _from_folder(path))
    return _from_text(_read_local(path), path.resolve().as_uri(), limits, depth=0)


def _read_local(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _from_folder(folder: Path) -> list[DocRef]:
    root = folder.resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES)
    refs = []
    for file in files:
        rel = file.relative_to(root)
        topic = str(rel.parent) if str(rel.parent) != "." else "(root)"
        refs.append(DocRef(url=file.as_uri(), title="", topic=topic))
    return refs


def _from_url(url: str, limits: FetchLimits, depth: int) -> LlmsIndex:
    got = fetch(DocRef(url), FetchLimits(limits.connect_timeout, limits.read_timeout,
                                         limits.max_bytes, limits.max_redirects, INDEX_TYPES))
    if not got.ok:
        raise SourceError(f"cannot read source {url}: {got.error}")
    text = got.content.decode(got.encoding or "utf-8-sig", errors="replace").lstrip("\ufeff")
    return _from_text(text, got.final_url, limits, depth)


def _from_text(text: str, base_url: str, limits: FetchLimits, depth: int) -> LlmsIndex:
    head = text.lstrip()[:500].lower()
    if head.startswith("<?xml") or "<urlset" in head or "<sitemapindex" in head:
        pages, children = parse_sitemap(text.encode("utf-8"), base_url)
        if depth >= 2 and children:
            raise SourceError("sitemap index nests too deeply (more than two levels)")
        for child in children[:_MAX_SITEMAPS]:
            pages.extend(_from_url(child, limits, depth + 1).refs)
        return LlmsIndex(urlparse(base_url).netloc or "sitemap", "", pages)
    if head.startswith("<"):
        raise SourceError(f"{base_url} is an HTML page, not an index: point --source at an llms.txt, "
                          "sitemap.xml, URL list or folder")
    if any(_LINK.match(line) for line in text.splitlines()):
        return parse_llms_txt(text, base_url)
    return LlmsIndex("", "", parse_url_list(text, base_url))


def parse_llms_txt(text: str, base_url: str) -> LlmsIndex:
    """Read the llms.txt convention: `# Title`, `> summary`, `## Section`, `- [title](url): note`."""
    title, summary, section, refs = "", "", "", []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# ") and not title:
            title = stripped[2:].strip()
        elif stripped.startswith(">") and not summary and not section:
            summary = stripped.lstrip("> ").strip()
        elif stripped.startswith("## "):
            section = stripped[3:].strip()
        elif match := _LINK.match(line):
            url = urljoin(base_url, match["url"])
            if urlparse(url).scheme not in ("http", "https", "file"):
                log.warning("skipping link with unsupported scheme in llms.txt: %s", match["url"])
                continue
            refs.append(DocRef(url=urldefrag(url)[0], title=match["title"].strip(),
                               topic=section or title or "(root)", note=(match["note"] or "").strip()))
    return LlmsIndex(title, summary, refs)


def parse_sitemap(data: bytes, base_url: str) -> tuple[list[DocRef], list[str]]:
    """Pages of a <urlset>, and child sitemaps of a <sitemapindex>."""
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True,
                                                            huge_tree=False))
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"sitemap {base_url} is not valid XML: {exc}") from None
    locs = [urljoin(base_url, (el.text or "").strip())
            for el in root.iter("{*}loc") if (el.text or "").strip()]
    if etree.QName(root).localname == "sitemapindex":
        return [], locs
    return [DocRef(url=urldefrag(loc)[0], topic=topic_for_url(loc)) for loc in locs], []


def parse_url_list(text: str, base_url: str) -> list[DocRef]:
    """One URL per line; blank lines and `#` comments are skipped."""
    refs = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        url = urljoin(base_url, stripped)
        if urlparse(url).scheme not in ("http", "https", "file") or " " in stripped:
            raise SourceError(f"line {number} of the URL list is not a URL: {stripped[:80]!r}")
        refs.append(DocRef(url=urldefrag(url)[0], topic=topic_for_url(url)))
    return refs


def topic_for_url(url: str) -> str:
    """A page's topic when the index names none: the first folder of its path."""
    parts = PurePosixPath(urlparse(url).path).parts[1:-1]
    return parts[0] if parts else "(root)"


def _dedupe(refs: list[DocRef]) -> list[DocRef]:
    seen: set[str] = set()
    unique = []
    for ref in refs:
        key = ref.url.rstrip("/") if urlparse(ref.url).path not in ("", "/") else ref.url
        if key not in seen:
            seen.add(key)
            unique.append(ref)
    return unique
