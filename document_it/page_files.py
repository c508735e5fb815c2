"""pages/: one clean Markdown file per completed page, named from its URL (a readable part and a hash, so no URL
ever becomes a path of its own choosing), and llms-full.txt: every such page in the site's order, each under
its title and source URL, for tools that load a whole site into context."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from .llms_txt import flat_line
from .models import DocResult, DocStatus
from .redact import printable

__all__ = ["page_file_name", "page_files", "stale_page_files", "render_llms_full", "PAGES_DIR"]

PAGES_DIR = "pages"
_SLUG = re.compile(r"[^a-z0-9]+")
_NAMED = re.compile(r"^[a-z0-9-]*-[0-9a-f]{10}\.md$")  # what page_file_name makes, and nothing else
_SLUG_CHARS = 60
_SLUG_PARTS = 2  # the page's folder and its own name: library-json


def page_file_name(url: str) -> str:
    """A stable file name for the page at `url`: the words of its folder and name (library-json) and ten hex
    digits of the URL's hash, so two URLs never share a name and no path comes from the URL as written."""
    parts = [part for part in urlparse(url).path.split("/") if part][-_SLUG_PARTS:]
    if parts:
        parts[-1] = parts[-1].rsplit(".", 1)[0]
    words = _SLUG.sub("-", "-".join(parts).lower()).strip("-")[-_SLUG_CHARS:].strip("-")
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{words or 'page'}-{digest}.md"


def page_files(results: list[DocResult], markdown: Mapping[str, str]) -> dict[str, str]:
    """file name -> content for every completed page with Markdown kept (url -> Markdown)."""
    return {page_file_name(r.url): markdown[r.url] for r in results
            if r.status is DocStatus.COMPLETED and markdown.get(r.url)}


def stale_page_files(folder: Path, keep: set[str]) -> list[Path]:
    """Files this module named in `folder` that no page of this run has any more (a page removed since)."""
    if not folder.is_dir():
        return []
    return [path for path in folder.iterdir() if _NAMED.match(path.name) and path.name not in keep]


def render_llms_full(ordered: list[DocResult], markdown: Mapping[str, str], title: str) -> str:
    """llms-full.txt: the site's name, then each page of `ordered` (the llms.txt order) that has Markdown,
    under its title and source URL."""
    parts = [f"# {flat_line(title) or 'Documentation'}\n"]
    for result in ordered:
        text = markdown.get(result.url)
        if text:
            parts.append(f"# {flat_line(result.title or result.url)}\n\nSource: {printable(result.url)}\n\n{text}")
    return "\n".join(parts)
