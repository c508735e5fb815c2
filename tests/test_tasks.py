"""--tasks: only the chosen per-page analyses are asked, written, reported, cached and kept by later runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.cli import main
from document_it.config import Settings
from document_it.errors import ConfigError
from document_it.models import PAGE_TASKS, Task
from document_it.report import one_line
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import PAGES

ROOT = Path(__file__).resolve().parent.parent
# one synthesis request per topic of two pages or more (a topic of one page is its page's summary)
TOPICS = sum(1 for name in {topic for topic, _, _ in PAGES} if sum(t == name for t, _, _ in PAGES) > 1)
NOT_ASKED = ("key_concepts", "implementation_details", "related_topics")  # with --tasks summary,code_patterns


@pytest.fixture(scope="module")
def site(corpus_site):
    return corpus_site


@pytest.fixture(scope="module")
def sim(fast_sim):
    return fast_sim


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    """The simulator needs no key; a key in the developer's environment must not change which LLM answers."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _run(tmp_path: Path, site: SiteServer, sim: SimServer, out: str, *extra: str) -> int:
    """One run through the real command line, one request per prompt (--batch-size 1)."""
    return main(["--source", site.url("llms.txt"), "--output-dir", str(tmp_path / out), "--state-dir",
                 str(tmp_path / "state"), "--llm", "openai", "--llm-base-url", sim.base_url, "--batch-size", "1",
                 "--quiet", *extra])


def _results(tmp_path: Path, out: str) -> dict[str, dict]:
    lines = (tmp_path / out / "results.jsonl").read_text().splitlines()
    return {r["url"]: r for r in map(json.loads, lines) if r["status"] == "completed"}


def _page_urls(site: SiteServer) -> set[str]:
    return {site.url(f"pages/{name}") for _, _, name in PAGES}


# process: worker processes build their own agents from the flags
@pytest.mark.parametrize("mode, strategy, per_page", [("hybrid", "combined", 1), ("process", "auto", 1),
                                                      ("hybrid", "separate", 2), ("process", "separate", 2)])
def test_two_tasks_send_one_request_per_page_and_write_only_those(tmp_path, site, sim, mode, strategy, per_page):
    sim.reset_stats()
    code = _run(tmp_path, site, sim, "out", "--tasks", "code_patterns, summary", "--no-cache",
                "--parallelism-mode", mode, "--analysis-workers", "2", "--task-strategy", strategy)
    stats = sim.stats()
    assert code == 0
    # one request names each page (both analyses in one answer); with --task-strategy separate, one per analysis
    assert stats["urls"] == {url: per_page for url in _page_urls(site)}
    assert stats["requests"] == per_page * len(PAGES) + TOPICS  # plus one synthesis per topic
    results = _results(tmp_path, "out")
    assert set(results) == _page_urls(site)
    for r in results.values():
        assert r["analysis"]["summary"] and isinstance(r["analysis"]["code_patterns"], list)
        assert all(r["analysis"][name] == [] for name in NOT_ASKED)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["llm"]["prompts"] == per_page * len(PAGES) + TOPICS
    by_task = {"page": len(PAGES)} if per_page == 1 else {"code_patterns": len(PAGES), "summary": len(PAGES)}
    assert run["llm"]["by_task"] == {**by_task, "topic_synthesis": TOPICS}


def test_the_report_has_no_sections_for_analyses_not_asked(tmp_path, site, sim):
    assert _run(tmp_path, site, sim, "out", "--tasks", "code_patterns") == 0
    report = (tmp_path / "out" / "report.md").read_text()
    pages = [line for line in report.splitlines() if line.startswith("- **[")]
    assert len(pages) == len(PAGES)
    assert all(line.endswith(")**") for line in pages)  # no " — " before a summary that was not asked
    assert "  - Code:" in report
    for section in ("  - Concepts:", "  - Advice:"):
        assert section not in report
    # the topic syntheses still ran, from the page titles alone
    # (no summary asked: a topic of one page has none to stand for it, so every topic was synthesised)
    assert report.count("Key themes: ") == len({topic for topic, _, _ in PAGES}) and "synthesis failed" not in report


@pytest.mark.parametrize("mode", ["hybrid", "process"])
def test_no_synthesis_asks_the_pages_only(tmp_path, site, sim, mode):
    sim.reset_stats()
    assert _run(tmp_path, site, sim, "out", "--tasks", "summary", "--no-cache", "--no-synthesis",
                "--parallelism-mode", mode, "--analysis-workers", "2") == 0
    stats = sim.stats()
    assert stats["urls"] == {url: 1 for url in _page_urls(site)} and stats["requests"] == len(PAGES)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["llm"]["by_task"] == {"page": len(PAGES)}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Key themes: " not in report and "synthesis failed" not in report
    assert len([line for line in report.splitlines() if line.startswith("- **[")]) == len(PAGES)


def test_resume_keeps_no_synthesis(tmp_path, site, sim):
    assert _run(tmp_path, site, sim, "out", "--tasks", "summary", "--no-synthesis", "--enable-queue",
                "--parallelism-mode", "sync", "--max-tokens", "1", "--no-cache") == 3
    sim.reset_stats()
    assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state"), "--no-cache"]) == 0
    stats = sim.stats()
    assert set(stats["urls"].values()) == {1} and stats["requests"] == len(stats["urls"])  # no synthesis asked
    assert "Key themes: " not in (tmp_path / "out" / "report.md").read_text()


