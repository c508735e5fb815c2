"""The window learns from replies' usage how the server counts prompts, and a page is read whole whenever it can
be: with brief answers when full ones leave it no room, and after the first reply when only a server that counts
fewer tokens than estimated would hold it."""

from __future__ import annotations

import asyncio
import json

from document_it.analysis.agent import PageAgent, _fits, page_reading
from document_it.analysis.context import MIN_SCALE, START_SCALE, ContextWindow
from document_it.analysis.gateway import Gateway
from document_it.analysis.prompts import PAGE_TASKS, PageQuestion
from document_it.analysis.providers import ChatProvider
from document_it.analysis.schemas import BRIEF_ITEMS, answer_tokens
from document_it.config import LLMKind, Settings
from document_it.fetch import fetch
from document_it.models import DocRef, ParsedDoc, Task
from document_it.parse import parse
from document_it.testing.llm_sim import SimServer
from _answers import FULL, PATTERN
from _fake_llm import ScriptedLLM, completion

WINDOW = 8192


# -- the scale follows the usage replies show ------------------------------------------------------------------

def test_usage_lowers_the_scale_with_a_margin_and_never_raises_it_past_the_start():
    window = ContextWindow(8192)
    assert window.scale == START_SCALE and window.may_grow()
    window.observe(150, 100)  # too small a prompt to say how the server counts
    assert window.scale == START_SCALE and window.may_grow() and window.summary()["counted"] is None
    window.observe(2000, 1800)
    assert abs(window.scale - 0.9 * 1.05) < 1e-9 and not window.may_grow()
    assert window.summary()["counted"] == 0.9  # run.json: the ratio replies showed
    window.observe(2000, 1890)  # a rise is always taken, however small: the margin stays whole
    assert abs(window.scale - 0.945 * 1.05) < 1e-9
    window.observe(2000, 1000)  # the largest ratio seen stays the measure
    assert abs(window.scale - 0.945 * 1.05) < 1e-9
    window.observe(1000, 3000)  # counts high: the refusals deal with that, usage never raises the start
    assert window.scale == START_SCALE


def test_a_fall_of_under_five_percent_is_not_worth_redoing_work_for():
    window = ContextWindow(8192)
    window.observe(2000, 2200)  # 1.1 x 1.05 = 1.155: under 5 % below 1.2
    assert window.scale == START_SCALE


def test_usage_says_nothing_when_the_prompt_is_mostly_schema_or_the_ratio_is_implausible():
    window = ContextWindow(8192)
    # 4,000 estimated tokens of which 500 are the schema a server may leave uncounted (a json_schema grammar):
    # under nine parts of messages to one of schema, a server that leaves it out would look 12 % cheaper
    window.observe(4000, 3000, uncertain=500)
    assert window.scale == START_SCALE and not window.counted
    window.observe(5000, 4500, uncertain=500)  # nine parts to one: taken
    assert abs(window.scale - 0.9 * 1.05) < 1e-9
    low = ContextWindow(8192)
    low.observe(4000, 1000)  # a quarter of the estimate: a server that truncates, or leaves cached tokens out
    assert low.scale == START_SCALE and not low.counted
    low.observe(4000, 2900)  # 0.725 x 1.05 is still above the floor of 0.75
    assert abs(low.scale - 0.725 * 1.05) < 1e-9 and low.scale >= MIN_SCALE


def test_a_refusals_lesson_is_kept_and_remembered_by_the_next_run(tmp_path):
    store = tmp_path / "context_window.json"
    window = ContextWindow(8192, store, "server model")
    window.observe(4000, 3200)
    assert abs(window.scale - 0.84) < 1e-9
    # a refusal naming the prompt's real size: 0.9 a token, over what usage showed
    assert window.learn("maximum context length is 8192 tokens. However, your messages resulted in 6300 tokens",
                        7000, 1600)
    taught = window.scale
    assert abs(taught - 0.9 * 1.05) < 1e-9 and not window.may_grow()
    window.observe(4000, 2800)
    assert window.scale == taught  # usage never undoes a refusal's lesson
    again = ContextWindow(None, store, "server model")
    assert again.scale == round(taught, 3) and not again.may_grow()  # nor does the next run


def test_usage_is_ignored_once_a_refusal_raised_the_scale():
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
    # no task alone has room for its full answer: brief groups before pieces
    groups = page_reading(PAGE_TASKS, fits(answer_tokens(PageQuestion((Task.SUMMARY, Task.KEY_CONCEPTS), True))))
    assert groups and all(question.brief for question in groups) and len(groups) > 1
    assert tuple(task for question in groups for task in question.tasks) == PAGE_TASKS


