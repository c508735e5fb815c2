"""The LangGraph page agent: one reading per page. A page that fits the window is one request returning every
analysis; a part missing from that answer is asked again alone; a page too long for the window is read in
pieces as large as the window holds, then analysed once. --task-strategy separate keeps one branch per task."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from langgraph.graph import END, START

from document_it.analysis.agent import PageAgent, pieces_for_window, read_in_chunks, synthesize_topics
from document_it.analysis.gateway import Gateway
from document_it.analysis.prompts import PAGE_TASKS, PageAnalysis, PageQuestion, TopicInput
from document_it.analysis.providers import ChatProvider, ExtractiveProvider
from document_it.config import LLMKind, Settings, TaskStrategy
from document_it.core.cache import Memo
from document_it.errors import LLMError, LLMTransientError
from document_it.fetch import fetch
from document_it.models import DocRef, ParsedDoc, Task
from document_it.parse import parse
from document_it.testing.llm_sim import SimServer
from document_it.tokens import estimate_tokens

from _answers import ADVICE, CONCEPT, FULL, PATTERN, TOPIC
from _corpus import write_corpus
from _fake_llm import ScriptedLLM, completion

# one reply every single-task schema takes (Summary, and KeyConcepts..RelatedTopics' items, extra keys ignored):
# parts asked alone go out in parallel, so the order they reach a scripted server in is not known
ALONE = {"summary": "Asked alone.", "items": [{**CONCEPT, **ADVICE, **PATTERN, **TOPIC}]}


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


def _gateway(base_url: str, cap: int = 10, **extra) -> Gateway:
    settings = Settings(**{"llm": LLMKind.SIMULATE, "llm_base_url": base_url, "max_concurrency": cap, "retries": 0,
                           "batch_size": 1, **extra})
    return Gateway(ChatProvider(settings), settings)


def _by_task(gateway: Gateway) -> dict[str, int]:
    return gateway.summary()["by_task"]


def _asked_schemas(llm: ScriptedLLM) -> list[str]:
    """The name of the answer schema each request to `llm` asked for (json_schema, tools or json mode)."""
    names = []
    for body in llm.requests:
        if "response_format" in body and body["response_format"].get("json_schema"):
            names.append(body["response_format"]["json_schema"]["name"])
        elif body.get("tools"):
            names.append(body["tools"][0]["function"]["name"])
        else:
            names.append("?")
    return names


def _edges(agent: PageAgent) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for edge in agent.graph.get_graph().edges:
        out.setdefault(edge.source, set()).add(edge.target)
    return out


# -- the graph -------------------------------------------------------------------------------------------------

def test_the_combined_graph_routes_to_one_analysis_and_fans_out_only_for_parts_asked_again():
    agent = PageAgent(Gateway(ExtractiveProvider(), Settings(), 5))
    assert agent.strategy is TaskStrategy.AUTO  # the default: combined, for now
    edges = _edges(agent)
    assert edges[START] == {"analyse", "digest"}  # the page fits: straight to the one request; else notes first
    assert edges["digest"] == {"analyse"}
    assert edges["analyse"] == {"one_task", "merge"}  # missing parts go out again (Send), else merge
    assert edges["one_task"] == {"merge"} and edges["merge"] == {END}
    assert not {task.value for task in PAGE_TASKS} & set(edges)  # no branch per task


def test_the_separate_graph_digests_then_fans_out_one_branch_per_task_and_merges():
    agent = PageAgent(Gateway(ExtractiveProvider(), Settings(), 5), strategy=TaskStrategy.SEPARATE)
    edges = _edges(agent)
    assert edges[START] == {"digest"}
    assert edges["digest"] == {task.value for task in PAGE_TASKS}
    assert {source for source, targets in edges.items() if "merge" in targets} == {task.value for task in PAGE_TASKS}


def test_the_strategy_comes_from_the_settings():
    gateway = Gateway(ExtractiveProvider(), Settings(task_strategy=TaskStrategy.SEPARATE), 5)
    assert "summary" in _edges(PageAgent(gateway))


# -- a page that fits the window -------------------------------------------------------------------------------

async def test_a_page_that_fits_is_one_request_and_a_full_analysis(page):
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        async with _gateway(sim.base_url) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
        stats = sim.stats()
    assert stats["requests"] == 1 and stats["urls"] == {page.url: 1}
    assert isinstance(analysis, PageAnalysis)
    assert analysis.summary and all(getattr(analysis, task.value) for task in PAGE_TASKS)
    summary = gateway.summary()
    assert summary["by_task"] == {"page": 1} and summary["prompts"] == summary["attempts"] == 1


async def test_fewer_tasks_are_one_request_that_fills_only_those_fields(page):
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        async with _gateway(sim.base_url) as gateway:
            analysis = await PageAgent(gateway, tasks=(Task.CODE_PATTERNS, Task.SUMMARY)).analyze(page)
        assert sim.stats()["requests"] == 1
    assert analysis.summary and analysis.code_patterns
    assert analysis.key_concepts == analysis.implementation_details == analysis.related_topics == []
    assert _by_task(gateway) == {"page": 1}


async def test_the_same_page_again_is_answered_from_the_memo(page, tmp_path):
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        settings = Settings(llm=LLMKind.SIMULATE, llm_base_url=sim.base_url, retries=0, batch_size=1)
        async with Gateway(ChatProvider(settings), settings, memo=Memo(tmp_path / "memo.sqlite")) as gateway:
            first = await PageAgent(gateway).analyze(page)
            again = await PageAgent(gateway).analyze(page)
        assert sim.stats()["requests"] == 1
    assert again == first


# -- parts asked again -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("code_patterns", ["left out", "not a list"])
async def test_a_part_missing_from_the_combined_answer_is_asked_again_alone(page, code_patterns):
    reply = dict(FULL, code_patterns="none at all")
    if code_patterns == "left out":
        del reply["code_patterns"]
    script = [completion(json.dumps(reply)), completion(json.dumps({"items": [PATTERN, dict(PATTERN, name="b")]}))]
    with ScriptedLLM(script) as llm:
        async with _gateway(llm.base_url) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
    assert len(llm.requests) == 2
    assert _asked_schemas(llm) == ["PageAnswer", "CodePatterns"]
    assert _by_task(gateway) == {"code_patterns": 1, "page": 1}
    assert [p.name for p in analysis.code_patterns] == ["retry", "b"]  # from the second request
    kept = analysis.model_dump()
    assert {name: kept[name] for name in FULL if name != "code_patterns"} == \
        {name: value for name, value in FULL.items() if name != "code_patterns"}  # the others from the first


async def test_several_missing_parts_are_asked_again_in_parallel(page):
    script = [completion(json.dumps({"summary": FULL["summary"], "key_concepts": [CONCEPT]}))]
    script += [completion(json.dumps(ALONE))] * 3
    with ScriptedLLM(script) as llm:
        async with _gateway(llm.base_url) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
    assert len(llm.requests) == 4
    assert _asked_schemas(llm)[0] == "PageAnswer"
    assert sorted(_asked_schemas(llm)[1:]) == ["CodePatterns", "ImplementationDetails", "RelatedTopics"]
    assert _by_task(gateway) == {"code_patterns": 1, "implementation_details": 1, "page": 1, "related_topics": 1}
    assert analysis.summary == FULL["summary"] and analysis.key_concepts[0].name == "Backoff"
    assert analysis.implementation_details[0].title == ALONE["items"][0]["title"]  # the others from their own
    assert analysis.related_topics[0].relationship == ALONE["items"][0]["relationship"]
    assert analysis.code_patterns[0].example == ALONE["items"][0]["example"]


async def test_a_combined_reply_invalid_twice_has_every_part_asked_alone_and_the_page_completes(page):
    invalid = completion(json.dumps({"answer": "I looked at the page."}))
    script = [invalid, invalid] + [completion(json.dumps(ALONE))] * len(PAGE_TASKS)
    with ScriptedLLM(script) as llm:
        async with _gateway(llm.base_url) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
    assert len(llm.requests) == 2 + len(PAGE_TASKS)  # the reply, its repair, then one request per part
    assert _asked_schemas(llm)[:2] == ["PageAnswer", "PageAnswer"]
    summary = gateway.summary()
    assert summary["by_task"] == {"page": 1, **{task.value: 1 for task in PAGE_TASKS}}
    assert {status: n for status, n in summary["by_status"].items() if n} == {"failed": 1,
                                                                              "completed": len(PAGE_TASKS)}
    assert analysis.summary == "Asked alone." and all(getattr(analysis, task.value) for task in PAGE_TASKS)


async def test_a_refused_combined_request_has_every_part_asked_alone(page):
    refused = (422, {"error": {"message": "the prompt is not acceptable", "type": "invalid_request_error"}})
    script = [refused] + [completion(json.dumps(ALONE))] * len(PAGE_TASKS)
    with ScriptedLLM(script) as llm:
        async with _gateway(llm.base_url) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
    assert len(llm.requests) == 1 + len(PAGE_TASKS)
    assert all(getattr(analysis, task.value) for task in PAGE_TASKS)


async def test_a_server_error_on_the_combined_request_fails_the_page_without_asking_each_part(page):
    with ScriptedLLM([(500, {"error": {"message": "boom"}})] * 6) as llm:
        async with _gateway(llm.base_url) as gateway:
            with pytest.raises(LLMTransientError, match="HTTP 500"):
                await PageAgent(gateway).analyze(page)
    assert len(llm.requests) == 1  # --retries 0; each part alone would fare no better against a failing server
    assert _by_task(gateway) == {"page": 1}


@pytest.mark.parametrize("strategy", [TaskStrategy.COMBINED, TaskStrategy.SEPARATE])
async def test_a_failing_request_fails_the_page_with_the_reason(page, strategy):
    error = {"error": {"message": "temperature must be at most 2", "type": "invalid_request_error"}}
    with ScriptedLLM([(400, error)] * (len(PAGE_TASKS) + 1)) as llm:
        async with _gateway(llm.base_url) as gateway:
            with pytest.raises(LLMError, match="HTTP 400: temperature must be at most 2"):
                await PageAgent(gateway, strategy=strategy).analyze(page)
    assert gateway.summary()["by_status"]["failed"] >= 1


# -- --task-strategy separate ----------------------------------------------------------------------------------

async def test_separate_branches_run_in_parallel_and_merge_into_a_valid_analysis(page):
    # a reply of half a second, far above what a busy machine adds to it, so the start probe's pair (served side by
    # side) reads as side by side and opens the whole window
    with _MeetingSim(latency_ms=500, ms_per_token=0) as sim:
        async with _gateway(sim.base_url) as gateway:
            sim.meet(2)
            await asyncio.gather(gateway.complete("first"), gateway.complete("second"))  # the start probe
            assert not gateway.limiter.window.probing and gateway.limiter.window.limit == 10
            sim.reset_stats()
            sim.meet(len(PAGE_TASKS))  # branches sent one after another would each wait alone, and fail the count
            analysis = await PageAgent(gateway, strategy=TaskStrategy.SEPARATE).analyze(page)
        stats = sim.stats()
    assert isinstance(analysis, PageAnalysis) and analysis.summary
    assert stats["requests"] == len(PAGE_TASKS) and stats["urls"] == {page.url: len(PAGE_TASKS)}
    assert stats["max_in_flight"] == len(PAGE_TASKS)  # all five branches were waiting on the server together
    summary = gateway.summary()
    assert summary["prompts"] == summary["requests"] == summary["attempts"] == len(PAGE_TASKS) + 2
    assert summary["by_status"]["completed"] == len(PAGE_TASKS) + 2
    assert summary["by_task"] == {"text": 2, **{task.value: 1 for task in PAGE_TASKS}}


@pytest.mark.parametrize("strategy, per_page", [(TaskStrategy.COMBINED, 1), (TaskStrategy.SEPARATE, len(PAGE_TASKS))])
async def test_gateway_cap_holds_across_pages(tmp_path, strategy, per_page):
    write_corpus(tmp_path)
    pages = [parse(fetch(DocRef((tmp_path / "pages" / name).as_uri(), name, "Guides")))
             for name in ("retries.html", "workers.html", "install.html")]
    with _MeetingSim(latency_ms=50, ms_per_token=0) as sim:
        sim.meet(2)  # the first two wait for each other: the cap is reached however the machine schedules
        async with _gateway(sim.base_url, cap=2) as gateway:
            agent = PageAgent(gateway, strategy=strategy)
            await asyncio.gather(*(agent.analyze(p) for p in pages))
        assert sim.stats()["max_in_flight"] == 2
        assert sim.stats()["urls"] == {p.url: per_page for p in pages}
    assert gateway.max_in_flight == 2 and gateway.summary()["requests"] == 3 * per_page


# -- topics ----------------------------------------------------------------------------------------------------

async def test_synthesis_per_topic_records_failures_instead_of_raising():
    topics = [TopicInput("Guides", (("Retries", "How retries work.", ("backoff",)), ("Workers", "Pools.", ()))),
              TopicInput("Basics", (("Install", "How to install.", ()), ("Quickstart", "First steps.", ())))]
    with ScriptedLLM([(500, {"error": {"message": "boom"}})] * 2) as llm:
        async with _gateway(llm.base_url) as gateway:
            out = await synthesize_topics(gateway, topics)
    assert set(out) == {"Guides", "Basics"}
    assert all(isinstance(v, str) and "synthesis failed" in v and "HTTP 500" in v for v in out.values())
    assert _by_task(gateway) == {"topic_synthesis": 2}


async def test_a_topic_of_one_page_is_its_page_without_a_request():
    topics = [TopicInput("Reference", (("CLI", "The command line tool.", ("flags", "exit codes")),))]
    with ScriptedLLM([]) as llm:
        async with _gateway(llm.base_url) as gateway:
            out = await synthesize_topics(gateway, topics)
    assert out["Reference"].overview == "The command line tool." and out["Reference"].key_themes == ["flags", "exit codes"]
    assert _by_task(gateway) == {}


# -- pages too long for the window -----------------------------------------------------------------------------

def _long_page(tmp_path, name: str = "long", chunk_tokens: int = 300, options: int = 1400) -> ParsedDoc:
    """A page of about 16 tokens per option (22,000 by default), parsed in chunks smaller than even a 2,048-token
    window holds."""
    words = " ".join(f"Option{i} of {name} controls the retry budget of worker pool {i}." for i in range(options))
    (tmp_path / f"{name}.md").write_text(f"# Long reference\n\n{words}\n")
    page = parse(fetch(DocRef((tmp_path / f"{name}.md").as_uri(), name, "Reference")), chunk_tokens=chunk_tokens)
    assert page.tokens > 14 * options and len(page.chunks) >= 3
    return page


def test_pieces_follow_the_window_not_the_parsers_chunks(tmp_path):
    page = _long_page(tmp_path, chunk_tokens=800)
    small, large = pieces_for_window(page.chunks, 500), pieces_for_window(page.chunks, 4000)
    assert len(small) > len(page.chunks) > len(large)  # chunks cut for a small window, joined for a large one
    assert " ".join(" ".join(small).split()) == " ".join(" ".join(large).split()) == \
        " ".join(" ".join(c.text for c in page.chunks).split())  # no text lost or repeated
    assert all(estimate_tokens(piece) <= 500 for piece in small)
    assert all(estimate_tokens(piece) <= 4000 for piece in large)


async def test_a_long_page_is_read_in_pieces_for_the_window_by_the_sub_model_then_analysed_once(tmp_path):
    page = _long_page(tmp_path)
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        async with _gateway(sim.base_url, context_tokens=2048) as gateway:
            # cut before any reply, as the window then believes (replies' usage may widen it later)
            pieces = pieces_for_window(page.chunks, gateway.sibling("small-model").piece_room())
            analysis = await PageAgent(gateway, sub_model="small-model").analyze(page)
        stats = sim.stats()
    assert isinstance(analysis, PageAnalysis) and analysis.summary and analysis.key_concepts
    by_task = _by_task(gateway)
    # one note per piece the window holds (map), then combined requests over the notes (a 2,048-token window
    # holds the answers of a few analyses at a time); notes merged in neighbouring groups (free-form "text"
    # prompts) only while they do not fit
    assert by_task["chunk_notes"] == len(pieces) < len(page.chunks)  # the window's pieces, not the parser's chunks
    assert 1 <= by_task["page"] < len(PAGE_TASKS) and set(by_task) <= {"chunk_notes", "page", "text"}
    assert by_task.get("text", 0) < len(pieces) // 2
    assert gateway.summary()["prompts"] == sum(by_task.values()) == stats["requests"]
    assert stats["urls"] == {page.url: by_task["page"]}  # only the combined requests name the page


async def test_a_larger_window_reads_a_long_page_in_fewer_pieces(tmp_path):
    page = _long_page(tmp_path)
    counts = {}
    for window in (2048, 8192):
        with SimServer(latency_ms=5, ms_per_token=0) as sim:
            async with _gateway(sim.base_url, context_tokens=window) as gateway:
                pieces = pieces_for_window(page.chunks, gateway.piece_room())  # cut before any reply
                await PageAgent(gateway).analyze(page)
        counts[window] = _by_task(gateway)["chunk_notes"]
        assert counts[window] == len(pieces)
    assert counts[8192] < counts[2048] < len(page.chunks)


async def test_notes_of_long_pages_batch_together_when_they_wait(tmp_path):
    # pages of about 3,600 tokens in a 4,096-token window: too long for even one analysis alone, two pieces
    # each for notes, a full one and a short rest; the short rests of several pages fit one request together
    pages = [_long_page(tmp_path, f"page{i}", options=220) for i in range(4)]
    with SimServer(latency_ms=20, ms_per_token=0) as sim:
        # the batcher on (batch size auto), one request at a time: the notes of all pages queue up together
        async with _gateway(sim.base_url, cap=1, batch_size=0, context_tokens=4096) as gateway:
            assert gateway.batcher is not None
            alone = [PageQuestion((task,)) for task in PAGE_TASKS]
            assert not any(gateway.page_fits(p, (question,)) for p in pages for question in alone)
            agent = PageAgent(gateway)
            analyses = await asyncio.gather(*(agent.analyze(p) for p in pages))
            notes = sum(len(pieces_for_window(p.chunks, gateway.piece_room())) for p in pages)
        stats = sim.stats()
    assert all(a.summary for a in analyses) and notes == 2 * len(pages)
    summary = gateway.summary()
    assert summary["prompts"] >= notes + len(pages)  # every note and every page was asked...
    batching = summary["batching"]
    assert batching["batches"] >= 1 and batching["items_batched"] >= 2
    assert summary["by_task"]["chunk_notes"] < notes  # ...but several notes went out in one request
    assert stats["requests"] == summary["requests"] < summary["prompts"]


class _ReadingSim(SimServer):
    """The simulator, keeping the prompt text of every request it answered (200)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.read: list[str] = []

    def _complete(self, raw: bytes, auth: str | None, *stream):
        reply = super()._complete(raw, auth, *stream)
        if reply.status == 200:
            self.read.append(" ".join(m.get("content") or "" for m in json.loads(raw)["messages"]))
        return reply


