"""The model's context window: refusals it learns from, prompts built within it, whole runs against servers
with small windows (announced, or found out from refusals) that still analyse every page, long ones in chunks."""

from __future__ import annotations

import json

import pytest

from document_it.analysis.context import (DEFAULT_CONTEXT_TOKENS, MIN_SCALE, START_SCALE, ContextWindow,
                                          is_context_error)
from document_it.analysis.endpoint import announced_context, check_endpoint
from document_it.analysis.agent import page_reading, pieces_for_window
from document_it.analysis.prompts import PAGE_TASKS, PageQuestion, Task, TopicInput, page_fits, render
from document_it.analysis.providers import ChatProvider
from document_it.config import LLMKind, Mode, Settings
from document_it.fetch import fetch
from document_it.models import Chunk, DocRef, Link, ParsedDoc
from document_it.parse import parse
from document_it.run.pipeline import run
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer
from document_it.tokens import estimate_tokens

from _corpus import PAGES, write_corpus

# what servers people run say when a request is too long for the model
VLLM = ("This model's maximum context length is 4096 tokens. However, you requested 5200 tokens (4176 in the "
        "messages, 1024 in the completion). Please reduce the length of the messages or completion.")
VLLM_MAX_TOKENS = ("'max_tokens' is too large: 7000. This model's maximum context length is 4096 tokens and your "
                   "request has 900 input tokens (7000 > 4096 - 900).")
LLAMA_CPP_PYTHON = "Requested tokens (2600) exceed context window of 2048"
LLAMA_SERVER = json.dumps({"error": {"code": 400, "message": "the request exceeds the available context size, try "
                                     "increasing it", "type": "exceed_context_size_error",
                                     "n_prompt_tokens": 5000, "n_ctx": 4096}})