# -- a page that fits only if the server counts fewer tokens waits for a reply that tells -----------------------

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
    for options in range(300, 700, 5):
        page = _page(tmp_path, "doubt", options)
        if not fits(page) and fits(page, 1.0):
            return page
    raise AssertionError("no page size between the two scales")


def _spied(gateway: Gateway) -> list[int]:
    waits: list[int] = []
    counted = gateway.usage_counted

    async def spy() -> None:
        waits.append(1)
        await counted()

    gateway.usage_counted = spy  # type: ignore[method-assign]
    return waits


async def _first_request_out(sim: SimServer) -> None:
    async def out() -> None:
        while sim.stats()["attempts"] == 0:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(out(), 30)


async def test_a_page_in_doubt_waits_for_a_reply_whose_usage_tells_and_is_read_whole(tmp_path):
    with SimServer(latency_ms=300, ms_per_token=0, context_tokens=WINDOW) as sim:
        async with _gateway(sim.base_url) as gateway:
            page, told = _in_doubt(tmp_path, gateway), _page(tmp_path, "told", 330)
            assert gateway.page_fits(told, (PageQuestion(PAGE_TASKS),))  # read whole at once, mostly text
            waits, agent = _spied(gateway), PageAgent(gateway)
            first = asyncio.ensure_future(agent.analyze(told))
            await _first_request_out(sim)  # a reply is on its way
            analyses = await asyncio.wait_for(asyncio.gather(first, agent.analyze(page)), 60)
            scale = gateway.provider.window.scale
    assert all(analysis.summary for analysis in analyses) and waits == [1]
    by_task = gateway.summary()["by_task"]
    assert "chunk_notes" not in by_task and by_task["page"] == 2  # each page read whole, in one request
    assert MIN_SCALE <= scale < START_SCALE  # the simulator counts about as we estimate


async def test_a_page_in_doubt_with_no_reply_to_wait_for_is_read_in_pieces(tmp_path):
    with SimServer(latency_ms=5, ms_per_token=0, context_tokens=WINDOW) as sim:
        async with _gateway(sim.base_url) as gateway:
            page = _in_doubt(tmp_path, gateway)
            waits = _spied(gateway)
            analysis = await asyncio.wait_for(PageAgent(gateway).analyze(page), 60)  # nothing to wait for
    assert analysis.summary and waits == [1] and gateway.summary()["by_task"]["chunk_notes"] >= 1


# -- a part asked again after a brief whole reading is asked brief too -----------------------------------------

async def test_a_part_missing_from_a_brief_whole_reading_is_asked_again_brief_not_from_a_cut_page(tmp_path):
    settings = Settings(llm=LLMKind.SIMULATE, llm_base_url="http://127.0.0.1:9/v1", context_tokens=4096)
    provider = ChatProvider(settings)
    full, brief = PageQuestion(PAGE_TASKS), PageQuestion(PAGE_TASKS, brief=True)
    page = next(page for page in (_page(tmp_path, "band", n) for n in range(60, 260, 4))
                if not provider.fits_whole(full, page) and provider.fits_whole(brief, page)
                and not provider.fits_whole(Task.CODE_PATTERNS, page))
    reply = {name: value for name, value in FULL.items() if name != "code_patterns"}
    script = [completion(json.dumps(reply)), completion(json.dumps({"code_patterns": [PATTERN]}))]
    with ScriptedLLM(script) as llm:
        settings = settings.with_(llm_base_url=llm.base_url, retries=0, batch_size=1)
        async with Gateway(ChatProvider(settings), settings) as gateway:
            analysis = await PageAgent(gateway).analyze(page)
    assert len(llm.requests) == 2 and [p.name for p in analysis.code_patterns] == [PATTERN["name"]]
    for body in llm.requests:  # both brief combined questions (the second of the missing part alone), each
        schema = body["response_format"]["json_schema"]  # reading the whole page
        assert schema["name"] == "PageAnswer"
        assert schema["schema"]["properties"]["code_patterns"]["maxItems"] == BRIEF_ITEMS[Task.CODE_PATTERNS]
        assert page.chunks[-1].text.split()[-1] in body["messages"][-1]["content"]
    assert set(llm.requests[1]["response_format"]["json_schema"]["schema"]["properties"]) == {"code_patterns"}
