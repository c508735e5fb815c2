"""report.html: one self-contained page with the report's content, a sidebar and charts; page and LLM text in
it is text, never markup, and nothing in it reaches out to the network."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from document_it.cli import main
from document_it.models import DocResult, DocStatus
from document_it.report import write_outputs

HOSTILE = ('<script>alert(1)</script><img src=x onerror=alert(1)>" onmouseover="alert(2)\' x=\'<a href="javascript:'
           'alert(3)">click</a>')


class _Page(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def values(self, attribute: str) -> list[str]:
        return [attrs[attribute] or "" for _, attrs in self.tags if attribute in attrs]

    def ids(self) -> set[str]:
        return set(self.values("id"))


def _result(url: str, topic: str, title: str, related: list[dict] | None = None, ok: bool = True) -> DocResult:
    analysis = {"summary": f"About {title}.", "key_concepts": [{"name": "Queues", "importance": 8}],
                "implementation_details": [{"title": "Pin versions"}], "code_patterns": [{"name": "enqueue (python)"}],
                "related_topics": related or []}
    return DocResult(url=url, title=title, topic=topic, status=DocStatus.COMPLETED if ok else DocStatus.FAILED,
                     error=None if ok else "fetch: HTTP 404", analysis=analysis if ok else None,
                     timings={"fetch": 0.5, "parse": 0.1, "analyze": 4.0}, text_tokens=300 if ok else 0)


def _summary(llm: bool = False) -> dict:
    figures = {"requests": 9, "prompts": 9, "attempts": 9, "retries": 0, "rate_limited": 0, "tokens_in": 900,
               "tokens_out": 90, "max_in_flight": 4, "by_status": {"completed": 9, "failed": 0},
               "latency_s": {"p50": 0.5, "p95": 1.0, "max": 1.0}, "cost_usd": 0.001,
               "window": {"current": 4, "cap": 4, "cuts": 0}} if llm else {"requests": 0, "prompts": 4}
    return {"provider_label": "openai" if llm else "extractive (offline, no LLM)", "model": "m", "mode": "hybrid",
            "wall_seconds": 2.0, "documents": {"total": 4, "completed": 3, "failed": 1, "not_reached": 0},
            "llm": figures, "stages": {"fetch": 2.0, "parse": 0.4, "analyze": 16.0, "queue_wait": 6.0, "llm_wait": 3.0}}


def _site() -> list[DocResult]:
    return [_result("https://docs.test/index.html", "Start", "Welcome", [{"name": "Guides", "relationship": "next"}]),
            _result("https://docs.test/guides/retries.html", "Guides", "Retries",
                    [{"name": "welcome", "relationship": "start here"}, {"name": "Celery", "relationship": "x"}]),
            _result("https://docs.test/guides/queues.html", "Guides", "Queues"),
            _result("https://docs.test/gone.html", "Guides", "Gone", ok=False)]


def _write(tmp_path: Path, results: list[DocResult], llm: bool = False) -> tuple[str, str]:
    write_outputs(tmp_path, results, {"Guides": {"overview": "How jobs run.", "key_themes": ["Retries"]}},
                  _summary(llm), "Ferry")
    return (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()


def _svg(page: str, chart: str) -> str:
    return re.search(rf'<figure id="{chart}">.*?</figure>', page, re.S).group()


def test_the_page_has_the_reports_content_and_a_sidebar_to_it(tmp_path):
    page, markdown = _write(tmp_path, _site())
    parsed = _Page(page)
    md_anchors = set(re.findall(r'<a id="([^"]+)"></a>', markdown))
    assert md_anchors <= parsed.ids()  # every section, topic and page of report.md, under the same anchor
    side = re.search(r'<nav class="side".*?</nav>', page, re.S).group()
    assert [href for href in _Page(side).values("href")] == [
        "#overview", "#glance", "#topics", "#topic-guides", "#topic-start", "#failures", "#run"]
    assert re.search(r"Guides</span><span class=n>3</span>", side)
    order = [page.index(f'<section id="{name}"') for name in ("overview", "glance", "topics", "failures", "run")]
    assert order == sorted(order)
    for text in ("About Retries.", "How jobs run.", "Key themes:", "Pin versions", "enqueue (python)",
                 "fetch: HTTP 404", "Page analysis took 16.0 s summed over 4 pages"):
        assert text in page and text in markdown, text
    retries = re.search(r'<li id="page-retries".*?</dl></li>', page, re.S).group()
    assert '<a href="#page-welcome" title="start here">welcome</a>, Celery' in retries


def test_every_chart_is_there_as_inline_svg(tmp_path):
    page, _ = _write(tmp_path, _site(), llm=True)
    bars = _svg(page, "chart-topics")
    assert "<title>Guides: 3 pages</title>" in bars and "<title>Guides: 600 tokens</title>" in bars
    assert "<title>Start: 1 page</title>" in bars
    world = _svg(page, "chart-map")
    assert world.count("<circle") == 2  # two topics
    assert world.count("<path") == 1  # Welcome → Guides and Retries → Welcome: one line between Start and Guides
    assert "<title>Guides ↔ Start: 2 links between their pages</title>" in world
    time = _svg(page, "chart-time")
    for label in ("wall time", "fetching, summed over pages", "page analysis, summed over pages",
                  "LLM: waiting for a slot", "LLM: on the wire"):
        assert f"<title>{label}" in time, label
    assert "8.0× the wall time" in time and 'class="wall"' in time
    offline, _ = _write(tmp_path, _site())
    assert "LLM: waiting" not in _svg(offline, "chart-time")  # no LLM, no LLM bars


def test_page_and_llm_text_is_text_and_no_page_address_becomes_a_script_link(tmp_path):
    results = [_result("javascript:alert(1)", HOSTILE, HOSTILE,
                       [{"name": HOSTILE, "relationship": HOSTILE}, {"name": "x", "relationship": HOSTILE}]),
               _result("data:text/html,<script>alert(4)</script>", "Guides", "Data page", ok=False),
               _result("https://docs.test/ok.html", "Guides", HOSTILE)]
    page, _ = _write(tmp_path, results)
    parsed = _Page(page)
    assert {tag for tag, _ in parsed.tags} <= {"html", "head", "meta", "title", "style", "body", "div", "nav", "ol",
                                               "ul", "li", "a", "span", "main", "h1", "h2", "h3", "small", "section",
                                               "p", "figure", "figcaption", "svg", "text", "title", "rect", "line",
                                               "circle", "path", "g", "strong", "dl", "dt", "dd", "table", "tr", "th",
                                               "td"}
    assert not [name for _, attrs in parsed.tags for name in attrs if name.startswith("on") or name == "src"]
    assert set(parsed.values("href")) - {"https://docs.test/ok.html"} <= {f"#{anchor}" for anchor in parsed.ids()}
    assert "<script" not in page and "javascript:" not in " ".join(parsed.values("href"))
    assert "alert(1)" in "".join(parsed.text)  # what the page said is still there, as text


def test_a_real_run_writes_both_reports_in_order_self_contained(tmp_path):
    out = tmp_path / "out"
    assert main(["--output-dir", str(out), "--state-dir", str(tmp_path / "state"), "--quiet"]) == 0
    markdown, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    sections = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert sections == ["## What the site is", "## Contents", "## Topics", "## Failures", "## Run"]
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', markdown))
    contents = markdown.split("## Contents", 1)[1].split("## Topics", 1)[0]
    toc = re.findall(r"\]\(#([^)]+)\)", contents)
    assert len(toc) > 5 and set(toc) <= anchors
    assert set(re.findall(r"\]\(#([^)]+)\)", markdown)) <= anchors  # related topics too
    assert re.search(r"^  - \[Guides\]\(#topic-guides\): \d+ pages$", contents, re.M)
    parsed = _Page(page)
    pages = {link for link in re.findall(r"\]\(<([^>]+)>\)", markdown)}
    outside = [value for value in parsed.values("href") + parsed.values("src") if not value.startswith("#")]
    assert outside and set(outside) <= pages  # the pages' own addresses, and nothing else
    assert not [tag for tag, attrs in parsed.tags if tag in ("script", "link", "img", "iframe", "object")]
    assert "url(" not in page and "@import" not in page
    for chart in ("chart-topics", "chart-map", "chart-time"):
        assert "<svg" in _svg(page, chart), chart
    assert set(re.findall(r'id="(page-[^"]+)"', page)) == {a for a in anchors if a.startswith("page-")}


def _many_topics(topics: int, pages: int, name: str = "Topic {} of the library reference") -> list[DocResult]:
    """`pages` pages over `topics` topics; each page names its own topic's first page and the next topic's."""
    results = []
    for k in range(pages):
        t = k % topics
        related = [{"name": f"p{t}", "relationship": "same topic"},
                   {"name": name.format((t + 1) % topics), "relationship": "next topic"}]
        results.append(_result(f"https://docs.test/{k}.html", name.format(t), f"p{k}", related))
    return results


def _svg_size(chart: str) -> tuple[float, float]:
    width, height = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', chart).groups()
    return float(width), float(height)


def test_the_map_stays_readable_with_many_topics_and_pages(tmp_path):
    page, _ = _write(tmp_path, _many_topics(25, 530))
    world = _svg(page, "chart-map")
    assert _svg_size(world)[0] <= 900  # shown at its own size in the main column: 12 px text stays 12 px
    assert world.count("<circle") == 25 and world.count("<path") == 25  # one line per pair of related topics
    labels = re.findall(r'font-weight="600">([^<]+)</text>', world)
    assert len(labels) == 25 and all(len(label) <= 30 for label in labels)  # every topic named, long names cut
    assert "Topic 3 of the library…" in labels  # cut at a word's end
    widths = {float(w) for w in re.findall(r'stroke-width="([\d.]+)"', world)}
    assert min(widths) > 5.5  # every pair is linked by 21 or 22 pages: all about the heaviest line's width
    assert "<title>Topic 0 of the library reference ↔ Topic 1 of the library reference: 22 links between their " \
           "pages</title>" in world
    assert "21 links between its pages" in world  # links inside a topic are counted on its dot, not drawn


def test_bar_labels_fit_their_column(tmp_path):
    name = "Extending and Embedding the Python Interpreter"  # 46 characters: more than the old 28
    page, _ = _write(tmp_path, _many_topics(2, 4, name + " {}"))
    bars = _svg(page, "chart-topics")
    assert _svg_size(bars)[0] <= 900
    labels = re.findall(r'text-anchor="end">([^<]+)<title>', bars)
    assert labels == [f"{name} 0", f"{name} 1"]  # whole: the column is as wide as they need
    x = float(re.search(r'<text x="([\d.]+)" y="\d+" text-anchor="end">', bars).group(1))
    assert x >= len(labels[0]) * 6.5  # the column holds them (6.5 px a character at 12 px, generously)
    page, _ = _write(tmp_path, _many_topics(1, 1, "word " * 60 + "{}"))
    label = re.findall(r'text-anchor="end">([^<]+)<title>', _svg(page, "chart-topics"))[0]
    assert label.endswith("word…") and len(label) * 6.6 <= 340  # too long for any column: cut at a word's end
