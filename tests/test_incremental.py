"""Nightly incremental runs: only new and changed pages are parsed and analysed; changes.md says what moved."""

from __future__ import annotations

import json
import os
from pathlib import Path

from document_it.cli import main
from document_it.core.page_memory import PageRecord
from document_it.run.incremental import Change, render_changes, what_changed
from document_it.models import ParsedDoc
from document_it.testing.docsite import page_path, touch_page, write_docsite
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

PAGES = 60
SITE_PAGES = PAGES + 4 + 1


def _night(tmp_path: Path, site: SiteServer, sim: SimServer, out: str, *extra: str) -> dict:
    code = main(["--source", site.url("docs/index.html"), "--incremental", "--quiet", "--output-dir",
                 str(tmp_path / out), "--state-dir", str(tmp_path / "state"), "--llm", "openai",
                 "--llm-base-url", sim.base_url, "--batch-size", "1", *extra])
    run = json.loads((tmp_path / out / "run.json").read_text())
    run["exit"] = code
    return run


def test_changing_3_of_60_pages_reanalyses_exactly_those_3(tmp_path):
    root = tmp_path / "site"
    write_docsite(root, PAGES)
    changed = [(0, 4), (1, 9), (1, 13)]  # (section, page number): pages 4, 9 and 13
    with SiteServer(root, max_seconds=120) as site, SimServer(latency_ms=5, ms_per_token=0, max_seconds=120) as sim:
        first = _night(tmp_path, site, sim, "night1", "--no-cache")
        assert first["exit"] == 0 and first["changes"]["added"] == SITE_PAGES
        for section, number in changed:
            touch_page(root, section, number, neighbour=number + 4, version=2)
        sim.reset_stats()

        second = _night(tmp_path, site, sim, "night2", "--no-cache")  # no LLM cache: the queue alone decides

        asked = set(sim.stats()["urls"])
    urls = {site.url(page_path(section, number)) for section, number in changed}
    assert second["exit"] == 0
    assert asked == urls  # the LLM saw prompts for the three changed pages and nothing else
    assert second["changes"]["changed_urls"] == sorted(urls)
    assert second["changes"]["unchanged"] == SITE_PAGES - 3 and second["changes"]["added"] == 0
    assert second["changes"]["not_modified_304"] == SITE_PAGES - 3
    assert second["stages"]["pages_parsed"] == 3
    # one request per changed page (every analysis in one answer); two topics hold the changed pages: only
    # their syntheses are redone
    assert second["llm"]["prompts"] == 3 + 2
    assert second["llm"]["by_task"] == {"page": 3, "topic_synthesis": 2}
    assert second["documents"]["completed"] == SITE_PAGES  # the report still covers every page
    changes_md = (tmp_path / "night2" / "changes.md").read_text()
    assert "0 added · 3 changed · 62 unchanged · 0 removed" in changes_md
    assert "sections added: Changes in version 2" in changes_md
    report = (tmp_path / "night2" / "report.md").read_text()
    assert report.count("**[") == SITE_PAGES and "### part-2" in report


def test_pages_gone_from_the_site_are_marked_removed(tmp_path):
    root = tmp_path / "site"
    write_docsite(root, 12)
    with SiteServer(root, max_seconds=120) as site, SimServer(latency_ms=5, ms_per_token=0, max_seconds=120) as sim:
        assert _night(tmp_path, site, sim, "night1")["exit"] == 0
        (root / page_path(2, 6)).unlink()  # still linked from its section index: now a 404
        index = root / "docs" / "part-3" / "index.html"
        index.write_text(index.read_text().replace('<li><a href="page-007.html">Page 7</a></li>', ""))  # unlinked
        # an edit made in the same second as the first night's fetch keeps its Last-Modified: the server would
        # answer 304 and the index would keep its old links; a real edit comes later
        later = index.stat().st_mtime + 5
        os.utime(index, (later, later))

        second = _night(tmp_path, site, sim, "night2")
    gone = {site.url(page_path(2, 6)), site.url(page_path(3, 7))}
    assert set(second["changes"]["removed_urls"]) == gone
    assert second["changes"]["changed_urls"] == [site.url("docs/part-3/")]  # its index lost a link
    assert second["exit"] == 0  # a page that is gone is news, not a failure
    changes_md = (tmp_path / "night2" / "changes.md").read_text()
    assert "## Removed (2)" in changes_md and "gone (HTTP 404)" in changes_md


def test_what_changed_names_sections_and_length():
    before = PageRecord(key="k", url="u", topic="t", content_hash="h", etag=None, last_modified=None,
                        result={"title": "Old"}, links=(), headings=("Intro", "Setup"), words=100, analysed_at=0.0)
    page = ParsedDoc(url="u", title="New", topic="t", text="word " * 120, headings=("Intro", "Usage"))

    line = what_changed(before, page)

    assert line == "title now 'New'; sections added: Usage; sections removed: Setup; 100 → 120 words"
    assert what_changed(None, page).startswith("new page: 2 sections, 120 words")


def test_changes_md_lists_each_kind_and_warns_when_incomplete():
    changes = [("https://d/a", Change.ADDED.value, "new page"), ("https://d/b", Change.CHANGED.value, "x"),
               ("https://d/c", Change.UNCHANGED.value, "")]

    text = render_changes("Docs", changes, complete=False)

    assert "1 added · 1 changed · 1 unchanged · 0 removed" in text
    assert "- <https://d/a> — new page" in text and "did not finish" in text
