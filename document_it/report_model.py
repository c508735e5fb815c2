"""The report as data, in reading order and free of any format, so report.md and report.html say the same."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import quote, urldefrag, urlparse

from .models import NO_TOPIC, ROOT_TOPIC, DocResult, DocStatus
from .redact import printable

__all__ = ["Report", "Overview", "TopicEntry", "PageEntry", "Related", "Figure", "Timing", "build_report", "plain",
           "web_address", "counted", "STAGE_NAMES", "NO_OVERVIEW", "REUSED_NOTE", "FALLBACK_NOTE"]

NO_OVERVIEW = ("No page of this run introduces the site and no topic synthesis sums it up; the topics below say "
               "what it holds.")
REUSED_NOTE = "From the cache: this analysis was made by an earlier run."
FALLBACK_NOTE = "Answered by the offline extractive analyser (LLM unavailable)"
STAGE_NAMES = {"fetch": "fetching", "parse": "parsing", "analyze": "page analysis"}  # run.json stage -> words
_MOST = 3  # concepts, advice and code patterns shown per page
_OPENING_WORDS = ("introduction", "overview", "about", "welcome", "getting started")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s<>\"']+", re.IGNORECASE)


@dataclass(frozen=True)
class Related:
    """One of a page's related topics; `anchor` is the topic or page of this run it names, else None."""

    name: str
    relationship: str
    anchor: str | None = None


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
    advice: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    fields: tuple[tuple[str, str | None], ...] = ()
    related: tuple[Related, ...] = ()
    reused: bool = False
    fallback_tasks: tuple[str, ...] = ()
    text_tokens: int = 0

    @property
    def failed(self) -> bool:
        return self.error is not None


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
class Figure:
    """One row of the run's figures."""

    label: str
    value: str


@dataclass(frozen=True)
class Timing:
    """Where the time went: stage times summed over pages and LLM time summed over requests, against the wall."""

    wall: float
    stages: dict[str, float]
    slot_wait: float
    on_wire: float
    llm: bool  # requests went to an LLM: slot_wait and on_wire mean something


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
            f"This run did not finish ({self.unfinished}): {self.not_reached} pages were not reached; what follows "
            "covers the pages that finished.")

    @property
    def failures_note(self) -> str:
        """Below the failures: how many, or that there were none."""
        if self.failures:
            return f"{len(self.failures)} of {self.pages} pages failed; see results.jsonl for details."
        return "None: every page completed." if not self.not_reached else "None of the pages reached failed."


def build_report(results: list[DocResult], synthesis: dict[str, Any], summary: dict[str, Any],
                 title: str) -> Report:
    """The report for `results` (pages in URL order), the topic syntheses and run.json's `summary`."""
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
    figures, notes = _figures(summary, results)
    return Report(
        title=plain(title or "Documentation", 200), provider_label=plain(summary.get("provider_label", ""), 120),
        model=plain(summary.get("model", ""), 120), mode=plain(summary.get("mode", ""), 40),
        unfinished="" if status == "completed" else plain(status, 120), not_reached=int(docs.get("not_reached", 0)),
        overview=_overview(topics), topics=topics,
        failures=tuple(page for topic in topics for page in topic.pages if page.failed),
        figures=figures, notes=notes, work=_work_line(summary["work"]) if summary.get("work") else "",
        timing=_timing(summary))


def plain(text: Any, width: int = 300) -> str:
    """One line of page-derived text, cut to `width`: whitespace runs become one space, and escape sequences
    and control characters are dropped (redact.printable), so nothing can hide or reorder what follows."""
    flat = " ".join(printable(str(text)).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def web_address(url: str) -> str | None:
    """`url` fit to be a link: only http(s) and file URLs, printable and percent-encoded wherever a character
    could end it in Markdown or HTML; None for anything else (javascript:, data:, …), which is never linked."""
    if urlparse(url).scheme not in ("http", "https", "file"):
        return None
    return quote(printable(url), safe=":/?#[]@!$&'*+,;=%~-._")


def counted(n: int, noun: str) -> str:
    """`n` and the noun, plural unless one: "1 page", "7 pages"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


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
    """Stable, unique anchors: a prefix and the name's slug, suffixed -2, -3 … when a slug is taken."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, prefix: str, name: str) -> str:
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-") or "x"
        anchor, n = f"{prefix}-{slug}", 1
        while anchor in self._taken:
            n += 1
            anchor = f"{prefix}-{slug}-{n}"
        self._taken.add(anchor)
        return anchor


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
        advice=_firsts(item["title"] for item in analysis.get("implementation_details") or []),
        code=_firsts(item["name"] for item in analysis.get("code_patterns") or []),
        fields=tuple((plain(name, 80), None if value is None else plain(value, 80))
                     for name, value in (result.fields or {}).items()),
        related=tuple(Related(plain(item.get("name", ""), 80), plain(item.get("relationship", ""), 200),
                              resolve(item, anchor)) for item in analysis.get("related_topics") or []),
        fallback_tasks=tuple(result.fallback_tasks))


