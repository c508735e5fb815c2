"""The site's llms.txt (llmstxt.org), written from the run's own analysis: its name, a summary, what it
covers, a section per topic in the site's order listing every completed page with a one-line description,
and secondary pages (changelogs, indexes, legal) under "## Optional", as the format defines it.

Nothing here asks a model: the descriptions are the pages' summaries, cut to a line. A page's line depends
on its own analysis alone, so a nightly run that did not analyse a page again writes its line byte for
byte as before."""

from __future__ import annotations

import re
from typing import Any, Iterable
from urllib.parse import quote, urlparse

from .models import NO_TOPIC, DocResult, DocStatus
from .redact import printable

__all__ = ["render_llms_txt", "llms_order", "describe", "secondary", "flat_line"]

_WORDS = 20  # a description's length at most, in words
_OPENING = 3  # pages at the start of the reading order that may say what the site is
_SAYS_SOMETHING = 8  # words
_LISTING = re.compile(r"^The '.*' topic has \d+ page")  # the offline analyser's synthesis: titles, no summary
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
# "This page explains how to …" says nothing the line does not: the verb carries the meaning
_THIS_PAGE = re.compile(r"^(this|the present|the following)\s+(page|document|section|chapter|guide|article|"
                        r"tutorial|reference|topic)\s+(is\s+about\s+|(?=\w))", re.IGNORECASE)
_SECONDARY_TITLE = re.compile(r"^(index\b|general index|(python )?module index|search( page)?$|glossary$|"
                              r"legal notice|license|licen[cs]ing|copyright|privacy|terms of (use|service)|"
                              r"changelog|change ?log|changes\b|release notes|what[’']?s new|history$|"
                              r"acknowledg|credits|about (these|this) doc)", re.IGNORECASE)
_SECONDARY_STEM = re.compile(r"^(genindex.*|.*modindex|search|bookindex|changelog|changes|history|news|license|"
                             r"licen[cs]e|copying|copyright|legalnotice|legal|privacy|terms|404|releaselog)$",
                             re.IGNORECASE)
_SECONDARY_FOLDER = re.compile(r"^(releases?|release-notes|changelog|whatsnew|news|releaselog)$", re.IGNORECASE)


def render_llms_txt(results: list[DocResult], synthesis: dict[str, Any], summary: dict[str, Any],
                    title: str) -> str:
    """llms.txt for the completed pages of `results` (in the site's reading order), grouped by topic in
    run.json's `topic_order`; failed pages are left out."""
    pages = [r for r in results if r.status is DocStatus.COMPLETED and r.analysis]
    main, topics, optional = _sections(pages, summary)
    lines = [f"# {flat_line(title) or 'Documentation'}", ""]
    about = _site_summary(main or pages, synthesis)
    if about:
        lines += [f"> {about}", ""]
    if topics:
        lines += [_covers(main, topics), ""]
    for topic in topics:
        lines += [f"## {flat_line(topic)}", ""]
        lines += [_link(r) for r in main if (r.topic or NO_TOPIC) == topic]
        lines.append("")
    if optional:
        lines += ["## Optional", "", *(_link(r) for r in optional), ""]
    return "\n".join(lines)


def llms_order(results: list[DocResult], summary: dict[str, Any]) -> list[DocResult]:
    """The completed pages of `results` in llms.txt's order: topic by topic in the site's order, the
    secondary ones last (llms-full.txt follows it)."""
    main, topics, optional = _sections([r for r in results if r.status is DocStatus.COMPLETED], summary)
    return [r for topic in topics for r in main if (r.topic or NO_TOPIC) == topic] + optional


def _sections(pages: list[DocResult], summary: dict[str, Any]) -> tuple[list[DocResult], list[str], list[DocResult]]:
    """(the main pages, their topics in the site's order, the secondary pages)."""
    main = [r for r in pages if not secondary(r)]
    topics = _in_order((r.topic or NO_TOPIC for r in main), summary.get("topic_order") or ())
    return main, topics, [r for r in pages if secondary(r)]


