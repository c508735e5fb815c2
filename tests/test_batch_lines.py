"""Prompts left for the Batch API (analysis/batch_lines.py): which are deferred, the lines they are written as
(the live request's body, grouped per question), and each line's output read back into the memo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _answers import FULL
from document_it.analysis.attempts import message_tokens
from document_it.analysis.batch_lines import BatchLane, Deferred
from document_it.analysis.prompts import batch_schema
from document_it.analysis.providers import ChatProvider
from document_it.analysis.schemas import PageQuestion, schema_for
from document_it.config import LLMKind, Settings, StructuredMethod
from document_it.core.batch_ledger import PromptState
from document_it.core.cache import Memo
from document_it.errors import LLMError
from document_it.models import Chunk, ParsedDoc, Task
from document_it.tokens import estimate_tokens

QUESTION = PageQuestion()
ANSWER = schema_for(QUESTION).model_validate(FULL).model_dump()  # one valid page answer, as the memo keeps it


def _settings(tmp_path: Path, **extra) -> Settings:
    return Settings(llm=LLMKind.OPENAI, llm_base_url="http://127.0.0.1:9/v1", state_dir=tmp_path / "state",
                    context_tokens=8192, **extra)


@pytest.fixture
def provider(tmp_path: Path) -> ChatProvider:
    return ChatProvider(_settings(tmp_path))


@pytest.fixture
def memo(tmp_path: Path):
    memo = Memo(tmp_path / "memo")
    yield memo
    memo.close()


def _lane(provider: ChatProvider, memo: Memo, *, max_items: int = 5, strict: bool = False, retries: int = 2,
          max_tokens: int = 1 << 30) -> BatchLane:
    return BatchLane(provider, memo, strict, retries, max_items, max_tokens)


def _page(n: int) -> ParsedDoc:
    text = f"Page {n} explains how Ferry retries failed job number {n} with exponential backoff."
    return ParsedDoc(url=f"https://docs.example.test/p{n}", title=f"Page {n}", topic="Guides", text=text,
                     chunks=(Chunk(0, text, estimate_tokens(text)),), tokens=estimate_tokens(text))


def _deferred(provider: ChatProvider, n: int, question=QUESTION) -> Deferred:
    page = _page(n)
    messages = provider.messages(question, page)
    return Deferred(f"key{n}", question, page, messages, message_tokens(messages), page.url, provider)


def _text_prompt(provider: ChatProvider, key: str = "note") -> Deferred:
    messages = [("system", "Be brief."), ("user", "Write one sentence about retries.")]
    return Deferred(key, Task.TEXT, None, messages, message_tokens(messages), "", provider)


def _completion(answer) -> dict:
    content = answer if isinstance(answer, str) else json.dumps(answer)
    return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


def _ok(line, answer) -> dict:
    return {"id": "batch_req_1", "custom_id": line.custom_id,
            "response": {"status_code": 200, "request_id": "r1", "body": _completion(answer)}, "error": None}


def _grouped_answer(*ids: str) -> dict:
    return {"results": [{"id": item, "result": FULL} for item in ids]}


# -- deferring ----------------------------------------------------------------------------------------------

def test_a_new_prompt_is_left_for_a_batch_and_a_failed_one_goes_live(provider, memo):
    lane = _lane(provider, memo)
    lane.states = {"waiting": PromptState("waiting", 0, ""), "submitted": PromptState("submitted", 0, ""),
                   "failed": PromptState("failed", 1, "HTTP 500: boom")}
    assert lane.route("new") and lane.route("waiting") and lane.route("submitted")
    assert lane.route("failed") is False  # a batch failed it: asked live, without strict


def test_strict_keeps_a_failed_prompt_in_batches_until_it_has_failed_past_retries(provider, memo):
    lane = _lane(provider, memo, strict=True, retries=2)
    lane.states = {"twice": PromptState("failed", 2, "expired"), "thrice": PromptState("failed", 3, "expired")}
    assert lane.route("twice")
    with pytest.raises(LLMError, match=r"no answer in 3 batches \(expired\)"):
        lane.route("thrice")


def test_a_prompt_already_in_a_batch_or_deferred_is_not_deferred_again(provider, memo):
    lane = _lane(provider, memo)
    lane.states = {"key1": PromptState("waiting", 0, ""), "key2": PromptState("submitted", 0, ""),
                   "key3": PromptState("failed", 1, "expired")}
    for n in (1, 2, 3, 4, 4):
        lane.defer(_deferred(provider, n))
    assert lane.pending == 2  # key3 (asked again) and key4 (once)
    assert sorted(item[1] for line in lane.lines() for item in line.items) == ["key3", "key4"]
    assert lane.pending == 0 and lane.lines() == []  # taken once


# -- writing lines ------------------------------------------------------------------------------------------

def test_prompts_of_one_question_are_grouped_up_to_the_batch_size(provider, memo):
    lane = _lane(provider, memo, max_items=2)
    for n in range(1, 6):
        lane.defer(_deferred(provider, n))
    lines = lane.lines()
    assert [[key for _, key, _ in line.items] for line in lines] == [["key1", "key2"], ["key3", "key4"], ["key5"]]
    assert [[item for item, _, _ in line.items] for line in lines] == [["1", "2"], ["1", "2"], [""]]
    assert [page for _, _, page in lines[0].items] == ["https://docs.example.test/p1", "https://docs.example.test/p2"]
    assert len({line.custom_id for line in lines}) == 3
    assert lane.items_grouped == 4
    assert all(line.question == {"tasks": [task.value for task in QUESTION.tasks], "brief": False} for line in lines)

    # a grouped line's body is the live batched request for those pages; a lone one the live request for it
    messages = provider.batch_messages(QUESTION, [("1", _page(1)), ("2", _page(2))])
    assert lines[0].body == provider.request(QUESTION, messages, batch_schema(QUESTION))[0]
    assert lines[2].body == provider.request(QUESTION, provider.messages(QUESTION, _page(5)))[0]
    body = lines[0].body
    assert body["model"] == "gpt-4o-mini" and body["messages"][0]["role"] == "system"
    assert "p1" in body["messages"][-1]["content"] and "p2" in body["messages"][-1]["content"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == batch_schema(QUESTION).__name__
    assert lines[2].body["response_format"]["json_schema"]["name"] == schema_for(QUESTION).__name__


def test_prompts_are_grouped_only_up_to_the_token_limit(provider, memo):
    items = [_deferred(provider, n) for n in range(1, 4)]
    lane = _lane(provider, memo, max_items=5, max_tokens=items[0].tokens + items[1].tokens)
    for item in items:
        lane.defer(item)
    assert [[key for _, key, _ in line.items] for line in lane.lines()] == [["key1", "key2"], ["key3"]]


def test_a_batch_size_of_one_writes_a_line_per_prompt(provider, memo):
    lane = _lane(provider, memo, max_items=1)
    for n in range(1, 4):
        lane.defer(_deferred(provider, n))
    lines = lane.lines()
    assert [line.items for line in lines] == [(("", f"key{n}", f"https://docs.example.test/p{n}"),)
                                             for n in range(1, 4)]
    assert lane.items_grouped == 0


def test_different_questions_and_free_form_prompts_are_not_grouped_together(provider, memo):
    lane = _lane(provider, memo, max_items=5)
    lane.defer(_deferred(provider, 1))
    lane.defer(_text_prompt(provider, "note1"))
    lane.defer(_deferred(provider, 2, Task.SUMMARY))
    lane.defer(_deferred(provider, 3))
    lane.defer(_text_prompt(provider, "note2"))
    lane.defer(_deferred(provider, 4, Task.SUMMARY))
    lines = {tuple(key for _, key, _ in line.items): line for line in lane.lines()}
    assert set(lines) == {("note1",), ("note2",), ("key1", "key3"), ("key2", "key4")}
    note = lines[("note1",)]
    assert note.question == {"task": "text"} and note.items[0][0] == ""
    assert "response_format" not in note.body and "tools" not in note.body  # plain text asked
    assert note.body["messages"][-1] == {"role": "user", "content": "Write one sentence about retries."}
    assert lines[("key2", "key4")].question == {"task": "summary"}


def test_a_line_is_one_json_line_as_the_batch_api_reads_it(provider, memo):
    lane = _lane(provider, memo)
    lane.defer(_deferred(provider, 1))
    lane.defer(_deferred(provider, 2))
    [line] = lane.lines()
    text = line.jsonl("/v1/chat/completions")
    assert "\n" not in text
    assert json.loads(text) == {"custom_id": line.custom_id, "method": "POST", "url": "/v1/chat/completions",
                                "body": line.body}


# -- reading answers ----------------------------------------------------------------------------------------

def test_a_grouped_reply_answers_each_page_into_the_memo(provider, memo):
    lane = _lane(provider, memo, max_items=3)
    for n in range(1, 4):
        lane.defer(_deferred(provider, n))
    [line] = lane.lines()
    outcome = lane.read(line, _ok(line, _grouped_answer("2", "1", "3")))
    assert outcome.ok and outcome.failed == {}
    assert outcome.answered == {"key1": ANSWER, "key2": ANSWER, "key3": ANSWER}
    assert (outcome.tokens_in, outcome.tokens_out) == (10, 5)
    for key in ("key1", "key2", "key3"):
        assert memo.get("llm", key) == ANSWER
        assert lane.stored(key) == ANSWER == lane.answers[key]


def test_a_page_left_out_of_a_grouped_reply_fails_alone(provider, memo):
    lane = _lane(provider, memo, max_items=3)
    for n in range(1, 4):
        lane.defer(_deferred(provider, n))
    [line] = lane.lines()
    outcome = lane.read(line, _ok(line, _grouped_answer("1", "3", "9")))  # "9" is no item of the line
    assert set(outcome.answered) == {"key1", "key3"}
    assert outcome.failed == {"key2": "left out of the batched reply"}
    assert memo.get("llm", "key2") is None and lane.stored("key2") is None


def test_an_invalid_answer_in_a_grouped_reply_fails_only_its_page(provider, memo):
    lane = _lane(provider, memo, max_items=2)
    lane.defer(_deferred(provider, 1))
    lane.defer(_deferred(provider, 2))
    [line] = lane.lines()
    reply = {"results": [{"id": "1", "result": FULL}, {"id": "2", "result": {"nonsense": True}}]}
    outcome = lane.read(line, _ok(line, reply))
    assert outcome.answered == {"key1": ANSWER}
    assert outcome.failed == {"key2": "left out of the batched reply"}


def test_a_lone_prompt_and_a_free_form_one_are_answered(provider, memo):
    lane = _lane(provider, memo, max_items=1)
    lane.defer(_deferred(provider, 1))
    lane.defer(_text_prompt(provider))
    page, note = sorted(lane.lines(), key=lambda line: line.items[0][1])
    assert lane.read(page, _ok(page, FULL)).answered == {"key1": ANSWER}
    assert lane.read(note, _ok(note, "Retries wait longer each time.")).answered == \
        {"note": "Retries wait longer each time."}
    assert memo.get("llm", "key1") == ANSWER and memo.get("llm", "note") == "Retries wait longer each time."


@pytest.mark.parametrize("record, reason", [
    ({"response": {"status_code": 500, "body": {"error": {"message": "internal failure"}}}, "error": None},
     "HTTP 500: internal failure"),
    ({"response": None, "error": {"code": "batch_expired",
                                  "message": "This request could not be executed before the window expired."}},
     "batch_expired: This request could not be executed before the window expired."),
    (None, "the batch returned no line for it"),
])
def test_a_line_without_a_reply_fails_every_prompt_it_carries(provider, memo, record, reason):
    lane = _lane(provider, memo, max_items=2)
    lane.defer(_deferred(provider, 1))
    lane.defer(_deferred(provider, 2))
    [line] = lane.lines()
    if record is not None:
        record = {"custom_id": line.custom_id, **record}
    outcome = lane.read(line, record)
    assert outcome.failed == {"key1": reason, "key2": reason}
    assert not outcome.ok and outcome.answered == {} and lane.answers == {}
    assert provider.choice.current is StructuredMethod.JSON_SCHEMA  # no method was refused


def test_a_reply_that_is_not_json_fails_and_stores_nothing(provider, memo):
    lane = _lane(provider, memo, max_items=1)
    lane.defer(_deferred(provider, 1))
    [line] = lane.lines()
    outcome = lane.read(line, _ok(line, "Sorry, I cannot analyse this page."))
    assert outcome.answered == {} and set(outcome.failed) == {"key1"} and outcome.failed["key1"]
    assert memo.get("llm", "key1") is None and lane.answers == {}


def test_a_refused_structured_output_method_moves_the_next_lines_to_another(provider, memo):
    lane = _lane(provider, memo, max_items=1)
    lane.defer(_deferred(provider, 1))
    [line] = lane.lines()
    record = {"custom_id": line.custom_id, "error": None, "response": {"status_code": 400, "body": {"error": {
        "message": "response_format of type json_schema is not supported by this model"}}}}
    outcome = lane.read(line, record)
    assert outcome.failed["key1"].startswith("HTTP 400: response_format")
    assert provider.choice.current is StructuredMethod.FUNCTION_CALLING
    lane.defer(_deferred(provider, 1))  # asked again (the ledger says failed)
    [again] = lane.lines()
    assert again.body.get("tools") and "response_format" not in again.body


def test_a_forced_structured_output_method_is_kept_when_refused(tmp_path, memo):
    provider = ChatProvider(_settings(tmp_path, structured_output=StructuredMethod.JSON_SCHEMA))
    lane = _lane(provider, memo, max_items=1)
    lane.defer(_deferred(provider, 1))
    [line] = lane.lines()
    lane.read(line, {"custom_id": line.custom_id, "error": None, "response": {"status_code": 400, "body": {
        "error": {"message": "json_schema is not supported"}}}})
    assert provider.choice.current is StructuredMethod.JSON_SCHEMA
