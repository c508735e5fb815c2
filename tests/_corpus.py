"""A small documentation corpus written into a temp folder for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_corpus", "write_many", "PAGES"]

_HTML = """<!DOCTYPE html><html><head><title>{title}</title><style>.x{{color:red}}</style>
<script>trackVisitor()</script></head><body><nav><a href="index.html">Home</a></nav>
<main><h1>{title}</h1><p>{title} explains how the queue handles work. You should configure the
worker pool before starting it. Always close the connection when done.</p>
<h2>Options</h2><p>Set <code>max_retries</code> to control retries for {slug} jobs.</p>
<pre><code class="language-python">def run_{slug}(queue):
    return queue.start()</code></pre>
<p>See <a href="{other}">the related page</a> and <a href="https://example.org/spec">the spec</a>.</p>
</main><footer>Copyright</footer></body></html>"""

_MD = """# {title}

{title} covers scheduling. You must pin the version in production. Use the CLI to inspect jobs.

## Commands

Run the inspector with the flag shown below for {slug}.

```bash
ferry inspect --job {slug}
```

Read [the related page]({other}) next.
"""

PAGES = [
    ("Basics", "Install", "install.html"),
    ("Basics", "Quickstart", "quickstart.md"),
    ("Guides", "Retries", "retries.html"),
    ("Guides", "Scheduling", "scheduling.md"),
    ("Guides", "Workers", "workers.html"),
    ("Reference", "Cli", "cli.md"),
]
# topic syntheses a run asks: one per topic of two pages or more (a topic of one page is its page's summary)
SYNTHESES = sum(1 for topic in {t for t, _, _ in PAGES} if sum(t == topic for t, _, _ in PAGES) > 1)


def write_corpus(root: Path, extra_links: list[str] = ()) -> Path:
    """Write the pages and an llms.txt listing them (plus `extra_links`); return the llms.txt path."""
    (root / "pages").mkdir(parents=True, exist_ok=True)
    lines = ["# Ferry test docs", "> A corpus for document-it's tests.", ""]
    section = None
    for i, (topic, title, name) in enumerate(PAGES):
        other = PAGES[(i + 1) % len(PAGES)][2]
        template = _HTML if name.endswith(".html") else _MD
        slug = name.split(".")[0]
        (root / "pages" / name).write_text(template.format(title=title, slug=slug, other=other))
        if topic != section:
            lines += ["", f"## {topic}", ""]
            section = topic
        lines.append(f"- [{title}](pages/{name}): about {slug}")
    lines += list(extra_links)
    index = root / "llms.txt"
    index.write_text("\n".join(lines) + "\n")
    return index


def write_many(root: Path, count: int) -> Path:
    """`count` distinct Markdown pages in four sections, and their llms.txt; returns the llms.txt path."""
    (root / "pages").mkdir(parents=True, exist_ok=True)
    lines = ["# Many pages", "> Generated for load and fault tests.", ""]
    for section in range(4):
        lines += ["", f"## Part {section}", ""]
        for i in range(section, count, 4):
            slug = f"page-{i:03d}"
            other = f"page-{(i + 1) % count:03d}.md"
            (root / "pages" / f"{slug}.md").write_text(
                _MD.format(title=f"Topic {i} of the manual", slug=slug, other=other))
            lines.append(f"- [Topic {i}](pages/{slug}.md)")
    index = root / "llms.txt"
    index.write_text("\n".join(lines) + "\n")
    return index