async def test_a_window_learned_from_a_refusal_still_reads_every_part_of_a_long_page(tmp_path):
    page = _long_page(tmp_path)
    # like llama-cpp-python: a 2,048-token window it does not announce; we start from the default belief (8,192)
    with _ReadingSim(latency_ms=2, ms_per_token=0, context_tokens=2048, hidden_context=True, token_ratio=1.35) as sim:
        async with _gateway(sim.base_url) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
            learned = gateway.summary()["context"]
    assert analysis.summary and learned["tokens"] == 2048 and learned["learned"] >= 1
    notes = " ".join(text for text in sim.read if "Part " in text and "of long controls" in text)
    unread = [i for i in range(1400) if f"Option{i} of long controls" not in notes]
    assert unread == []  # every sentence of the page went into a note that was answered


async def test_a_short_page_in_a_small_window_is_read_whole_without_notes(page):
    assert page.tokens < 100
    with _ReadingSim(latency_ms=2, ms_per_token=0, context_tokens=2048) as sim:
        async with _gateway(sim.base_url, context_tokens=2048) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
    assert analysis.summary
    assert "chunk_notes" not in _by_task(gateway)  # a 74-token page fits a 2,048-token window
    text = " ".join(page.text.split())
    assert any(text in " ".join(prompt.split()) for prompt in sim.read if "URL: " in prompt)  # read whole


async def test_notes_that_all_fail_leave_the_page_as_it_is(tmp_path):
    page = _long_page(tmp_path)
    error = (400, {"error": {"message": "temperature must be at most 2", "type": "invalid_request_error"}})
    with ScriptedLLM([error] * 64) as llm:
        async with _gateway(llm.base_url) as gateway:
            pieces = pieces_for_window(page.chunks, gateway.piece_room())
            read = await read_in_chunks(gateway, None, page)
    assert read is page  # nothing replaced: the analysis reads as much of the page as the window holds
    assert len(llm.requests) == len(pieces)
    assert gateway.summary()["by_status"]["failed"] == len(pieces) == _by_task(gateway)["chunk_notes"]
