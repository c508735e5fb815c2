"""Write a crawlable documentation site (HTML with navigation, sections, robots.txt) for tests and benchmarks."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["write_docsite", "touch_page", "page_path"]

_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title} — Skiff docs</title></head>
<body><nav class="sidebar"><a href="{root}index.html">Home</a>{nav}</nav>
<main><h1>{title}</h1>
<p>{title} explains how Skiff moves {noun} between workers. You should configure the {noun} pool before
starting it, and always close the connection when done. Version {version} of this page.</p>
<h2>Options</h2><p>Set <code>{slug}_retries</code> to control retries for {noun} jobs.</p>
<pre><code class="language-python">def run_{slug}(queue):
    return queue.start("{noun}")</code></pre>
<h2>Related</h2><p>See {links}.</p>
</main><footer>Copyright Skiff</footer></body></html>
"""
_NOUNS = ("messages", "tasks", "events", "records", "batches", "streams", "signals", "tokens")


def page_path(section: int, number: int) -> str:
    """The site-relative path of one generated page."""
    return f"docs/part-{section}/page-{number:03d}.html"


def write_docsite(root: Path, pages: int = 60, sections: int = 4, robots: str = "") -> list[str]:
    """Write `pages` content pages in `sections` folders under docs/, a home page linking the section
    indexes, and each section index linking its pages (so all are within depth 2 of docs/index.html).
    Returns every written page's site-relative path (home and section indexes included)."""
    docs = root / "docs"
    written = ["docs/index.html"]
    section_links = []
    per_section: dict[int, list[int]] = {s: [] for s in range(sections)}
    for number in range(pages):
        per_section[number % sections].append(number)
    for section, numbers in per_section.items():
        folder = docs / f"part-{section}"
        folder.mkdir(parents=True, exist_ok=True)
        items = "".join(f'<li><a href="page-{n:03d}.html">Page {n}</a></li>' for n in numbers)
        (folder / "index.html").write_text(
            f"<!DOCTYPE html><html><head><title>Part {section}</title></head><body><main><h1>Part {section}</h1>"
            f"<p>The pages of part {section} of the Skiff manual.</p><ul>{items}</ul></main></body></html>")
        written.append(f"docs/part-{section}/index.html")
        section_links.append(f'<li><a href="part-{section}/">Part {section}</a></li>')
        for position, number in enumerate(numbers):
            neighbour = numbers[(position + 1) % len(numbers)]
            _write_page(root, section, number, neighbour, version=1)
            written.append(page_path(section, number))
    (docs / "index.html").write_text(
        "<!DOCTYPE html><html><head><title>Skiff manual</title></head><body><main><h1>Skiff manual</h1>"
        "<p>Skiff is a fictional job runner. Start with a part below.</p>"
        f"<ul>{''.join(section_links)}</ul><p><a href='/elsewhere/out.html'>Outside the docs</a> "
        "<a href='logo.png'>logo</a> <a href='mailto:team@example.org'>mail</a></p></main></body></html>")
    if robots:
        (root / "robots.txt").write_text(robots)
    return written


def touch_page(root: Path, section: int, number: int, neighbour: int, version: int) -> None:
    """Rewrite one page with new content and move its mtime forward, so Last-Modified changes too."""
    _write_page(root, section, number, neighbour, version)
    path = root / page_path(section, number)
    later = time.time() + 10 * version
    os.utime(path, (later, later))


def _write_page(root: Path, section: int, number: int, neighbour: int, version: int) -> None:
    noun = _NOUNS[number % len(_NOUNS)]
    extra = "".join(f"<h2>Changes in version {v}</h2><p>Version {v} added {noun} tracing.</p>"
                    for v in range(2, version + 1))
    html = _PAGE.format(title=f"Topic {number} of part {section}", noun=noun, slug=f"p{number}", version=version,
                        root="../", nav=f'<a href="index.html">Part {section}</a>',
                        links=f'<a href="page-{neighbour:03d}.html">the next page</a>')
    if extra:
        html = html.replace("</main>", extra + "</main>")
    (root / page_path(section, number)).write_text(html)
