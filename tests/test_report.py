"""Outputs are streamed line by line and replaced whole, never left half-written."""

from __future__ import annotations

import html
import json
import re

import pytest
from markdown_it import MarkdownIt

from document_it.errors import OutputError
from document_it.models import DocResult, DocStatus
from document_it.report import ResultStream, atomic_write_text, one_line, render_report, write_outputs


def _result(url: str, ok: bool = True) -> DocResult:
    analysis = {"summary": f"About {url}.", "key_concepts": [{"name": "Queues", "description": "d", "importance": 9}],
                "implementation_details": [{"title": "Pin versions", "description": "d"}],
                "code_patterns": [], "related_topics": []}
    return DocResult(url=url, title=url.rsplit("/", 1)[-1], topic="Guides",
                     status=DocStatus.COMPLETED if ok else DocStatus.FAILED,
                     error=None if ok else "fetch: HTTP 500", provider="extractive", model="extractive-v1",
                     analysis=analysis if ok else None, timings={"fetch": 0.1})


def _summary(failed: int = 0) -> dict:
    return {"provider_label": "extractive (offline, no LLM)", "model": "extractive-v1", "mode": "hybrid",
            "wall_seconds": 1.5, "documents": {"total": 2, "completed": 2 - failed, "failed": failed},
            "llm": {"requests": 0, "prompts": 10, "tokens_in": 0, "tokens_out": 0, "max_in_flight": 3},
            "stages": {"fetch": 0.2, "parse": 0.1, "analyze": 0.3}}


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old report")
    with pytest.raises(TypeError):
        atomic_write_text(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_stream_lines_are_readable_before_the_run_ends(tmp_path):
    stream = ResultStream(tmp_path / "results.jsonl")
    stream.write(_result("http://127.0.0.1/a"))
    seen = (tmp_path / "results.jsonl").read_text().splitlines()  # another reader, mid-run
    stream.close()
    assert len(seen) == 1 and json.loads(seen[0])["status"] == "completed"


def test_final_outputs_are_sorted_and_consistent(tmp_path):
    results = [_result("http://127.0.0.1/b"), _result("http://127.0.0.1/a", ok=False)]
    write_outputs(tmp_path, results, {"Guides": {"overview": "All about queues.", "key_themes": ["Queues"]}},
                  _summary(failed=1), "Ferry")
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["url"] for r in lines] == ["http://127.0.0.1/a", "http://127.0.0.1/b"]
    assert json.loads((tmp_path / "run.json").read_text())["documents"]["failed"] == 1
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Ferry — analysis")
    assert "All about queues." in report and "Key themes: Queues" in report
    assert "Queues (9)" in report and "  - Advice:\n    - d\n" in report  # the advice's sentence, not its title
    assert "- [a](<http://127.0.0.1/a>): fetch: HTTP 500" in report


def test_report_says_when_nothing_failed():
    report = render_report([_result("http://127.0.0.1/a")], {}, _summary(), "Ferry")
    assert "None: every page completed." in report and "extractive (offline, no LLM)" in report


def _page(url: str, topic: str, title: str, related: list[dict] | None = None, **extra) -> DocResult:
    analysis = {"summary": f"{title} explained.", "key_concepts": [{"name": "Queues", "importance": 7}],
                "implementation_details": [], "code_patterns": [], "related_topics": related or []}
    return DocResult(url=url, title=title, topic=topic, status=DocStatus.COMPLETED, analysis=analysis,
                     timings={"fetch": 0.1, "analyze": 2.0}, text_tokens=100, **extra)


def _site() -> list[DocResult]:
    return [_page("https://docs.test/intro.html", "Start", "Introduction to Ferry"),
            _page("https://docs.test/guide/retries.html", "Guides", "Retries",
                  [{"name": "introduction to FERRY", "relationship": "read first"},  # a page's title, any case
                   {"name": "start", "relationship": "the basics"},  # a topic's name
                   {"name": "Backoff", "relationship": "linked: https://docs.test/guide/backoff.html#top"},  # its URL
                   {"name": "Celery", "relationship": "elsewhere"},  # nothing of this run
                   {"name": "Retries", "relationship": "itself"}]),  # itself: names nothing
            _page("https://docs.test/guide/backoff.html", "Guides", "Backoff strategies")]


def _sections(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("## ")]


