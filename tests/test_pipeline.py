"""End to end: every mode over a loopback site and the LLM simulator gives the same analyses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from document_it.analysis.agent import PageAgent
from document_it.analysis.gateway import Gateway
from document_it.analysis.providers import ExtractiveProvider
from document_it.config import LLMKind, Mode, Settings, TaskStrategy
from document_it.core.dispatcher import PLANS, Stages
from document_it.core.job_queue import JobQueue
from document_it.run.loop import JobWorker, RunSpec
from document_it.run.pipeline import run
from document_it.scope import url_key
from document_it.fetch import FetchLimits
from document_it.sources import discover
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import PAGES, SYNTHESES

ASKED = len(PAGES) + SYNTHESES  # one request per page (every analysis in one answer), one per topic


@pytest.fixture(scope="module")
def site(corpus_with_gone):
    return corpus_with_gone


@pytest.fixture(scope="module")
def sim():
    with SimServer(latency_ms=20, ms_per_token=0.05, max_seconds=300) as server:
        yield server


def _settings(tmp_path: Path, site: SiteServer, sim: SimServer | None, mode: Mode, **extra) -> Settings:
    llm = dict(llm=LLMKind.SIMULATE, llm_base_url=sim.base_url) if sim else dict(llm=LLMKind.EXTRACTIVE)
    return Settings(source=site.url("llms.txt"), allow_private=True, state_dir=tmp_path / "state", mode=mode, quiet=True,
                    **{"output_dir": tmp_path / mode.value, "analysis_workers": 2, "batch_size": 1, **llm, **extra})


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _comparable(out: Path) -> list[tuple]:
    return [(r["url"], r["status"], r["error"], json.dumps(r["analysis"], sort_keys=True)) for r in _lines(out)]


def test_every_mode_gives_the_same_analyses(tmp_path, site, sim):
    outputs = {}
    for mode in Mode:
        # each mode asks the model itself, with batching on where the mode batches (not sync)
        summary = run(_settings(tmp_path, site, sim, mode, no_cache=True, batch_size=0))
        assert summary["mode"] == mode.value
        assert summary["documents"] == {"total": len(PAGES) + 1, "completed": len(PAGES), "failed": 1,
                                        "not_reached": 0}
        outputs[mode] = _comparable(tmp_path / mode.value)
    reference = outputs[Mode.SYNC]
    assert [row[0] for row in reference] == sorted(row[0] for row in reference)
    for mode, rows in outputs.items():
        assert rows == reference, f"{mode.value} differs from sync"


def test_results_report_and_run_json(tmp_path, site, sim):
    summary = run(_settings(tmp_path, site, sim, Mode.HYBRID))
    out = tmp_path / "hybrid"
    lines = _lines(out)
    done = [r for r in lines if r["status"] == "completed"]
    assert len(done) == len(PAGES)
    for r in done:
        assert r["provider"] == "simulate" and r["model"] == "gpt-4o-mini"
        assert set(r["analysis"]) == {"summary", "key_concepts", "implementation_details", "code_patterns",
                                      "related_topics"}
        assert all(1 <= c["importance"] <= 10 for c in r["analysis"]["key_concepts"])
        assert set(r["timings"]) == {"fetch", "parse", "analyze"}
    gone = next(r for r in lines if r["url"].endswith("gone.html"))
    assert gone["status"] == "failed" and gone["error"] == "fetch: HTTP 404 File not found"
    # one prompt per page (all five analyses in one answer) plus one synthesis per topic that has completed pages
    assert summary["llm"]["prompts"] == ASKED
    assert summary["llm"]["by_task"] == {"page": len(PAGES), "topic_synthesis": SYNTHESES}
    assert summary["llm"]["requests"] == summary["llm"]["prompts"]
    assert summary["llm"]["tokens_in"] > 0 and summary["llm"]["tokens_out"] > 0
    assert set(summary["stages"]) == {"fetch", "parse", "analyze", "queue_wait", "llm_wait"}
    assert json.loads((out / "run.json").read_text()) == summary
    report = (out / "report.md").read_text()
    for topic in ("Basics", "Guides", "Reference"):
        assert f"### {topic}" in report
    assert "## Failures" in report and "gone.html" in report and "HTTP 404" in report
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("strategy, prompts", [(TaskStrategy.SEPARATE, 5 * len(PAGES) + SYNTHESES),
                                              (TaskStrategy.COMBINED, ASKED)])
def test_a_backlog_is_batched_into_fewer_requests_with_the_same_answers(tmp_path, site, sim, strategy, prompts):
    sim.reset_stats()
    plain = run(_settings(tmp_path, site, sim, Mode.HYBRID, output_dir=tmp_path / "plain", no_cache=True,
                          max_concurrency=2, batch_size=1, task_strategy=strategy))
    assert sim.stats()["requests"] == plain["llm"]["prompts"]
    sim.reset_stats()
    batched = run(_settings(tmp_path, site, sim, Mode.HYBRID, output_dir=tmp_path / "batched", no_cache=True,
                            max_concurrency=2, batch_size=0, task_strategy=strategy))  # two slots: a backlog
    assert batched["llm"]["prompts"] == plain["llm"]["prompts"] == prompts
    if strategy is TaskStrategy.SEPARATE:  # 33 prompts for two slots: at most half as many requests
        assert sim.stats()["requests"] <= batched["llm"]["prompts"] / 2
    else:  # nine, the first two timed alone by the window's start probe: the pages that wait still batch
        assert sim.stats()["requests"] < batched["llm"]["prompts"]
    batching = batched["llm"]["batching"]
    assert batching["items_per_batch_max"] > 1 and batching["tokens_saved"] > 0
    assert _comparable(tmp_path / "batched") == _comparable(tmp_path / "plain")


def test_llm_concurrency_cap_holds_at_the_server(tmp_path, site):
    # replies of 200 ms: the three requests of a round are at the server together however slowly a busy machine
    # sends them (at 20 ms, the first could be answered before the third arrived, and the cap never seen reached)
    with SimServer(latency_ms=200, ms_per_token=0, max_seconds=120) as sim:
        run(_settings(tmp_path, site, sim, Mode.HYBRID, max_concurrency=3))
        stats = sim.stats()
    assert stats["requests"] == ASKED
    assert stats["max_in_flight"] == 3  # the cap is reached and never exceeded


def test_process_mode_shares_the_cap_between_workers(tmp_path, site, sim):
    sim.reset_stats()
    run(_settings(tmp_path, site, sim, Mode.PROCESS, max_concurrency=4, analysis_workers=2))
    assert 2 <= sim.stats()["max_in_flight"] <= 4


def test_sync_mode_sends_one_request_at_a_time(tmp_path, site, sim):
    sim.reset_stats()
    run(_settings(tmp_path, site, sim, Mode.SYNC))
    assert sim.stats()["max_in_flight"] == 1


@pytest.mark.parametrize("mode", [Mode.HYBRID, Mode.PROCESS])
def test_one_shot_runs_keep_their_jobs_in_the_state_dir_and_no_queue_in_a_temporary_database(tmp_path, site, mode):
    kept = run(_settings(tmp_path, site, None, mode, output_dir=tmp_path / "kept"))
    assert kept["queue"]["jobs"]["done"] == len(PAGES) and kept["queue"]["jobs"]["failed"] == 1
    assert "pages_parsed" not in kept["stages"]  # a one-shot run parses every page it fetches
    temporary = run(_settings(tmp_path / "other", site, None, mode, output_dir=tmp_path / "temporary",
                              enable_queue=False))
    assert "queue" not in temporary and temporary["documents"] == kept["documents"]
    assert (tmp_path / "state" / "jobs.sqlite").exists() and not (tmp_path / "other" / "state" / "jobs.sqlite").exists()
    assert _comparable(tmp_path / "temporary") == _comparable(tmp_path / "kept")


def test_extractive_default_is_labelled_everywhere(tmp_path, site):
    summary = run(_settings(tmp_path, site, None, Mode.HYBRID))
    out = tmp_path / "hybrid"
    assert summary["provider"] == "extractive" and "no LLM" in summary["provider_label"]
    assert summary["llm"]["requests"] == 0
    assert all(r["provider"] == "extractive" for r in _lines(out))
    assert "extractive (offline, no LLM)" in (out / "report.md").read_text()
    retries = next(r for r in _lines(out) if r["url"].endswith("retries.html"))
    assert any("configure the worker pool" in d["description"]
               for d in retries["analysis"]["implementation_details"])
    assert retries["analysis"]["code_patterns"][0]["name"].startswith("run_retries")


class _CountingStages(Stages):
    """Real stages that also count documents between their fetch and their result."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.open = self.peak = 0

    async def fetch(self, ref, validators=None):
        self.open += 1
        self.peak = max(self.peak, self.open)
        return await super().fetch(ref, validators)


