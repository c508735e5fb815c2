"""A page's own content as clean Markdown, for the pages/ folder and llms-full.txt: headings, lists, tables,
links made absolute, images as links, code fenced with its language. html-to-markdown (Rust) converts; chosen
by measurement over real documentation (benchmarks/bench_markdown.py): about 3 ms a page, where markdownify
took 40 ms and trafilatura 46 ms and lost tables and code languages."""

from __future__ import annotations

import re

import html_to_markdown
import lxml.html
from lxml import etree

from .chrome import code_language

__all__ = ["html_markdown", "normalise_markdown"]

_OPTIONS = dict(extract_metadata=False, bullets="-", autolinks=False, compact_tables=True,
                sup_symbol="^")  # without it 2<sup>31</sup> reads "231"
_LANGUAGE = {"python3": "python", "py": "python", "pycon": "python", "sh": "shell", "console": "shell",
             "bash": "shell", "js": "javascript", "psql": "sql", "postgresql": "sql"}
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def html_markdown(main: etree._Element, base_url: str) -> str:
    """The Markdown of `main`, a page's content region with its chrome already stripped. Each code block's
    language (which Sphinx writes on a wrapper <div>) is set on its <pre> first, where the converter looks;
    that changes `main`'s classes, nothing the rest of the parse reads."""
    for pre in main.iter("pre"):
        language = code_language(pre)
        if language:
            pre.set("class", f"language-{_LANGUAGE.get(language.lower(), language.lower())}")
    html = lxml.html.tostring(main, encoding="unicode")
    options = html_to_markdown.ConversionOptions(base_url=base_url, **_OPTIONS)
    return normalise_markdown(html_to_markdown.convert(html, options).content or "")


def normalise_markdown(text: str) -> str:
    """Markdown as every page file ends up: Unix line ends, no trailing spaces, at most one blank line in a
    row outside code fences (inside them the code is kept as written), one final newline. A Markdown source
    passes through this alone."""
    lines: list[str] = []
    fenced = False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced:
            line = line.rstrip()
            if not line and lines and not lines[-1]:
                continue
        lines.append(line)
    body = "\n".join(lines).strip("\n")
    return body + "\n" if body.strip() else ""