def test_a_run_with_other_tasks_never_reuses_a_page_analysis(tmp_path, site, sim):
    assert _run(tmp_path, site, sim, "two", "--tasks", "summary,code_patterns") == 0
    sim.reset_stats()
    assert _run(tmp_path, site, sim, "all") == 0  # the same cache, every analysis
    # a question of five parts is not the question of two: each page is asked again, once
    assert sim.stats()["urls"] == {url: 1 for url in _page_urls(site)}
    every = _results(tmp_path, "all")
    assert all(r["analysis"]["key_concepts"] and r["analysis"]["implementation_details"] for r in every.values())
    sim.reset_stats()
    assert _run(tmp_path, site, sim, "one", "--tasks", "code_patterns") == 0
    assert sim.stats()["urls"] == {url: 1 for url in _page_urls(site)}  # not the five-task analysis cached
    for r in _results(tmp_path, "one").values():
        assert r["analysis"]["summary"] == "" and r["analysis"]["key_concepts"] == []
        assert isinstance(r["analysis"]["code_patterns"], list)


def test_separate_requests_are_cached_one_per_task_and_reused_by_a_run_asking_more(tmp_path, site, sim):
    separate = ("--task-strategy", "separate")
    assert _run(tmp_path, site, sim, "two", "--tasks", "summary,code_patterns", *separate) == 0
    sim.reset_stats()
    assert _run(tmp_path, site, sim, "all", *separate) == 0  # the same cache, every analysis
    # summary and code_patterns come from the cache of single prompts; the three others are asked now
    assert sim.stats()["urls"] == {url: 3 for url in _page_urls(site)}
    two, every = _results(tmp_path, "two"), _results(tmp_path, "all")
    for url, r in every.items():
        assert r["analysis"]["key_concepts"] and r["analysis"]["implementation_details"]
        assert r["analysis"]["summary"] == two[url]["analysis"]["summary"]
    assert _run(tmp_path, site, sim, "one", "--tasks", "code_patterns", *separate) == 0
    for url, r in _results(tmp_path, "one").items():  # not the five-task analysis the last run cached
        assert r["analysis"]["summary"] == "" and r["analysis"]["key_concepts"] == []
        assert r["analysis"]["code_patterns"] == every[url]["analysis"]["code_patterns"]


def test_an_incremental_run_with_other_tasks_analyses_unchanged_pages_again(tmp_path, site, sim):
    assert _run(tmp_path, site, sim, "n1", "--incremental", "--no-cache", "--tasks", "summary,code_patterns") == 0
    first = _results(tmp_path, "n1")
    assert all(r["tasks"] == ["summary", "code_patterns"] for r in first.values())
    sim.reset_stats()
    assert _run(tmp_path, site, sim, "n2", "--incremental", "--no-cache") == 0
    assert sim.stats()["urls"] == {url: 1 for url in _page_urls(site)}  # every page asked again, in one request
    second = _results(tmp_path, "n2")
    assert all(r["tasks"] == [t.value for t in PAGE_TASKS] and r["analysis"]["key_concepts"]
               for r in second.values())
    assert one_line("analysed again (new analyser, model, fields or tasks)") in (tmp_path / "n2" / "changes.md").read_text()
    sim.reset_stats()
    assert _run(tmp_path, site, sim, "n3", "--incremental", "--no-cache") == 0  # same tasks: kept
    assert sim.stats()["urls"] == {}
    kept = _results(tmp_path, "n3")
    assert {url: (r["tasks"], r["analysis"]) for url, r in kept.items()} == \
        {url: (r["tasks"], r["analysis"]) for url, r in second.items()}


@pytest.mark.parametrize("strategy, per_page", [
    ("combined", 1),
    ("separate", 2),
])
def test_resume_keeps_the_tasks_of_the_interrupted_run(tmp_path, site, sim, strategy, per_page):
    # one page at a time and a token budget the first page spends: the rest is left for --resume
    assert _run(tmp_path, site, sim, "out", "--tasks", "summary,code_patterns", "--enable-queue",
                "--parallelism-mode", "sync", "--max-tokens", "1", "--no-cache", "--task-strategy", strategy) == 3
    sim.reset_stats()
    assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state"), "--no-cache"]) == 0
    assert set(sim.stats()["urls"].values()) == {per_page}  # the pages left asked as the run asked them
    results = _results(tmp_path, "out")
    assert set(results) == _page_urls(site)
    assert all(r["tasks"] == ["summary", "code_patterns"] and r["analysis"]["key_concepts"] == []
               for r in results.values())


def test_tasks_keep_one_order_and_reject_mistakes():
    assert Settings(tasks=(Task.CODE_PATTERNS, Task.SUMMARY)).tasks == (Task.SUMMARY, Task.CODE_PATTERNS)
    assert Settings().tasks == PAGE_TASKS
    for wrong in ((), (Task.TOPIC_SYNTHESIS,), (Task.SUMMARY, Task.SUMMARY)):
        with pytest.raises(ConfigError, match="choose from summary, key_concepts, implementation_details"):
            Settings(tasks=wrong)


def test_help_names_every_page_analysis(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--tasks NAMES" in out and ", ".join(t.value for t in PAGE_TASKS) in out


@pytest.mark.parametrize("value, fragment", [
    ("summary,summary", "--tasks names 'summary' twice"),
    ("", "--tasks needs at least one page analysis"),
    ("topic_synthesis", "--tasks: 'topic_synthesis' is not a page analysis"),
])
def test_mistakes_in_the_flag_are_one_line_and_exit_2(value, fragment, tmp_path, capsys):
    assert main(["--tasks", value, "--output-dir", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("document-it: error: ") and fragment in err and "related_topics" in err


def test_an_unknown_name_from_the_real_command_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--tasks", "summary,nope", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("document-it: error: --tasks: 'nope' is not a page analysis (choose from summary, "
                           "key_concepts, implementation_details, code_patterns, related_topics)\n")
    assert not (tmp_path / "output").exists()  # refused before any work