def test_the_report_reads_top_down_with_a_linked_table_of_contents():
    synthesis = {"Guides": {"overview": "How jobs fail and come back.", "key_themes": ["Retries"]},
                 "Start": {"overview": "Ferry runs background jobs.", "key_themes": []}}
    report = render_report([*_site(), _page("https://docs.test/install.html", "Start", "Install")], synthesis,
                           _summary(), "Ferry")
    assert _sections(report) == ["## What the site is", "## Contents", "## Topics", "## Failures", "## Run"]
    overview = report.split("## What the site is", 1)[1].split("## Contents", 1)[0]
    assert "[Introduction to Ferry](#page-introduction-to-ferry): Introduction to Ferry explained." in overview
    assert "[Start](#topic-start): Ferry runs background jobs." in overview  # the opening page's topic
    assert "  - [Guides](#topic-guides): 2 pages" in report and "  - [Start](#topic-start): 2 pages" in report
    assert "### Guides (2 pages)" in report
    links = set(re.findall(r"\]\(#([^)]+)\)", report))
    anchors = re.findall(r'<a id="([^"]+)"></a>', report)
    assert len(anchors) == len(set(anchors)) and links <= set(anchors)
    assert report.index("### Guides") < report.index("### Start")  # topics by name: a stable order


def test_related_topics_link_to_the_pages_and_topics_they_name():
    report = render_report(_site(), {}, _summary(), "Ferry")
    related = next(line for line in report.splitlines() if line.startswith("  - Related: "))
    assert related == ("  - Related: [introduction to FERRY](#page-introduction-to-ferry), [start](#topic-start), "
                       "[Backoff](#page-backoff-strategies), Celery, Retries")


def test_anchors_are_unique_when_names_collide():
    results = [_page("https://docs.test/a.html", "A/B", "Intro"), _page("https://docs.test/b.html", "A B", "Intro"),
               _page("https://docs.test/c.html", "", "")]
    report = render_report(results, {}, _summary(), "Ferry")
    anchors = re.findall(r'<a id="([^"]+)"></a>', report)
    assert {"topic-a-b", "topic-a-b-2", "page-intro", "page-intro-2", "page-c-html"} <= set(anchors)
    assert len(anchors) == len(set(anchors))
    assert "### (no topic) (1 page)" in report  # placeholder names read as they are, last


@pytest.mark.parametrize("text, shown", [
    ("page(s) of (root)", "page(s) of (root)"),  # parentheses need nothing
    ("open_pools and max_retries", "open_pools and max_retries"),  # snake_case is no emphasis
    ("task(func=None, **options)", "task(func=None, \\*\\*options)"),
    ("2 * 3 is six", "2 * 3 is six"),
    ("float | None", "float | None"),
    ("# not a heading", "\\# not a heading"),
    ("- not an item", "\\- not an item"),
    ("1. not a list", "1\\. not a list"),
    ("1.5 seconds", "1.5 seconds"),
    ("--hostname flag", "--hostname flag"),
    ("[a link](https://x.test)", "\\[a link\\](https://x.test)"),
    ("<b>bold</b> but a < b", "\\<b>bold\\</b> but a < b"),
    ("use `max_retries=3` here", "use `max_retries=3` here"),  # a whole code span stays code
    ("a lone ` tick", "a lone \\` tick"),
    ("ends in a backslash \\", "ends in a backslash \\\\"),
])
def test_markdown_is_escaped_only_where_it_would_be_misread(text, shown):
    assert one_line(text) == shown


def test_escaped_text_renders_as_exactly_the_text():
    """Through a CommonMark renderer with GitHub's tables and strikethrough, in every place page text goes."""
    renderer = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    texts = ["**bold** _it_ ~~gone~~ ~/.config", "[x]: https://evil.test", "![i](https://evil.test/p.png)",
             "> quote", "+ plus", "=== rule", "***", "a\\*b C:\\dir", "&lt;script&gt; &amp; AT&T", "<!-- c -->",
             "x_y_ __init__ *a*b", "10) ten", "| a | b |", "<https://evil.test>"]
    for text in texts:
        for template in ("{}\n", "- **[{}](<https://docs.test/>)**\n", "### {} (1 page)\n"):
            rendered = renderer.render(template.format(one_line(text)))
            inner = re.sub(r"<[^>]+>", "", rendered).strip()
            assert html.unescape(inner).removesuffix(" (1 page)") == text, (template, text, rendered)
            assert "evil.test" not in " ".join(re.findall(r'(?:href|src)="[^"]*"', rendered))


def test_figures_come_last_and_say_what_a_sum_over_pages_means():
    summary = {**_summary(), "wall_seconds": 1.9, "stages": {"fetch": 0.2, "parse": 0.1, "analyze": 22.83}}
    report = render_report(_site(), {}, summary, "Ferry")
    run = report.split("## Run", 1)[1]
    assert "Page analysis took 22.8 s summed over 3 pages, which ran side by side: 1.9 s of wall time" in run
    assert "Fetching took" not in run  # 0.2 s of fetching is no more than the wall time: nothing to explain
    # the offline analyser: no prompts for an LLM, no LLM time
    assert "| questions answered offline | 10 (page analyses, by the offline analyser" in run  # no synthesis
    assert "prompts" not in run and "LLM time" not in run


