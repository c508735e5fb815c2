"""The report as data, in reading order and free of any format, so report.md and report.html say the same."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote, urldefrag, urlparse

from .llms_txt import flat_line
from .models import NO_TOPIC, ROOT_TOPIC, DocResult, DocStatus
from .redact import printable
from .report_figures import STAGE_NAMES, Figure, Timing, counted
from .report_figures import figures as _figures, timing as _timing, work_line as _work_line

__all__ = ["Report", "Overview", "TopicEntry", "PageEntry", "Related", "ItemList", "Figure", "Timing", "build_report",
           "plain", "web_address", "counted", "STAGE_NAMES", "NO_OVERVIEW", "REUSED_NOTE", "FALLBACK_NOTE"]

NO_OVERVIEW = ("No page of this run introduces the site and no topic synthesis sums it up; the topics below say "
               "what it holds.")
REUSED_NOTE = "From the cache: this analysis was made by an earlier run."
FALLBACK_NOTE = "Answered by the offline extractive analyser (LLM unavailable)"
_MOST = 3  # concepts, advice and code patterns shown per page
_ITEM_CHARS = 200  # an advice or code item is one line of at most this
_OPENING_WORDS = ("introduction", "overview", "about", "welcome", "getting started")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s<>\"']+", re.IGNORECASE)


@dataclass(frozen=True)
class Related:
    """One of a page's related topics; `anchor` is the topic or page of this run it names, else None."""

    name: str
    relationship: str
    anchor: str | None = None


@dataclass(frozen=True)
class ItemList:
    """One labelled list under a page and how it reads: `separator` between items on one line, or None for one
    item a line (whole sentences)."""

    label: str
    items: tuple[str | Related, ...]
    separator: str | None


@dataclass(frozen=True)
class PageEntry:
    """One page as the report shows it; text is plain (flattened and cut, not yet escaped for any format)."""

    anchor: str
    url: str
    title: str
    topic: str
    error: str | None = None  # set: the page failed, and this is why
    summary: str = ""
    concepts: tuple[tuple[str, int], ...] = ()
    advice: tuple[str, ...] = ()  # whole sentences: what to do and why
    code: tuple[str, ...] = ()  # what each code pattern does
    fields: tuple[tuple[str, str | None], ...] = ()
    related: tuple[Related, ...] = ()
    reused: bool = False
    fallback_tasks: tuple[str, ...] = ()
    text_tokens: int = 0

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def lists(self) -> tuple[ItemList, ...]:
        """The page's fields, concepts, advice, code patterns and related topics, those it has, in that order."""
        fields = tuple(f"{name} = {'—' if value is None else value}" for name, value in self.fields)
        lists = (ItemList("Fields", fields, "; "),
                 ItemList("Concepts", tuple(f"{name} ({importance})" for name, importance in self.concepts), ", "),
                 ItemList("Advice", self.advice, None), ItemList("Code", self.code, None),
                 ItemList("Related", self.related, ", "))
        return tuple(item_list for item_list in lists if item_list.items)


@dataclass(frozen=True)
class TopicEntry:
    """A topic, its synthesis (overview and themes, or why there is none) and its pages."""

    name: str
    anchor: str
    pages: tuple[PageEntry, ...]
    overview: str = ""
    themes: tuple[str, ...] = ()
    synthesis_error: str = ""

    @property
    def failed(self) -> int:
        return sum(page.failed for page in self.pages)

    @property
    def text_tokens(self) -> int:
        return sum(page.text_tokens for page in self.pages)

    @property
    def pages_note(self) -> str:
        """"7 pages", "7 pages, 1 failed"."""
        return counted(len(self.pages), "page") + (f", {self.failed} failed" if self.failed else "")


@dataclass(frozen=True)
class Overview:
    """What the site is, from what the run read: its opening page's summary and one topic's synthesis."""

    opening: PageEntry | None
    lead: TopicEntry | None  # the topic whose synthesis overview is quoted


@dataclass(frozen=True)
class Report:
    title: str
    provider_label: str
    model: str
    mode: str
    unfinished: str  # the run's status when it did not complete, else ""
    not_reached: int
    overview: Overview
    topics: tuple[TopicEntry, ...]
    failures: tuple[PageEntry, ...]
    figures: tuple[Figure, ...]
    notes: tuple[str, ...]  # the figures explained where a sum over pages or requests exceeds the wall time
    work: str  # run.json's `work` block in a sentence ("" when there is none)
    timing: Timing

    @property
    def pages(self) -> int:
        return sum(len(topic.pages) for topic in self.topics)

    @property
    def reused(self) -> int:
        return sum(page.reused for topic in self.topics for page in topic.pages)

    @property
    def intro(self) -> str:
        """The sentence under the title: what was read, by what, and whether earlier runs answered for it."""
        reused = f" {counted(self.reused, 'page')} came from the cache, analysed by an earlier run." \
            if self.reused else ""
        return (f"{counted(self.pages, 'page')} in {counted(len(self.topics), 'topic')}, analysed by "
                f"{self.provider_label}, model {self.model}, mode {self.mode}.{reused} "
                "The run's figures are at the end.")

    @property
    def unfinished_note(self) -> str:
        return "" if not self.unfinished else (
            f"This run did not finish ({self.unfinished}): {counted(self.not_reached, 'page')} "
            f"{'was' if self.not_reached == 1 else 'were'} not reached; what follows covers the pages that finished.")

    @property
    def failures_note(self) -> str:
        """Below the failures: how many, or that there were none."""
        if self.failures:
            return f"{len(self.failures):,} of {counted(self.pages, 'page')} failed; see results.jsonl for details."
        return "None: every page completed." if not self.not_reached else "None of the pages reached failed."


