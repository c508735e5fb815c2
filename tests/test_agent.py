"""The LangGraph page agent: five branches in parallel through the gateway, merged and validated."""

from __future__ import annotations

import asyncio
import threading

import pytest
from langgraph.graph import START

from document_it.analysis.agent import PageAgent, read_in_chunks, synthesize_topics
from document_it.analysis.gateway import Gateway
from document_it.analysis.prompts import PAGE_TASKS, PAGE_TOKEN_BUDGET, PageAnalysis, TopicInput
from document_it.analysis.providers import ChatProvider, ExtractiveProvider
from document_it.config import LLMKind, Settings
from document_it.errors import LLMError
from document_it.fetch import fetch
from document_it.models import DocRef, ParsedDoc
from document_it.parse import parse
from document_it.testing.llm_sim import SimServer

from _corpus import write_corpus
from _fake_llm import ScriptedLLM


@pytest.fixture
def page(tmp_path):
    write_corpus(tmp_path)
    ref = DocRef((tmp_path / "pages" / "retries.html").as_uri(), "Retries", "Guides")
    return parse(fetch(ref))


class _MeetingSim(SimServer):
    """The simulator, except that the first `meet(n)` requests to arrive wait for one another at the server (up to
    PATIENCE_S) before being served side by side: requests the client really has out together are then seen
    together at the server however slowly a busy machine sends them, and requests sent one after another are not
    (the first waits out the patience alone, and the meeting is off)."""

    PATIENCE_S = 10.0

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._arrivals = threading.Condition()
        self._arrived = 0
        self._expected = 0

    def meet(self, n: int) -> None:
        """The next `n` requests are held until all `n` have arrived."""
        with self._arrivals:
            self._arrived, self._expected = 0, n

    def _serve(self, service: float) -> float:
        with self._arrivals:
            self._arrived += 1
            self._arrivals.notify_all()
            if not self._arrivals.wait_for(lambda: self._arrived >= self._expected, timeout=self.PATIENCE_S):
                self._expected = 0  # they were not out together: the meeting is off, serve the rest as they come
        return super()._serve(service)


def _gateway(base_url: str, cap: int = 10) -> Gateway:
    settings = Settings(llm=LLMKind.SIMULATE, llm_base_url=base_url, max_concurrency=cap, retries=0, batch_size=1)
    return Gateway(ChatProvider(settings), settings)


def test_graph_digests_then_fans_out_and_merges():
    agent = PageAgent(Gateway(ExtractiveProvider(), Settings(), 5))
    graph = agent.graph.get_graph()
    assert {edge.target for edge in graph.edges if edge.source == START} == {"digest"}
    assert {edge.target for edge in graph.edges if edge.source == "digest"} == {task.value for task in PAGE_TASKS}
    into_merge = {edge.source for edge in graph.edges if edge.target == "merge"}
    assert into_merge == {task.value for task in PAGE_TASKS}


async def test_branches_run_in_parallel_and_merge_into_a_valid_analysis(page):
    # a reply of half a second, far above what a busy machine adds to it, so the start probe's pair (served side by
    # side) reads as side by side and opens the whole window
    with _MeetingSim(latency_ms=500, ms_per_token=0) as sim:
        async with _gateway(sim.base_url) as gateway:
            sim.meet(2)
            await asyncio.gather(gateway.complete("first"), gateway.complete("second"))  # the start probe
            assert not gateway.limiter.window.probing and gateway.limiter.window.limit == 10
            sim.reset_stats()
            sim.meet(len(PAGE_TASKS))  # branches sent one after another would each wait alone, and fail the count
            analysis = await PageAgent(gateway).analyze(page)
        stats = sim.stats()
    assert isinstance(analysis, PageAnalysis) and analysis.summary
    assert stats["requests"] == len(PAGE_TASKS)
    assert stats["max_in_flight"] == len(PAGE_TASKS)  # all five branches were waiting on the server together
    summary = gateway.summary()
    assert summary["prompts"] == summary["requests"] == summary["attempts"] == len(PAGE_TASKS) + 2
    assert summary["by_status"]["completed"] == len(PAGE_TASKS) + 2


async def test_gateway_cap_holds_across_pages(page):
    with _MeetingSim(latency_ms=50, ms_per_token=0) as sim:
        sim.meet(2)  # the first two wait for each other: the cap is reached however the machine schedules
        async with _gateway(sim.base_url, cap=2) as gateway:
            agent = PageAgent(gateway)
            await asyncio.gather(*(agent.analyze(page) for _ in range(3)))
        assert sim.stats()["max_in_flight"] == 2
    assert gateway.max_in_flight == 2 and gateway.summary()["requests"] == 15


async def test_a_failing_branch_fails_the_page_with_the_reason(page):
    error = {"error": {"message": "temperature must be at most 2", "type": "invalid_request_error"}}
    with ScriptedLLM([(400, error)] * 5) as llm:
        async with _gateway(llm.base_url) as gateway:
            with pytest.raises(LLMError, match="HTTP 400: temperature must be at most 2"):
                await PageAgent(gateway).analyze(page)
    assert gateway.summary()["by_status"]["failed"] >= 1


async def test_synthesis_per_topic_records_failures_instead_of_raising():
    topics = [TopicInput("Guides", (("Retries", "How retries work.", ("backoff",)),)),
              TopicInput("Basics", (("Install", "How to install.", ()),))]
    with ScriptedLLM([(500, {"error": {"message": "boom"}})] * 2) as llm:
        async with _gateway(llm.base_url) as gateway:
            out = await synthesize_topics(gateway, topics)
    assert set(out) == {"Guides", "Basics"}
    assert all(isinstance(v, str) and "synthesis failed" in v and "HTTP 500" in v for v in out.values())


def _long_page(tmp_path) -> ParsedDoc:
    words = " ".join(f"Option{i} controls the retry budget of worker pool {i}." for i in range(1400))
    (tmp_path / "long.md").write_text(f"# Long reference\n\n{words}\n")
    page = parse(fetch(DocRef((tmp_path / "long.md").as_uri(), "Long", "Reference")), chunk_tokens=800)
    assert page.tokens > PAGE_TOKEN_BUDGET and len(page.chunks) > 4
    return page


async def test_a_long_page_is_read_chunk_by_chunk_by_the_sub_model_then_analysed_by_the_root(tmp_path):
    page = _long_page(tmp_path)
    with SimServer(latency_ms=20, ms_per_token=0) as sim:
        async with _gateway(sim.base_url) as gateway:
            analysis = await PageAgent(gateway, sub_model="small-model").analyze(page)
        models = sim.stats()
    assert isinstance(analysis, PageAnalysis) and analysis.summary
    summary = gateway.summary()
    # one note per chunk (map), then the five analyses over the notes (reduce), all counted in one place
    assert summary["prompts"] == len(page.chunks) + len(PAGE_TASKS) == models["requests"]
    by_model = {}
    for record in gateway.tracker.records.values():
        by_model[record.task] = by_model.get(record.task, 0) + 1
    assert by_model["text"] == len(page.chunks)


async def test_map_notes_that_all_fail_fall_back_to_the_first_chunks(tmp_path):
    page = _long_page(tmp_path)
    error = (400, {"error": {"message": "temperature must be at most 2", "type": "invalid_request_error"}})
    with ScriptedLLM([error] * len(page.chunks)) as llm:
        async with _gateway(llm.base_url) as gateway:
            read = await read_in_chunks(gateway, None, page)
    assert read is page  # nothing replaced: the branches read the page's first chunks as before
    assert gateway.summary()["by_status"]["failed"] == len(page.chunks)