async def test_documents_in_flight_are_bounded(tmp_path, site):
    settings = _settings(tmp_path, site, None, Mode.ASYNC)
    refs = discover(settings.source, FetchLimits.from_settings(settings)).refs
    done = []
    with JobQueue(tmp_path / "jobs.sqlite") as queue, _CountingStages(settings, PLANS[Mode.ASYNC]) as stages:
        info = queue.start_run(settings.source, {})
        queue.add(info.id, [(url_key(ref.url), ref, 0) for ref in refs])

        def emit(result):
            stages.open -= 1
            done.append(result)
            recorded = {r["url"] for r in queue.results(info.id)}
            assert {r.url for r in done} <= recorded  # a result is emitted only once the queue holds it

        async with Gateway(ExtractiveProvider(stages.run_cpu), settings, 5) as gateway:
            worker = JobWorker(RunSpec(info.id, settings.source), settings, queue, stages, PageAgent(gateway), None)
            await worker.drain(emit, in_flight=2, stop=asyncio.Event())
    assert len(done) == len(refs) and {r.url for r in done} == {r.url for r in refs}
    assert stages.peak == 2


def test_plans_bound_documents_per_mode():
    settings = Settings(max_concurrency=20, max_workers=8)
    assert PLANS[Mode.SYNC].docs_in_flight(settings) == 1 and PLANS[Mode.SYNC].llm_concurrency(settings) == 1
    assert PLANS[Mode.HYBRID].docs_in_flight(settings) == 28
    assert PLANS[Mode.HYBRID].llm_concurrency(settings) == 20
