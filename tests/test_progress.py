"""What a user watches during a run: a bar per stage on a terminal, a line per interval in a log, and the
time a run spent per stage in run.json and report.md."""

from __future__ import annotations

import io
import json
import logging

import pytest
from rich.console import Console

from document_it.analysis.gateway import build_gateway
from document_it.config import LLMKind, Mode, Settings
from document_it.core.progress import RunProgress
from document_it.models import DocResult, DocStatus
from document_it.pipeline import run

from _corpus import PAGES


@pytest.fixture(scope="module")
def site(corpus_site):
    return corpus_site


@pytest.fixture(scope="module")
def sim(fast_sim):
    return fast_sim


def _ok(url: str) -> DocResult:
    return DocResult(url=url, title="t", topic="", status=DocStatus.COMPLETED, timings={"fetch": 0.1, "parse": 0.1})


async def test_a_terminal_shows_a_bar_per_stage_with_the_llm_window_cache_hits_and_429s(sim):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system=None)
    settings = Settings(llm=LLMKind.OPENAI, llm_base_url=sim.base_url, api_key="sk-test-0123456789",
                        max_concurrency=7)
    async with build_gateway(settings) as gateway:
        with RunProgress(2, enabled=True, console=console) as progress:
            progress.watch(gateway)  # no stages here: the results say what was downloaded and parsed
            progress.advance(_ok("a"))
            progress.advance(DocResult(url="b", title="t", topic="", status=DocStatus.FAILED, error="fetch: 404",
                                       timings={"fetch": 0.1}))
    text = screen.getvalue()
    for name in ("discovered", "downloaded", "parsed", "analysed", "failed"):
        assert name in text
    assert "2/2" in text and "1/2" in text  # analysed both, parsed one
    assert "LLM window 2/7" in text and "cache hits 0" in text  # two until the start probe has its verdict
    assert "429s 0" in text and "1 failed" in text


def test_a_crawl_that_finds_more_pages_grows_every_bar(caplog):
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        with RunProgress(1, enabled=True, log_every_s=0) as progress:
            progress.advance(_ok("a"), total=3)
            progress.advance(_ok("b"), total=3)
            progress.advance(_ok("c"), total=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "document_it.progress"]
    assert lines[0].startswith("1/3 pages (downloaded 1, parsed 1)") and "ETA" in lines[0]
    assert lines[-1].startswith("3/3 pages (downloaded 3, parsed 3)") and "ETA" not in lines[-1]


@pytest.mark.parametrize("mode", [Mode.HYBRID, Mode.PROCESS])
def test_a_run_logs_its_stages_and_breaks_its_time_down(tmp_path, site, sim, mode, caplog):
    settings = Settings(source=site.url("llms.txt"), allow_private=True, output_dir=tmp_path / "out",
                        state_dir=tmp_path / "state", mode=mode, analysis_workers=2, llm=LLMKind.OPENAI,
                        llm_base_url=sim.base_url, api_key="sk-test-0123456789", no_cache=True, max_concurrency=2)
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        summary = run(settings)  # not quiet, stderr not a terminal: lines, not bars
    lines = [r.getMessage() for r in caplog.records if r.name == "document_it.progress"]
    n = len(PAGES)
    assert lines[-1].startswith(f"{n}/{n} pages (downloaded {n}, parsed {n})")
    assert "LLM window" in lines[-1] or mode is Mode.PROCESS  # process mode: the window lives in the workers
    stages = summary["stages"]
    assert set(stages) == {"fetch", "parse", "analyze", "queue_wait", "llm_wait"}
    assert stages["llm_wait"] > 0 and stages["queue_wait"] > 0  # two slots for 33 prompts: some waited
    on_disk = json.loads((tmp_path / "out" / "run.json").read_text())
    assert on_disk["stages"] == stages and on_disk["settings"]["tasks"] == [
        "summary", "key_concepts", "implementation_details", "code_patterns", "related_topics"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| LLM time, summed over requests | waiting for a slot" in report
