"""run.json's `work` block and the report's Work line: requests and prompt tokens per page, against the
pages' own text, as the LLM server itself counted them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.config import LLMKind, Mode, Settings
from document_it.models import DocResult, DocStatus
from document_it.run.pipeline import run
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import PAGES

ROOT = Path(__file__).resolve().parents[1]


def _settings(tmp_path: Path, site: SiteServer, sim: SimServer | None, name: str, **extra) -> Settings:
    llm = dict(llm=LLMKind.SIMULATE, llm_base_url=sim.base_url) if sim else dict(llm=LLMKind.EXTRACTIVE)
    return Settings(source=site.url("llms.txt"), allow_private=True, state_dir=tmp_path / "state", quiet=True,
                    output_dir=tmp_path / name, analysis_workers=2, **{**llm, **extra})


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _work_line(out: Path) -> str:
    return next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("Work: "))


@pytest.mark.parametrize("mode,queued", [(Mode.HYBRID, False), (Mode.PROCESS, False), (Mode.ASYNC, True)],
                         ids=["hybrid", "process", "queued"])
def test_the_work_block_agrees_with_what_the_server_counted(tmp_path, corpus_site, fast_sim, mode, queued):
    fast_sim.reset_stats()
    summary = run(_settings(tmp_path, corpus_site, fast_sim, "out", mode=mode, no_cache=True,
                            enable_queue=True if queued else None))
    stats = fast_sim.stats()
    work = summary["work"]
    # every HTTP request the server received (topic syntheses and process workers' included), and its prompts
    assert work["requests"] == stats["attempts"] > 0
    assert work["prompt_tokens"] == stats["prompt_tokens"] > 0
    assert work["pages"] == len(PAGES) == summary["documents"]["completed"]
    lines = _lines(tmp_path / "out")
    assert all(line["text_tokens"] > 0 and line["reused"] is False for line in lines)
    assert sum(line["text_tokens"] for line in lines) == work["text_tokens"]
    assert work["requests_per_page"] == round(stats["attempts"] / len(PAGES), 2)
    assert work["prompt_tokens_per_page"] == round(stats["prompt_tokens"] / len(PAGES))
    assert work["text_tokens_per_page"] == round(work["text_tokens"] / len(PAGES))
    assert work["prompt_per_text"] == round(stats["prompt_tokens"] / work["text_tokens"], 2)
    assert "note" not in work
    assert json.loads((tmp_path / "out" / "run.json").read_text())["work"] == work
    line = _work_line(tmp_path / "out")
    assert f"{work['prompt_tokens_per_page']:,} prompt tokens per page" in line
    assert f"{work['text_tokens_per_page']:,} tokens of page text ({work['prompt_per_text']:.2f}×)" in line


@pytest.mark.parametrize("mode", [Mode.HYBRID, Mode.PROCESS])
def test_a_warm_second_run_reports_no_pages_and_no_requests(tmp_path, corpus_site, fast_sim, mode):
    cold = run(_settings(tmp_path, corpus_site, fast_sim, "cold", mode=mode))
    assert cold["work"]["pages"] == len(PAGES) and cold["work"]["requests"] > 0
    fast_sim.reset_stats()
    warm = run(_settings(tmp_path, corpus_site, fast_sim, "warm", mode=mode))
    assert fast_sim.stats()["attempts"] == 0
    work = warm["work"]
    assert (work["pages"], work["requests"], work["prompt_tokens"], work["text_tokens"]) == (0, 0, 0, 0)
    assert work["requests_per_page"] is None and work["prompt_per_text"] is None and work["note"]
    lines = _lines(tmp_path / "warm")
    assert len(lines) == len(PAGES) and all(line["reused"] and line["text_tokens"] > 0 for line in lines)
    # the cache answers the same pages: their text is what the cold run counted
    assert sum(line["text_tokens"] for line in lines) == cold["work"]["text_tokens"]
    assert _work_line(tmp_path / "warm") == "Work: no page was analysed this run (each came from the cache, or failed)."


def test_an_unchanged_nightly_run_asks_nothing(tmp_path, corpus_site, fast_sim):
    first = run(_settings(tmp_path, corpus_site, fast_sim, "night1", mode=Mode.ASYNC, incremental=True, no_cache=True))
    assert first["work"]["pages"] == len(PAGES)
    fast_sim.reset_stats()
    second = run(_settings(tmp_path, corpus_site, fast_sim, "night2", mode=Mode.ASYNC, incremental=True,
                           no_cache=True))
    assert fast_sim.stats()["attempts"] == 0
    assert (second["work"]["pages"], second["work"]["requests"]) == (0, 0)
    assert all(line["reused"] for line in _lines(tmp_path / "night2"))


def test_an_extractive_run_shows_zeros_without_error(tmp_path, corpus_site):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--quiet", "--source", corpus_site.url("llms.txt"),
                           "--output-dir", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    work = json.loads((out / "run.json").read_text())["work"]
    assert (work["requests"], work["prompt_tokens"], work["requests_per_page"], work["prompt_per_text"]) == \
        (0, 0, 0.0, 0.0)
    assert work["pages"] == len(PAGES) and work["text_tokens"] == sum(line["text_tokens"] for line in _lines(out)) > 0
    assert "extractive" in work["note"]
    assert _work_line(out).startswith("Work: no LLM: the offline extractive analyser sent no requests; it read "
                                      f"{len(PAGES)} pages")


def test_results_written_before_the_work_figures_still_load():
    old = {"url": "http://127.0.0.1/a", "title": "a", "topic": "", "status": "completed", "error": None,
           "provider": "simulate", "model": "gpt-4o-mini", "analysis": None, "timings": {}, "fallback_tasks": [],
           "fields": None, "tasks": None}
    result = DocResult.from_dict(old)
    assert result.status is DocStatus.COMPLETED and result.text_tokens == 0 and result.reused is False