def build_report(results: list[DocResult], synthesis: dict[str, Any], summary: dict[str, Any],
                 title: str) -> Report:
    """The report for `results`, the topic syntheses and run.json's `summary`: topics in the site's order
    (run.json's topic_order), and the pages of each in the order `results` gives them (the site's reading order)."""
    grouped: dict[str, list[DocResult]] = {}
    for result in results:
        grouped.setdefault(result.topic or NO_TOPIC, []).append(result)
    site = {name: i for i, name in enumerate(summary.get("topic_order") or ())}
    names = sorted(grouped, key=lambda name: _topic_order(name, site))
    anchors = _Anchors()
    topic_anchors = {name: anchors.take("topic", name) for name in names}
    anchored = {name: [(r, anchors.take("page", r.title or _stem(r.url))) for r in grouped[name]] for name in names}
    resolve = _resolver([pair for name in names for pair in anchored[name]], topic_anchors)
    topics = tuple(_topic(name, topic_anchors[name], synthesis.get(name),
                          tuple(_page(r, anchor, resolve) for r, anchor in anchored[name])) for name in names)
    docs = summary.get("documents", {})
    status = str(summary.get("status") or "completed")
    rows, notes = _figures(summary, results, synthesised=bool(synthesis))
    return Report(
        title=plain(title or "Documentation", 200), provider_label=plain(summary.get("provider_label", ""), 120),
        model=plain(summary.get("model", ""), 120), mode=plain(summary.get("mode", ""), 40),
        unfinished="" if status == "completed" else plain(status, 120), not_reached=int(docs.get("not_reached", 0)),
        overview=_overview(topics), topics=topics,
        failures=tuple(page for topic in topics for page in topic.pages if page.failed),
        figures=rows, notes=notes, work=_work_line(summary["work"]) if summary.get("work") else "",
        timing=_timing(summary))


def plain(text: Any, width: int = 300) -> str:
    """One line of page-derived text, cut to `width`: whitespace runs become one space, and escape sequences
    and control characters are dropped (redact.printable), so nothing can hide or reorder what follows. A cut
    falls at a word's end when there is one in the last 40 % of the width, and ends in "…"."""
    flat = flat_line(str(text))
    if len(flat) <= width:
        return flat
    head = flat[: width - 1]
    space = head.rfind(" ")
    return (head[:space] if space >= width * 0.6 else head).rstrip(" ,;:") + "…"  # at a word's end if one is near


def web_address(url: str) -> str | None:
    """`url` fit to be a link: only http(s) and file URLs, printable and percent-encoded wherever a character
    could end it in Markdown or HTML; None for anything else (javascript:, data:, …), which is never linked."""
    if urlparse(url).scheme not in ("http", "https", "file"):
        return None
    return quote(printable(url), safe=":/?#[]@!$&'*+,;=%~-._")


def _topic_order(name: str, site: dict[str, int]) -> tuple[int, int, str]:
    """The site's own order (run.json's topic_order, the index's), then the site's top and the rest by name;
    pages without a topic last."""
    if name == NO_TOPIC:
        return (2, 0, "")
    if name in site:
        return (0, site[name], "")
    return (1, 0 if name == ROOT_TOPIC else 1, name.casefold())


