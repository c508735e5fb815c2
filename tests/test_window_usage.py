"""The window learns from replies' usage how the server counts prompts, and a page is read whole whenever it can
be: with brief answers when full ones leave it no room, and after the first reply when only a server that counts
fewer tokens than estimated would hold it."""

from __future__ import annotations

import asyncio

from document_it.analysis.agent import PageAgent, _fits, page_reading
from document_it.analysis.context import MIN_SCALE, START_SCALE, ContextWindow
from document_it.analysis.gateway import Gateway
from document_it.analysis.prompts import PAGE_TASKS, PageQuestion
from document_it.analysis.providers import ChatProvider
from document_it.analysis.schemas import answer_tokens
from document_it.config import LLMKind, Settings
from document_it.fetch import fetch
from document_it.models import DocRef, ParsedDoc
from document_it.parse import parse
from document_it.testing.llm_sim import SimServer

WINDOW = 4096


# -- the scale follows the usage replies show ------------------------------------------------------------------

def test_usage_lowers_the_scale_with_a_margin_and_never_raises_it():
    window = ContextWindow(8192)
    assert window.scale == START_SCALE and window.may_grow()
    window.observe(150, 100)  # too small a prompt to say how the server counts
    assert window.scale == START_SCALE and window.may_grow() and window.summary()["counted"] is None
    window.observe(2000, 1800)
    assert abs(window.scale - 0.9 * 1.05) < 1e-9 and not window.may_grow()
    assert window.summary()["counted"] == 0.9  # run.json: the ratio replies showed
    window.observe(2000, 1900)  # the largest ratio seen decides: 0.95 * 1.05, a move of over 5 %
    assert abs(window.scale - 0.95 * 1.05) < 1e-9
    window.observe(2000, 1920)  # under 5 %: work sized for the window is not redone for so little
    assert abs(window.scale - 0.95 * 1.05) < 1e-9
    window.observe(1000, 3000)  # counts high: the refusals deal with that, usage never raises the start
    assert window.scale == START_SCALE
    window.observe(1000, 100)
    assert window.scale == START_SCALE  # the largest ratio seen stays the measure


def test_usage_is_bounded_below_and_ignored_once_a_refusal_taught_the_scale():
    window = ContextWindow(8192)
    window.observe(4000, 1000)
    assert window.scale == MIN_SCALE
    taught = ContextWindow(8192)
    # a refusal naming the prompt's real size: a tokenizer counting 1.8 tokens per estimated token
    assert taught.learn("maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens",
                        5000, 1024)
    assert taught.scale > START_SCALE and not taught.may_grow()
    before = taught.scale
    taught.observe(2000, 1000)
    assert taught.scale == before


def test_a_refusal_that_only_names_the_window_leaves_usage_in_charge():
    window = ContextWindow(8192)  # llama-cpp-python announces nothing: its window is learned from a refusal
    assert window.learn("This model's maximum context length is 4096 tokens.", 5000, 1024)
    assert window.tokens == 4096 and window.scale == START_SCALE and window.may_grow()
    window.observe(2000, 1600)
    assert abs(window.scale - 0.8 * 1.05) < 1e-9


# -- brief answers when full ones leave the page no room --------------------------------------------------------

def test_a_page_is_read_whole_with_brief_answers_before_it_is_cut_in_pieces():
    def fits(room_for_answers: int):
        return lambda question: answer_tokens(question) <= room_for_answers

    full_room, brief_room = answer_tokens(PageQuestion()), answer_tokens(PageQuestion(brief=True))
    assert brief_room < full_room
    (question,) = page_reading(PAGE_TASKS, fits(full_room))
    assert not question.brief and question.tasks == PAGE_TASKS
    (question,) = page_reading(PAGE_TASKS, fits(brief_room))
    assert question.brief and question.tasks == PAGE_TASKS  # one reading, brief, rather than several
    assert page_reading(PAGE_TASKS, fits(10)) is None  # not even one analysis alone: read in pieces
    (question,) = page_reading(PAGE_TASKS, fits(full_room), brief=True)
    assert question.brief  # asked brief (--answers brief, or a slow server): never turned full


# -- a page that fits only if the server counts fewer tokens waits for the first reply --------------------------

def _gateway(base_url: str) -> Gateway:
    settings = Settings(llm=LLMKind.SIMULATE, llm_base_url=base_url, max_concurrency=4, retries=0, batch_size=1,
                        context_tokens=WINDOW)
    return Gateway(ChatProvider(settings), settings)


def _page(tmp_path, name: str, options: int) -> ParsedDoc:
    words = " ".join(f"Option{i} of {name} sets the retry budget of pool {i}." for i in range(options))
    (tmp_path / f"{name}.md").write_text(f"# {name.title()} reference\n\n{words}\n")
    return parse(fetch(DocRef((tmp_path / f"{name}.md").as_uri(), name, "Reference")))


def _in_doubt(tmp_path, gateway: Gateway) -> ParsedDoc:
    """A page too long for the window at the starting scale, short enough at one token per estimated token."""
    fits = _fits(gateway, (PageQuestion(PAGE_TASKS),))
    for options in range(100, 400, 5):
        page = _page(tmp_path, "doubt", options)
        if not fits(page) and fits(page, 1.0):
            return page
    raise AssertionError("no page size between the two scales")


async def _first_request_out(sim: SimServer) -> None:
    while sim.stats()["attempts"] == 0:
        await asyncio.sleep(0.005)


async def test_a_page_in_doubt_waits_for_the_first_reply_and_is_read_whole(tmp_path):
    with SimServer(latency_ms=50, ms_per_token=0, context_tokens=WINDOW) as sim:
        async with _gateway(sim.base_url) as gateway:
            page, small = _in_doubt(tmp_path, gateway), _page(tmp_path, "small", 10)
            agent = PageAgent(gateway)
            first = asyncio.ensure_future(agent.analyze(small))
            await _first_request_out(sim)  # a reply is on its way
            analyses = await asyncio.gather(first, agent.analyze(page))
            scale = gateway.provider.window.scale
    assert all(analysis.summary for analysis in analyses)
    by_task = gateway.summary()["by_task"]
    assert "chunk_notes" not in by_task and by_task["page"] == 2  # each page read whole, in one request
    assert MIN_SCALE <= scale < START_SCALE  # the simulator counts about as we estimate


async def test_a_page_in_doubt_with_no_reply_to_wait_for_is_read_in_pieces(tmp_path):
    with SimServer(latency_ms=5, ms_per_token=0, context_tokens=WINDOW) as sim:
        async with _gateway(sim.base_url) as gateway:
            page = _in_doubt(tmp_path, gateway)
            analysis = await asyncio.wait_for(PageAgent(gateway).analyze(page), 60)  # nothing to wait for
    assert analysis.summary and gateway.summary()["by_task"]["chunk_notes"] >= 1