def _llm_summary() -> dict:
    llm = {"requests": 38, "prompts": 44, "attempts": 40, "retries": 2, "rate_limited": 1, "tokens_in": 5000,
           "tokens_out": 900, "max_in_flight": 20, "by_status": {"completed": 38, "failed": 0},
           "latency_s": {"p50": 0.5, "p95": 1.0, "max": 2.0}, "cost_usd": None,
           "window": {"current": 20, "cap": 20, "cuts": 0},
           "cache": {"enabled": True, "hits": 6, "misses": 38}}
    return {**_summary(), "provider": "openai", "provider_label": "openai", "model": "gpt-x", "wall_seconds": 38.0,
            "llm": llm, "stages": {"fetch": 1.0, "parse": 1.0, "analyze": 3400.0, "queue_wait": 3373.96,
                                   "llm_wait": 30.0}}


def test_llm_time_summed_over_requests_is_set_against_the_wall_time():
    run = render_report(_site(), {}, _llm_summary(), "Ferry").split("## Run", 1)[1]
    assert "| LLM time, summed over requests | waiting for a slot 3373.96 s, on the wire 30.00 s |" in run
    assert ("The 38 LLM requests spent 3374.0 s waiting for a slot" in run
            and "on average 88.8 were waiting and 0.8 on the wire at any moment of the 38.0 s of wall time" in run)
    assert "| prompts (questions for the LLM) | 44, sent as 38 requests" in run
    assert "| parsed pages and answers found in the cache | 6 of 44 looked up |" in run
    assert "| LLM requests (attempts, retries, 429s) | 38 (40 attempts, 2 retries, 1 rate-limited) |" in run


def test_answers_from_the_cache_are_said_so_and_marked():
    results = _site()
    results[0].reused = results[2].reused = True
    report = render_report(results, {}, _summary(), "Ferry")
    assert "2 pages came from the cache, analysed by an earlier run." in report.split("## ", 1)[0]
    assert report.count("  - From the cache: this analysis was made by an earlier run.") == 2
    assert "| pages analysed by an earlier run | 2 of 3 (from the cache" in report


def test_without_syntheses_or_an_opening_page_the_report_still_reads():
    results = [_page("https://docs.test/guide/a.html", "Guides", "Alpha")]
    report = render_report(results, {}, _summary(), "Ferry")  # --no-synthesis, and no index or introduction
    overview = report.split("## What the site is", 1)[1].split("## Contents", 1)[0]
    assert "No page of this run introduces the site and no topic synthesis sums it up" in overview
    assert "Key themes" not in report
    index = [_page("https://docs.test/guide/index.html", "Guides", "Guide"), *results]
    overview = render_report(index, {}, _summary(), "Ferry").split("## Contents", 1)[0]
    assert "From its opening page, [Guide](#page-guide): Guide explained." in overview
    assert "synthesis" not in overview.split("## What the site is", 1)[1]


def test_every_output_is_tried_and_the_first_failure_is_raised(tmp_path):
    (tmp_path / "report.md").mkdir()  # in the way: report.md cannot be replaced
    with pytest.raises(OutputError, match="report.md"):
        write_outputs(tmp_path, _site(), {}, _summary(), "Ferry")
    assert (tmp_path / "report.html").read_text().startswith("<!doctype html>")
    assert json.loads((tmp_path / "run.json").read_text())["wall_seconds"] == 1.5
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3


def _advising(url: str, topic: str, title: str, advice: list[dict], code: list[dict]) -> DocResult:
    page = _page(url, topic, title)
    page.analysis = {**page.analysis, "implementation_details": advice, "code_patterns": code}
    return page