def _stem(url: str) -> str:
    path = urlparse(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or url


class _Anchors:
    """Stable, unique anchors: a prefix and the name's slug, suffixed -2, -3 … when a slug is taken. Each slug
    keeps the number it reached, so n pages of one name take n steps, not n²/2."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._next: dict[str, int] = {}

    def take(self, prefix: str, name: str) -> str:
        base = f"{prefix}-{_slug(name)}"
        n = self._next.get(base, 1)
        anchor = base if n == 1 else f"{base}-{n}"
        while anchor in self._taken:  # only where another name's slug is this one's with a number
            n += 1
            anchor = f"{base}-{n}"
        self._next[base] = n + 1
        self._taken.add(anchor)
        return anchor


def _slug(name: str) -> str:
    """`name`'s letters, digits and marks in any script, lower case, words joined by "-" (as HTML ids and
    GitHub's headings allow): "Работа с JSON" → "работа-с-json"; "x" when nothing is left."""
    text = unicodedata.normalize("NFKC", name[:200]).lower()
    kept = "".join(char if unicodedata.category(char)[0] in "LNM" else " " for char in text)
    return "-".join(kept.split())[:60].strip("-") or "x"


def _resolver(pages: list[tuple[DocResult, str]], topic_anchors: dict[str, str]) -> Callable[[dict, str], str | None]:
    """A function from one related topic (and the page naming it) to the anchor it names, or None: a page of
    this run whose address the relationship gives, else a page whose title or a topic whose name it is
    (case-insensitively). A page naming itself names nothing."""
    by_url: dict[str, str] = {}
    by_title: dict[str, str] = {}
    for result, anchor in pages:
        by_url.setdefault(urldefrag(result.url).url, anchor)
        by_title.setdefault(plain(result.title, 200).casefold(), anchor)
    by_topic = {plain(name, 200).casefold(): anchor for name, anchor in topic_anchors.items()}

    def resolve(item: dict[str, Any], own: str) -> str | None:
        text = f"{item.get('name', '')} {item.get('relationship', '')}"
        urls = (urldefrag(u.rstrip(").,;:")).url for u in _URL.findall(text))
        name = plain(item.get("name", ""), 200).casefold()
        found = [by_url.get(u) for u in urls] + [by_title.get(name), by_topic.get(name)]
        return next((anchor for anchor in found if anchor and anchor != own), None)

    return resolve


def _page(result: DocResult, anchor: str, resolve: Callable[[dict, str], str | None]) -> PageEntry:
    common = dict(anchor=anchor, url=result.url, title=plain(result.title or result.url, 200),
                  topic=result.topic or NO_TOPIC, reused=result.reused, text_tokens=result.text_tokens)
    if result.status is DocStatus.FAILED or not result.analysis:
        return PageEntry(**common, error=plain(result.error or "no analysis"))
    analysis = result.analysis
    concepts = sorted(analysis.get("key_concepts") or [], key=lambda c: -c["importance"])[:_MOST]
    return PageEntry(
        **common, summary=plain(analysis.get("summary", ""), 400),
        concepts=tuple((plain(c["name"], 80), c["importance"]) for c in concepts),
        advice=tuple(plain(item.get("description") or item.get("title", ""), _ITEM_CHARS)
                     for item in (analysis.get("implementation_details") or [])[:_MOST]),
        code=tuple(_code(item) for item in (analysis.get("code_patterns") or [])[:_MOST]),
        fields=tuple((plain(name, 80), None if value is None else plain(value, 80))
                     for name, value in (result.fields or {}).items()),
        related=tuple(Related(plain(item.get("name", ""), 80), plain(item.get("relationship", ""), 200),
                              resolve(item, anchor)) for item in analysis.get("related_topics") or []),
        fallback_tasks=tuple(result.fallback_tasks))


def _code(item: dict[str, Any]) -> str:
    """What a code pattern does, led by its name unless the description says it already ("psql mydb — Shell:
    runs psql"; a name's "(shell)" is left out when the description starts with it)."""
    name, said = plain(item.get("name", ""), 120), plain(item.get("description", ""), _ITEM_CHARS)
    language = re.search(r"\s*\(([^()]+)\)$", name)
    if language and said.casefold().startswith(language.group(1).casefold()):
        name = name[:language.start()]
    if not said or name.casefold() in said.casefold():
        return plain(said or name, _ITEM_CHARS)
    return plain(f"{name} — {said}", _ITEM_CHARS)


def _topic(name: str, anchor: str, synthesis: Any, pages: tuple[PageEntry, ...]) -> TopicEntry:
    if isinstance(synthesis, dict):
        return TopicEntry(plain(name, 120), anchor, pages, overview=plain(synthesis.get("overview", ""), 2000),
                          themes=tuple(plain(theme, 80) for theme in synthesis.get("key_themes") or []))
    return TopicEntry(plain(name, 120), anchor, pages, synthesis_error=plain(synthesis) if synthesis else "")


def _overview(topics: tuple[TopicEntry, ...]) -> Overview:
    """No synthesis covers the whole site, so this quotes what does exist, each with its source: the opening
    page's summary (an index page, the site's top, or an introduction) and its topic's synthesis unless that
    topic is the opening page alone or its synthesis says the same (without an opening page: the first topic's
    synthesis there is)."""
    pages = [page for topic in topics for page in topic.pages if not page.failed and page.summary]
    opening = min(pages, key=_opening_rank, default=None)
    if opening is not None and _opening_rank(opening)[0] == 3:
        opening = None
    if opening is not None:
        lead = next((t for t in topics if t.overview and any(p is opening for p in t.pages)), None)
        if lead is not None and (len(lead.pages) == 1 or lead.overview.casefold() == opening.summary.casefold()):
            lead = None  # it would say the opening page's summary again
    else:
        lead = next((t for t in topics if t.overview), None)
    return Overview(opening, lead)


def _opening_rank(page: PageEntry) -> tuple[int, int, str]:
    """0: an index page (the shallowest wins); 1: a page at the site's top; 2: an introduction; 3: none of these."""
    path = urlparse(page.url).path
    depth = path.count("/")
    if path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower() in ("index", "readme", ""):  # "": a folder's own page
        return 0, depth, page.url
    if page.topic == ROOT_TOPIC:
        return 1, depth, page.url
    if page.title.lower().startswith(_OPENING_WORDS):
        return 2, depth, page.url
    return 3, depth, page.url