def _firsts(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(plain(name, 120) for name in list(names)[:_MOST])


def _topic(name: str, anchor: str, synthesis: Any, pages: tuple[PageEntry, ...]) -> TopicEntry:
    if isinstance(synthesis, dict):
        return TopicEntry(plain(name, 120), anchor, pages, overview=plain(synthesis.get("overview", ""), 2000),
                          themes=tuple(plain(theme, 80) for theme in synthesis.get("key_themes") or []))
    return TopicEntry(plain(name, 120), anchor, pages, synthesis_error=plain(synthesis) if synthesis else "")


def _overview(topics: tuple[TopicEntry, ...]) -> Overview:
    """No synthesis covers the whole site, so this quotes what does exist, each with its source: the opening
    page's summary (an index page, the site's top, or an introduction) and its topic's synthesis (without an
    opening page: the first topic's that has one)."""
    pages = [page for topic in topics for page in topic.pages if not page.failed and page.summary]
    opening = min(pages, key=_opening_rank, default=None)
    if opening is not None and _opening_rank(opening)[0] == 3:
        opening = None
    if opening is not None:
        lead = next((t for t in topics if t.overview and any(p is opening for p in t.pages)), None)
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


def _timing(summary: dict[str, Any]) -> Timing:
    stages, llm = summary.get("stages", {}), summary.get("llm", {})
    return Timing(wall=float(summary.get("wall_seconds", 0.0)),
                  stages={name: float(stages.get(name, 0.0)) for name in STAGE_NAMES},
                  slot_wait=float(stages.get("queue_wait", 0.0)), on_wire=float(stages.get("llm_wait", 0.0)),
                  llm=bool(llm.get("requests")))


def _offline(summary: dict[str, Any]) -> bool:
    """The offline analyser answered (run.json's provider "extractive"): no prompt went to an LLM."""
    return summary.get("provider") == "extractive" or str(summary.get("provider_label", "")).startswith("extractive ")


def _figures(summary: dict[str, Any], results: list[DocResult]) -> tuple[tuple[Figure, ...], tuple[str, ...]]:
    """The run's figures in plain words, and a sentence for each sum that is larger than the wall time."""
    docs, llm, stages = summary.get("documents", {}), summary.get("llm", {}), summary.get("stages", {})
    wall = float(summary.get("wall_seconds", 0.0))
    reached = f", {docs['not_reached']} not reached" if docs.get("not_reached") else ""
    rows = [Figure("pages", f"{docs.get('total', 0)} ({docs.get('completed', 0)} completed, {docs.get('failed', 0)} "
                            f"failed{reached})"),
            Figure("wall time", f"{wall:.2f} s")]
    if any(k in stages for k in STAGE_NAMES):
        rows.append(Figure("stage time, summed over pages", ", ".join(f"{k} {stages[k]:.2f} s" for k in STAGE_NAMES
                                                                     if k in stages)))
    notes = [_side_by_side(STAGE_NAMES[k], stages[k], sum(1 for r in results if k in r.timings), wall)
             for k in STAGE_NAMES if stages.get(k, 0) > wall > 0]
    requests = int(llm.get("requests") or 0)
    if requests:
        waited, wired = stages.get("queue_wait", 0.0), stages.get("llm_wait", 0.0)
        rows.append(Figure("LLM time, summed over requests", f"waiting for a slot {waited:.2f} s, on the wire "
                                                             f"{wired:.2f} s"))
        if waited + wired > wall > 0:
            notes.append(f"The {requests:,} LLM requests spent {waited:.1f} s waiting for a slot (behind the "
                         f"concurrency window, the rate limits or a batch) and {wired:.1f} s on the wire, summed over "
                         f"requests of which up to {llm.get('max_in_flight', 0)} were in flight at once: on average "
                         f"{waited / wall:.1f} were waiting and {wired / wall:.1f} on the wire at any moment of "
                         f"the {wall:.1f} s of wall time.")
    rows += _question_rows(summary, requests, results)
    resources = summary.get("resources")
    if resources:
        rows.append(Figure("peak memory, all processes / CPU (peak, mean; 100 % = one core)",
                           f"{resources['peak_rss_mb']:.0f} MB over {resources['peak_processes']} processes / "
                           f"{resources['peak_cpu_percent']:.0f} %, {resources['mean_cpu_percent']:.0f} %"))
    if requests:
        rows += _llm_rows(llm)
    return tuple(rows), tuple(notes)


def _side_by_side(stage: str, seconds: float, pages: int, wall: float) -> str:
    """A stage's time summed over pages that were in it at the same time, against the wall time it took."""
    over = counted(pages, "page") if pages else "the pages"
    return (f"{stage.capitalize()} took {seconds:.1f} s summed over {over}, which ran side by side: "
            f"{wall:.1f} s of wall time, with about {seconds / wall:.1f} pages in this stage at once (a page's time "
            "includes any wait for a free worker).")


def _question_rows(summary: dict[str, Any], requests: int, results: list[DocResult]) -> list[Figure]:
    """Prompts, the cache and the pages whose analysis an earlier run made, each said as what it is."""
    llm = summary.get("llm", {})
    prompts = int(llm.get("prompts") or 0)
    if _offline(summary):
        rows = [Figure("questions answered offline", f"{prompts:,} (page analyses and topic syntheses, by the "
                                                     "offline analyser: no LLM was asked)")]
    else:
        sent = "each sent as one request" if requests == prompts else \
            f"sent as {counted(requests, 'request')} (the cache answered some, or a batch carried several)"
        rows = [Figure("prompts (questions for the LLM)", f"{prompts:,}, {sent}" if prompts else "none")]
    cache = llm.get("cache") or {}
    if cache.get("enabled"):
        hits, misses = int(cache.get("hits", 0)), int(cache.get("misses", 0))
        what = "parsed pages found in the cache" if _offline(summary) else "parsed pages and answers found in the cache"
        rows.append(Figure(what, f"{hits:,} of {hits + misses:,} looked up"))
    reused = sum(r.reused for r in results)
    if reused:
        rows.append(Figure("pages analysed by an earlier run", f"{reused} of {len(results)} (from the cache, or "
                                                               "kept because the page did not change)"))
    return rows


def _llm_rows(llm: dict[str, Any]) -> list[Figure]:
    latency, cost, window = llm["latency_s"], llm.get("cost_usd"), llm["window"]
    rows = [
        Figure("LLM requests (attempts, retries, 429s)",
               f"{llm['requests']} ({llm['attempts']} attempts, {llm['retries']} retries, "
               f"{llm['rate_limited']} rate-limited)"),
        Figure("requests completed / failed", f"{llm['by_status']['completed']} / {llm['by_status']['failed']}"),
        Figure("latency p50 / p95 / max", f"{latency['p50']:.2f} / {latency['p95']:.2f} / {latency['max']:.2f} s"),
        Figure("tokens in / out", f"{llm['tokens_in']:,} / {llm['tokens_out']:,}"),
        Figure("estimated cost", "unknown price for this model" if cost is None else f"${cost:.4f}"),
        Figure("most requests in flight / window now", f"{llm['max_in_flight']} / {window['current']} of "
                                                       f"{window['cap']} ({window['cuts']} cuts)"),
    ]
    batching = llm.get("batching") or {}
    if batching.get("batches"):
        rows.append(Figure("batches (items mean / max, prompt tokens saved)",
                           f"{batching['batches']} ({batching['items_per_batch_mean']} / "
                           f"{batching['items_per_batch_max']}, {batching['tokens_saved']:,})"))
    if llm.get("fallbacks"):
        rows.append(Figure("answered offline after LLM failures", str(llm["fallbacks"])))
    return rows


def _work_line(work: dict[str, Any]) -> str:
    """run.json's `work` block in one sentence: requests and prompt tokens per page, against the page text."""
    pages, text, ratio = work["pages"], work.get("text_tokens_per_page"), work.get("prompt_per_text")
    if work.get("note") and not work["requests"]:
        read = f"; it read {pages} pages, {text:,} tokens of text each on average" if pages else ""
        return f"Work: {work['note']}{read}."
    if not pages:
        return (f"Work: no page was analysed this run; {work['requests']:,} LLM requests, "
                f"{work['prompt_tokens']:,} prompt tokens.")
    return (f"Work: {round(work['requests_per_page'], 1):g} requests and {work['prompt_tokens_per_page']:,} prompt "
            f"tokens per page, for {text:,} tokens of page text" + (f" ({ratio:.2f}×)." if ratio is not None else "."))