def describe(result: DocResult) -> str:
    """One line on what the page is for: its summary's first sentence, without "This page …", cut to about
    twenty words at a clause or word boundary."""
    text = flat_line(str((result.analysis or {}).get("summary") or ""))
    text = re.sub(r"\s*Covers:.*$", "", text)  # the offline analyser's list of headings
    first = _SENTENCE.split(text, 1)[0].strip() if text else ""
    first = _THIS_PAGE.sub("", first).strip()
    if not first:
        return ""
    first = first[0].upper() + first[1:]
    words = first.split()
    if len(words) <= _WORDS:
        return first
    cut = " ".join(words[:_WORDS])
    clause = max(cut.rfind(", "), cut.rfind("; "), cut.rfind(" — "))
    if clause > len(cut) // 2:
        cut = cut[:clause]
    return cut.rstrip(" ,;:—-") + "…"


def secondary(result: DocResult) -> bool:
    """A page readers reach for rather than read: a changelog or release notes, an index, search, legal
    text (the llms.txt format's "Optional" section), or one a source llms.txt listed as optional."""
    if result.topic.strip().casefold() == "optional":  # an llms.txt's own Optional section stays one
        return True
    path = urlparse(result.url).path.rstrip("/")
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    folders = path.split("/")[:-1]
    return bool(_SECONDARY_TITLE.match(result.title.strip()) or _SECONDARY_STEM.match(stem)
                or any(_SECONDARY_FOLDER.match(folder) for folder in folders))


def _link(result: DocResult) -> str:
    """`- [Title](absolute URL): description`, in the form llms.txt readers parse: no brackets in the title,
    no parenthesis or space left unencoded in the URL."""
    name = flat_line(result.title or result.url).replace("[", "(").replace("]", ")")
    line = f"- [{name}]({quote(printable(result.url), safe=':/?#@!$&*+,;=%~-._')})"
    note = describe(result)
    return f"{line}: {note}" if note and note.casefold() != name.casefold() else line


def _site_summary(pages: list[DocResult], synthesis: dict[str, Any]) -> str:
    """One or two sentences on the site: the first of its opening pages (in reading order) whose summary says
    something (a home page that is only a table of contents does not), else the first topic synthesis that
    is not the offline analyser's list of titles."""
    for result in pages[:_OPENING]:
        text = re.sub(r"\s*Covers:.*$", "", flat_line(str((result.analysis or {}).get("summary") or "")))
        sentences = [s for s in _SENTENCE.split(text) if s.strip()][:2]
        if len(" ".join(sentences).split()) >= _SAYS_SOMETHING:
            return " ".join(sentences)
    for value in synthesis.values():
        overview = flat_line(value.get("overview", "")) if isinstance(value, dict) else ""
        if overview and not _LISTING.match(overview):
            return " ".join(_SENTENCE.split(overview)[:2])
    return ""


def _covers(pages: list[DocResult], topics: list[str]) -> str:
    counts = {topic: sum((r.topic or NO_TOPIC) == topic for r in pages) for topic in topics}
    parts = [f"{flat_line(topic)} ({n} page{'s' if n != 1 else ''})" for topic, n in counts.items()]
    return f"The documentation covers {len(topics)} topic{'s' if len(topics) != 1 else ''}: {', '.join(parts)}."


def _in_order(topics: Iterable[str], order: Iterable[str]) -> list[str]:
    """`topics` once each: those `order` names in its order, then the rest as they come."""
    present = list(dict.fromkeys(topics))
    ranked = {name: i for i, name in enumerate(order)}
    return sorted(present, key=lambda name: (ranked.get(name, len(ranked)), present.index(name)))


def flat_line(text: str) -> str:
    """`text` on one line: whitespace runs one space, escape sequences and control characters dropped."""
    return " ".join(printable(text).split())
