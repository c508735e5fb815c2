"""The llms.txt a run writes: read back by the format's own parser (the llms-txt package), and a source for
the next run that finds the same pages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llms_txt import parse_llms_file

from document_it.cli import main
from document_it.config import SAMPLE_SOURCE
from document_it.llms_txt import describe, render_llms_txt, secondary
from document_it.models import DocResult, DocStatus
from document_it.sources import parse_llms_txt
from document_it.testing.site import SiteServer

SAMPLE = Path(SAMPLE_SOURCE).parent


def _page(url: str, title: str, topic: str, summary: str = "", status: DocStatus = DocStatus.COMPLETED) -> DocResult:
    analysis = {"summary": summary} if status is DocStatus.COMPLETED else None
    return DocResult(url=url, title=title, topic=topic, status=status, analysis=analysis,
                     error=None if analysis else "fetch: HTTP 404")


def _run(source: str, out: Path, *flags: str) -> int:
    return main(["--source", source, "--output-dir", str(out), "--state-dir", str(out.parent / f"{out.name}-state"),
                 "--quiet", "--allow-private", *flags])


def test_the_formats_own_parser_reads_back_title_summary_and_every_sections_links(tmp_path):
    results = [
        _page("https://docs.example.org/", "Example", "Start", "Example runs jobs in the background. It retries."),
        _page("https://docs.example.org/install", "Install [pip]", "Start",
              "This page explains how to install Example with pip and start a worker."),
        _page("https://docs.example.org/api/(v2)", "API", "Reference", "Every public name, with its arguments."),
        _page("https://docs.example.org/gone", "Gone", "Reference", status=DocStatus.FAILED),
        _page("https://docs.example.org/changelog", "Changelog", "Reference", "What changed in each release."),
        _page("https://docs.example.org/genindex", "Index", "Reference", ""),
    ]
    text = render_llms_txt(results, {}, {"topic_order": ["Reference", "Start"]}, "Example Docs")
    parsed = parse_llms_file(text)
    assert parsed.title == "Example Docs"
    assert parsed.summary == "Example runs jobs in the background. It retries."
    assert "covers 2 topics: Reference (1 page), Start (2 pages)" in parsed.info
    assert list(parsed.sections) == ["Reference", "Start", "Optional"]  # the site's order, Optional last
    assert [(link["title"], link["url"], link["desc"]) for link in parsed.sections["Start"]] == [
        ("Example", "https://docs.example.org/", "Example runs jobs in the background."),
        ("Install (pip)", "https://docs.example.org/install",
         "Explains how to install Example with pip and start a worker.")]
    assert parsed.sections["Reference"][0]["url"] == "https://docs.example.org/api/%28v2%29"
    assert [link["title"] for link in parsed.sections["Optional"]] == ["Changelog", "Index"]
    assert "gone" not in text  # failed pages are left out
    # and the project's own reader agrees, page for page
    ours = parse_llms_txt(text, "https://docs.example.org/llms.txt")
    assert [(ref.url, ref.topic) for ref in ours.refs] == [
        ("https://docs.example.org/api/%28v2%29", "Reference"), ("https://docs.example.org/", "Start"),
        ("https://docs.example.org/install", "Start"), ("https://docs.example.org/changelog", "Optional"),
        ("https://docs.example.org/genindex", "Optional")]


def test_a_description_is_one_line_of_at_most_about_twenty_words_saying_what_the_page_is_for():
    long = ("This guide walks through deploying workers on Kubernetes, with health checks, graceful shutdown, "
            "autoscaling on queue depth and the settings each of them needs in production. More follows.")
    line = describe(_page("https://x.org/k8s", "Kubernetes", "Deploy", long))
    assert not line.lower().startswith("this") and line.endswith("…") and len(line.split()) <= 20
    assert "\n" not in line
    assert describe(_page("https://x.org/a", "A", "T", "Short one.\nSecond line.")) == "Short one."
    assert describe(_page("https://x.org/a", "A", "T", "")) == ""


def test_secondary_pages_are_changelogs_indexes_search_and_legal_text():
    for url, title in (("https://x.org/releases/2.0.html", "2.0 release notes"), ("https://x.org/genindex-A.html", "Index – A"),
                       ("https://x.org/search.html", "Search"), ("https://x.org/legalnotice.html", "Legal Notice"),
                       ("https://x.org/CHANGES.html", "Changes"), ("https://x.org/license.html", "License")):
        assert secondary(_page(url, title, "T")), url
    for url, title in (("https://x.org/index.html", "Welcome"), ("https://x.org/guide/install.html", "Install"),
                       ("https://x.org/history-of-the-api.html", "Design notes")):
        assert not secondary(_page(url, title, "T")), url


def test_a_run_from_the_llms_txt_it_wrote_finds_the_same_pages(tmp_path):
    """The round trip, over real HTTP on loopback: the sample site served, analysed from its own llms.txt;
    the llms.txt written then served in its place, and a second run from it."""
    site = tmp_path / "site"
    shutil.copytree(SAMPLE, site)
    with SiteServer(site) as server:
        assert _run(server.url("llms.txt"), tmp_path / "first") == 0
        written = (tmp_path / "first" / "llms.txt").read_text()
        (site / "generated-llms.txt").write_text(written)
        assert _run(server.url("generated-llms.txt"), tmp_path / "second") == 0

    def pages(out: str) -> set[str]:
        rows = map(json.loads, (tmp_path / out / "results.jsonl").read_text().splitlines())
        return {row["url"] for row in rows if row["status"] == "completed"}

    assert pages("first") and pages("second") == pages("first")
    parsed = parse_llms_file(written)
    assert parsed.title == "Ferry" and parsed.summary
    assert sum(len(links) for links in parsed.sections.values()) == len(pages("first"))


def test_outputs_chooses_the_files_written_beside_the_runs_own_record(tmp_path, capsys):
    assert _run(SAMPLE_SOURCE, tmp_path / "llms", "--outputs", "llms.txt") == 0
    assert sorted(p.name for p in (tmp_path / "llms").iterdir()) == ["llms.txt", "results.jsonl", "run.json"]
    assert _run(SAMPLE_SOURCE, tmp_path / "none", "--outputs", "none") == 0
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["results.jsonl", "run.json"]
    capsys.readouterr()
    assert _run(SAMPLE_SOURCE, tmp_path / "bad", "--outputs", "report.md,llms.json") == 2
    err = capsys.readouterr().err
    assert err == ("document-it: error: --outputs: 'llms.json' is not an output (choose from report.md, "
                   "report.html, llms.txt, llms-full.txt, pages, all or none)\n")


def test_a_nightly_run_rewrites_the_changed_pages_line_drops_a_removed_one_and_keeps_the_rest(tmp_path):
    """Two --incremental nights over a folder: one page edited, one removed. The other lines of llms.txt
    are the same bytes, so a diff of the two nights shows just what changed."""
    site = tmp_path / "site"
    shutil.copytree(SAMPLE, site)
    state = ["--incremental", "--state-dir", str(tmp_path / "state")]
    assert _run(str(site / "llms.txt"), tmp_path / "night1", *state) == 0
    first = (tmp_path / "night1" / "llms.txt").read_text().splitlines()
    page = site / "pages" / "retries.md"
    page.write_text(page.read_text().replace("Transient failures are normal", "Retries are how Ferry survives "
                                             "transient failures"))
    gone = "pages/scheduling.html"
    (site / "llms.txt").write_text("".join(line + "\n" for line in (site / "llms.txt").read_text().splitlines()
                                           if gone not in line))
    assert _run(str(site / "llms.txt"), tmp_path / "night2", *state) == 0
    second = (tmp_path / "night2" / "llms.txt").read_text().splitlines()
    links = [line for line in first if line.startswith("- [")]
    changed = [line for line in links if "retries.md" in line]
    removed = [line for line in links if gone in line]
    assert len(changed) == 1 and len(removed) == 1
    rewritten = [line for line in second if "retries.md" in line]
    assert len(rewritten) == 1 and "survives" in rewritten[0]
    # the same lines in the same order, but for the one rewritten in its place and the one dropped
    expected = [rewritten[0] if line in changed else line for line in links if line not in removed]
    assert [line for line in second if line.startswith("- [")] == expected