def test_advice_and_code_say_what_they_mean_one_bounded_line_each():
    long = "You should be aware that " + "the server keeps every connection open until it times out, " * 6
    advice = [{"title": "You should be aware…", "description": long},
              {"title": "Command must be quoted", "description": ""},  # no description: the title
              {"title": "Quote names", "description": "Quote names that\nhold capitals."}]
    code = [{"name": "psql mydb (shell)", "description": "Shell: runs psql"},  # the name says what it runs on
            {"name": "SELECT from weather (SQL)", "description": "SQL: SELECT from weather"},  # said already
            {"name": "vacuumdb", "description": ""}]
    report = render_report([_advising("https://docs.test/a.html", "Guides", "Alpha", advice, code)], {}, _summary(),
                           "Ferry")
    lines = report.split("  - Advice:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    first = lines[0].removeprefix("    - ")
    assert first.startswith("You should be aware that the server keeps") and first.endswith(" times…")
    assert 150 < len(first) <= 200 and long.startswith(first.removesuffix("…") + " ")  # cut at a word's end
    assert lines[1:] == ["    - Command must be quoted", "    - Quote names that hold capitals.", "  - Code:",
                         "    - psql mydb — Shell: runs psql", "    - SQL: SELECT from weather", "    - vacuumdb"]


def test_pages_keep_the_order_given_and_results_jsonl_is_sorted(tmp_path):
    given = [_page("https://docs.test/z-first.html", "Guides", "First"),
             _page("https://docs.test/a-second.html", "Guides", "Second"),
             _page("https://docs.test/m-third.html", "Guides", "Third")]
    write_outputs(tmp_path, given, {}, _summary(), "Ferry")
    lines = [json.loads(line)["url"] for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert lines == sorted(lines)
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        shown = [text.index(f"docs.test/{stem}.html") for stem in ("z-first", "a-second", "m-third")]
        assert shown == sorted(shown), name  # the site's reading order, as given


def test_anchors_keep_any_script_and_many_same_names_stay_unique():
    titles = ["Работа с JSON", "配置", "Café", "Intro", "Intro 2", "Intro", "Intro"]
    results = [_page(f"https://docs.test/{i}.html", "Руководство", title) for i, title in enumerate(titles)]
    report = render_report(results, {}, _summary(), "Ferry")
    anchors = re.findall(r'<a id="([^"]+)"></a>', report)
    assert {"topic-руководство", "page-работа-с-json", "page-配置", "page-café"} <= set(anchors)
    assert [a for a in anchors if a.startswith("page-intro")] == [
        "page-intro", "page-intro-2", "page-intro-3", "page-intro-4"]  # "Intro 2" took -2 before the second Intro
    assert len(anchors) == len(set(anchors))


def test_the_overview_says_nothing_twice():
    home = _page("https://docs.test/index.html", "Home", "Ferry")
    synthesis = {"Home": {"overview": "Ferry explained.", "key_themes": []}}
    for pages in ([home], [home, _page("https://docs.test/guide/a.html", "Guides", "Alpha")]):
        overview = render_report(pages, synthesis, _summary(), "Ferry").split("## Contents", 1)[0]
        assert overview.count("Ferry explained.") == 1 and "synthesis" not in overview
    alone = {"Home": {"overview": "A site about ferries and their timetables.", "key_themes": []}}
    overview = render_report([home], alone, _summary(), "Ferry").split("## Contents", 1)[0]
    assert "synthesis" not in overview  # the home page's topic is the home page alone: its synthesis is its summary


def test_the_offline_row_says_what_was_asked():
    summary = {**_summary(), "provider": "extractive"}
    row = next(line for line in render_report(_site(), {"Guides": {"overview": "o"}}, summary, "F").splitlines()
               if line.startswith("| questions answered offline"))
    assert "(page analyses and topic syntheses, by the offline analyser" in row
    summary["llm"] = {**summary["llm"], "by_task": {"page": 3, "chunk_notes": 2}}
    row = next(line for line in render_report(_site(), {}, summary, "F").splitlines()
               if line.startswith("| questions answered offline"))
    assert "(page analyses and notes on parts of long pages, by" in row


def test_one_of_one_is_said_in_the_singular():
    summary = {**_summary(failed=1), "documents": {"total": 1, "completed": 0, "failed": 1},
               "work": {"pages": 1, "requests": 0, "text_tokens_per_page": 50, "note": "no LLM"}}
    report = render_report([_result("http://127.0.0.1/a", ok=False)], {}, summary, "Ferry")
    assert "1 of 1 page failed" in report and "it read 1 page, 50 tokens" in report


def test_markers_are_escaped_only_where_a_line_starts():
    advice = [{"title": "t", "description": "# not a heading"}, {"title": "t", "description": "1. no list"}]
    results = [_advising("https://docs.test/c.html", "3. Conventions", "3. Conventions", advice, []),
               _page("https://docs.test/s.html", "_static", "_static files")]
    report = render_report(results, {}, _summary(), "Ferry")
    assert "- **[3. Conventions](<https://docs.test/c.html>)**" in report and "### 3. Conventions (1 page)" in report
    assert "### _static (1 page)" in report and "**[_static files]" in report  # one underscore pairs with none
    assert "    - \\# not a heading" in report and "    - 1\\. no list" in report  # these do start a list item
    html = MarkdownIt("commonmark").render(report)
    assert "<h3>3. Conventions (1 page)</h3>" in html and "<h3>_static (1 page)</h3>" in html
    assert "<li># not a heading</li>" in html and "<li>1. no list</li>" in html