def _page(words: int, links: int = 0) -> ParsedDoc:
    text = " ".join(f"word{i}" for i in range(words))
    chunks = tuple(Chunk(i, text[i * 3200:(i + 1) * 3200], estimate_tokens(text[i * 3200:(i + 1) * 3200]))
                   for i in range(len(text) // 3200 + 1))
    return ParsedDoc(url="https://docs.test/page", title="Page", topic="Guides", text=text, chunks=chunks,
                     tokens=estimate_tokens(text),
                     links=tuple(Link(f"https://docs.test/l{i}", f"link number {i}") for i in range(links)))


def _tokens(messages) -> int:
    return estimate_tokens("".join(text for _, text in messages))


@pytest.mark.parametrize("reply, window, scale_at_least", [
    (VLLM, 4096, 4176 / 3000), (VLLM_MAX_TOKENS, 4096, 1.2), (LLAMA_CPP_PYTHON, 2048, 1.2),
    (LLAMA_SERVER, 4096, 5000 / 3000),
    ("Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with "
     "context length of only 4096 tokens", 4096, 1.2),
])
def test_a_refusal_that_names_the_window_sets_it(reply, window, scale_at_least):
    context = ContextWindow()
    assert context.tokens == DEFAULT_CONTEXT_TOKENS
    assert is_context_error(400, reply)
    shrunk = context.learn(reply, prompt_estimate=3000, sent_max_tokens=DEFAULT_CONTEXT_TOKENS - 3600)
    assert shrunk and context.tokens == window and context.scale >= scale_at_least
    assert context.prompt_room() < 3000


def test_a_refusal_that_counts_the_prompt_teaches_the_tokenizer_ratio():
    context = ContextWindow(4096)
    context.learn(LLAMA_SERVER, prompt_estimate=2500, sent_max_tokens=1000)  # the server counted 5000
    assert context.scale == pytest.approx(5000 / 2500 * 1.05)
    assert context.prompt_room() * context.scale + context.answer_room() <= 4096


def test_a_refusal_that_says_nothing_useful_assumes_a_longer_prompt():
    context = ContextWindow(4096)
    room = context.prompt_room()
    assert context.learn("context length exceeded", prompt_estimate=room, sent_max_tokens=1024)
    assert context.scale == pytest.approx(1.2 * 4 / 3) and context.prompt_room() < room


def test_a_refusal_of_a_prompt_that_never_fitted_teaches_nothing_and_a_known_window_refuses_to_send():
    context = ContextWindow(1024)
    context.learn("context length exceeded", prompt_estimate=2000, sent_max_tokens=16)  # built too big anyway
    assert (context.tokens, context.scale, context.learned) == (1024, 1.2, 0)
    assert not context.holds(900) and context.holds(600)  # 900 x 1.2 + 16 > 1024
    assert ContextWindow().holds(100_000)  # a guessed window (8192) never stops a request


def test_a_burst_of_refusals_shrinks_the_budget_once():
    context = ContextWindow(4096)
    room = context.prompt_room()
    sent = context.max_tokens(room)
    for _ in range(20):  # twenty requests built under the same belief, refused together
        context.learn("context length exceeded", prompt_estimate=room, sent_max_tokens=sent)
    assert context.learned == 1 and context.refusals == 20


def test_what_a_refusal_taught_is_remembered_for_the_next_run(tmp_path):
    store = tmp_path / "context_window.json"
    first = ContextWindow(None, store, "http://127.0.0.1:1/v1 small")
    first.learn(VLLM, prompt_estimate=3000, sent_max_tokens=1024)
    again = ContextWindow(None, store, "http://127.0.0.1:1/v1 small")
    assert (again.tokens, again.scale) == (4096, pytest.approx(first.scale, abs=1e-3))
    other = ContextWindow(None, store, "http://127.0.0.1:1/v1 large")
    assert other.tokens == DEFAULT_CONTEXT_TOKENS  # another model keeps its own
    assert ContextWindow(16384, store, "http://127.0.0.1:1/v1 small").tokens == 16384  # given or announced wins
    store.write_text("{not json")
    assert ContextWindow(None, store, "x").tokens == DEFAULT_CONTEXT_TOKENS  # a broken file is ignored


@pytest.mark.parametrize("status, text", [(400, "temperature must be at most 2"), (429, "maximum context length"),
                                          (400, "response_format json_schema is not supported")])
def test_other_errors_are_not_context_errors(status, text):
    assert not is_context_error(status, text)


@pytest.mark.parametrize("window", [1024, 2048, 4096, 8192])
def test_every_prompt_is_built_within_the_window(window):
    context = ContextWindow(window)
    page = _page(6000, links=40)
    topic = TopicInput("Guides", tuple((f"Page {i}", "A summary of three sentences. " * 3, ("a", "b")) for i in range(300)))
    for task in (*PAGE_TASKS, Task.TOPIC_SYNTHESIS):
        context_ = topic if task is Task.TOPIC_SYNTHESIS else page
        messages = render(task, context_, context.prompt_room(), 250)
        assert _tokens(messages) + 250 <= context.prompt_room()
        assert context.max_tokens(_tokens(messages) + 250) >= context.answer_room()
    assert not page_fits(page, Task.SUMMARY, context.prompt_room())
    assert page_fits(_page(100), Task.SUMMARY, context.prompt_room(), 100)


def test_a_batch_holds_only_what_fits_with_room_for_every_answer():
    context = ContextWindow(4096)
    assert context.fits(1500, answers=2) and not context.fits(1500, answers=5)
    assert context.answer_room(4) == 2048


def test_the_window_is_read_from_what_servers_announce():
    assert announced_context({"id": "m", "max_model_len": 32768}) == 32768  # vLLM
    assert announced_context({"id": "m", "context_length": 4096}) == 4096  # OpenRouter, LM Studio
    assert announced_context({"id": "m", "meta": {"n_ctx": 2048}}) == 2048  # llama-server's meta
    assert announced_context({"id": "m", "object": "model"}) is None
    assert announced_context({"id": "m", "max_model_len": True}) is None


@pytest.mark.parametrize("hidden, expected", [(False, 3000), (True, None)])
def test_check_endpoint_takes_the_announced_window(tmp_path, hidden, expected):
    with SimServer(latency_ms=1, ms_per_token=0, max_seconds=60, context_tokens=3000, hidden_context=hidden) as sim:
        settings = Settings(llm=LLMKind.OPENAI, llm_base_url=sim.base_url, state_dir=tmp_path, model_given=False)
        assert check_endpoint(settings).context_tokens == expected
        given = settings.with_(context_tokens=1024)
        assert check_endpoint(given).context_tokens == 1024  # the flag wins


@pytest.fixture(scope="module")
def long_site(tmp_path_factory):
    """The test corpus plus a page about six times as long as a 2,048-token window, and one of about 2,500
    tokens: one prompt by the default belief (8,192), too long for a 2,048-token server."""
    root = tmp_path_factory.mktemp("long")
    (root / "pages").mkdir()
    for name, options in (("reference.html", 450), ("medium.html", 100)):
        body = "\n".join(f"<p>Option opt_{i} sets how worker pool {i} retries a failed job: it waits {i} seconds "
                         f"and gives up after {i % 7 + 2} attempts.</p>" for i in range(options))
        (root / "pages" / name).write_text(f"<html><head><title>Options {name}</title></head><body>"
                                           f"<main><h1>Options</h1>{body}</main></body></html>")
    write_corpus(root, extra_links=["", "## Reference", "", "- [Options](pages/reference.html): every option",
                                    "- [Common options](pages/medium.html): the common ones"])
    with SiteServer(root, max_seconds=300) as server:
        server.pages_dir = root / "pages"  # type: ignore[attr-defined]  # for _notes_expected
        yield server


def _notes_expected(site, window: int, scale: float = START_SCALE) -> int:
    """The chunk notes a run at `window` tokens asks while the window counts `scale` tokens per estimated token:
    one per piece the window holds (pieces_for_window, not the parser's chunks), for each page too long for even
    one analysis alone to read it whole."""
    provider = ChatProvider(Settings(llm=LLMKind.OPENAI, llm_base_url="http://127.0.0.1:9/v1", context_tokens=window))
    provider.window.scale = scale
    room, notes = provider.material_room(Task.CHUNK_NOTES), 0
    for path in sorted(site.pages_dir.iterdir()):
        page = parse(fetch(DocRef(path.as_uri(), path.stem, "Guides")), chunk_tokens=Settings().chunk_tokens)
        if page_reading(PAGE_TASKS, lambda question: provider.fits_whole(question, page)) is None:
            notes += len(pieces_for_window(page.chunks, room))
    return notes


def _run(tmp_path, site, sim, **extra) -> dict:
    settings = Settings(**{"source": site.url("llms.txt"), "allow_private": True, "output_dir": tmp_path / "out",
                           "state_dir": tmp_path / "state", "quiet": True, "llm": LLMKind.OPENAI,
                           "llm_base_url": sim.base_url, "no_cache": True, "model_given": False, **extra})
    return run(settings)


def _results(tmp_path) -> dict[str, dict]:
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    return {row["url"].rsplit("/", 1)[-1]: row for row in map(json.loads, lines)}


@pytest.mark.parametrize("mode, batch_size", [(Mode.HYBRID, 0), (Mode.ASYNC, 1)])
def test_an_announced_small_window_is_never_exceeded_and_the_long_page_is_read_in_chunks(tmp_path, long_site, mode,
                                                                                         batch_size):
    with SimServer(latency_ms=2, ms_per_token=0, max_seconds=300, context_tokens=2048) as sim:
        summary = _run(tmp_path, long_site, sim, mode=mode, batch_size=batch_size)
        stats = sim.stats()
    assert summary["documents"]["completed"] == len(PAGES) + 2 and summary["documents"]["failed"] == 0
    assert stats["attempts"] == stats["ok"]  # not one request was larger than the window: no refusal at all
    assert summary["llm"]["context"]["tokens"] == 2048 and summary["llm"]["context"]["refusals"] == 0
    by_task, notes = summary["llm"]["by_task"], _notes_expected(long_site, 2048)
    fewest = _notes_expected(long_site, 2048, MIN_SCALE)  # were the pages cut after the first reply's usage
    assert notes > 17 + 1  # the long page alone is read in 17 pieces (map)
    # combined requests per page (a 2,048-token window holds the answers of a few analyses at a time), over its
    # notes when it is too long; notes merged ("text") only while they do not fit; every note asked (a prompt),
    # some of them batched into one request
    # three topic syntheses: a request each, or fewer when they wait together and are batched
    assert by_task["topic_synthesis"] == 3 if batch_size == 1 else 1 <= by_task["topic_synthesis"] <= 3
    if batch_size == 1:
        assert len(PAGES) + 2 <= by_task["page"] < len(PAGE_TASKS) * (len(PAGES) + 2)
    assert summary["llm"]["prompts"] >= fewest + by_task.get("text", 0) + len(PAGES) + 2 + 3
    if batch_size == 1:  # cut as the window counts then: before the first reply's usage, or after it
        assert fewest <= by_task["chunk_notes"] <= notes
    else:
        assert 0 < by_task["chunk_notes"] <= notes
    assert all(_results(tmp_path)[name]["analysis"]["summary"] for name in ("reference.html", "medium.html"))


def test_a_hidden_window_is_learned_from_refusals_and_no_page_fails(tmp_path, long_site):
    # like llama-cpp-python: nothing announced, a tokenizer that counts more than we estimate, one slot
    with SimServer(latency_ms=2, ms_per_token=0, max_seconds=300, context_tokens=2048, hidden_context=True,
                   token_ratio=1.35, serial=True) as sim:
        summary = _run(tmp_path, long_site, sim, mode=Mode.HYBRID)
        stats = sim.stats()
    assert summary["documents"]["completed"] == len(PAGES) + 2 and summary["documents"]["failed"] == 0
    context = summary["llm"]["context"]
    assert context["tokens"] == 2048 and context["learned"] >= 1
    refused = stats["attempts"] - stats["ok"]
    assert context["refusals"] == refused and refused <= len(PAGE_TASKS) * 4  # bounded: learned, then fitted
    # the long page is read in pieces (every part of it for the window learned: tests/test_agent.py)
    assert summary["llm"]["by_task"]["chunk_notes"] >= 3
    assert all(_results(tmp_path)[name]["analysis"]["summary"] for name in ("reference.html", "medium.html"))


def test_the_page_line_is_left_out_only_when_the_text_shown_opens_with_the_title():
    text = "Retries\nA request that fails is sent again after a pause."
    page = ParsedDoc(url="https://docs.example.test/retries", title="Retries", topic="Guides", text=text,
                     chunks=(Chunk(0, text, 14),))
    question = PageQuestion(PAGE_TASKS)
    assert "Page: Retries" not in render(question, page)[-1][1]  # the text says it first
    notes = ParsedDoc(url=page.url, title=page.title, topic=page.topic, text=text,  # read in pieces: notes shown
                      chunks=(Chunk(0, "[part 1 of 2] Failed requests are sent again.", 12),))
    assert "Page: Retries" in render(question, notes)[-1][1]
