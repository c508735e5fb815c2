"""--structured-output auto: the first method a server takes, remembered per server and model; loose JSON read
tolerantly; a forced method the server refuses is one clear error."""

from __future__ import annotations

import json

import pytest

from document_it.analysis.gateway import Gateway
from document_it.analysis.negotiate import STORE_NAME, refuses_method
from document_it.analysis.prompts import KeyConcepts, Task, TopicInput, TopicSynthesis
from document_it.analysis.providers import ChatProvider
from document_it.analysis.tolerant import extract_json, tolerant_parse
from document_it.config import LLMKind, Settings, StructuredMethod
from document_it.models import Chunk, ParsedDoc
from document_it.errors import LLMError

from _fake_llm import ScriptedLLM, completion

TOPIC = TopicInput("Guides", (("Retries", "How retries work.", ("backoff",)),))
PAGE = ParsedDoc(url="https://docs.test/retries", title="Retries", topic="Guides", text="Retries back off.",
                 chunks=(Chunk(0, "Retries back off.", 5),), tokens=5)
NO_SCHEMA = (500, {"error": {"message": "response_format type json_schema is not supported; use text or json_object",
                             "type": "server_error"}})
NO_TOOLS = (400, {"error": {"message": "Unsupported parameter: 'tools' is not supported with this model.",
                            "type": "invalid_request_error"}})


def tool_call(name: str, arguments: dict) -> tuple[int, dict]:
    """A 200 completion that answers with one tool call."""
    status, body = completion("")
    body["choices"][0]["finish_reason"] = "tool_calls"
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}
    return status, body


def _settings(base_url: str, state_dir, **extra) -> Settings:
    return Settings(**{"llm": LLMKind.OPENAI, "llm_base_url": base_url, "api_key": "sk-test-0123456789",
                       "model": "small-model", "retries": 0, "state_dir": state_dir, **extra})


async def _ask(settings: Settings):
    async with Gateway(ChatProvider(settings), settings) as gateway:
        value = await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC)
    return value, gateway.summary()["structured_output"]


async def test_a_server_without_json_schema_gets_function_calling_and_the_next_run_starts_there(tmp_path):
    answer = {"overview": "Retries back off.", "key_themes": ["backoff"]}
    with ScriptedLLM([NO_SCHEMA, tool_call("TopicSynthesis", answer), tool_call("TopicSynthesis", answer)]) as llm:
        value, used = await _ask(_settings(llm.base_url, tmp_path))
        again, used_again = await _ask(_settings(llm.base_url, tmp_path))  # a later run, same state dir
        sent = llm.requests
    assert value.overview == again.overview == "Retries back off."
    assert used == {"method": "function_calling", "negotiated": True, "settled": True,
                    "refused": [used["refused"][0]]} and "json_schema: HTTP 500" in used["refused"][0]
    assert sent[0]["response_format"]["type"] == "json_schema" and "tools" in sent[1] and "tools" in sent[2]
    assert used_again["refused"] == []  # remembered: no json_schema attempt the second time
    remembered = json.loads((tmp_path / STORE_NAME).read_text())
    assert remembered == {f"{llm.base_url} small-model": "function_calling"}


async def test_json_mode_is_the_last_resort_and_its_loose_json_is_read_tolerantly(tmp_path):
    sloppy = 'Sure! Here is the JSON:\n```json\n{"Overview": "Retries back off.", "Key Themes": ["backoff"]}\n```'
    with ScriptedLLM([NO_SCHEMA, NO_TOOLS, completion(sloppy)]) as llm:
        value, used = await _ask(_settings(llm.base_url, tmp_path))
        last = llm.requests[-1]
    assert value == TopicSynthesis(overview="Retries back off.", key_themes=["backoff"])
    assert used["method"] == "json_mode" and len(used["refused"]) == 2
    assert last["response_format"] == {"type": "json_object"}
    assert '"key_themes"' in last["messages"][0]["content"]  # the schema is spelled out in the system prompt


async def test_a_reply_that_ignores_response_format_moves_on_too(tmp_path):
    answer = {"overview": "o", "key_themes": []}
    script = [completion("I cannot do JSON, but retries back off."), tool_call("TopicSynthesis", answer)]
    with ScriptedLLM(script) as llm:
        value, used = await _ask(_settings(llm.base_url, tmp_path))
    assert value.overview == "o" and used["method"] == "function_calling"


async def test_a_tool_call_cut_short_by_a_rambling_model_does_not_move_the_method_on(tmp_path):
    # llama-cpp-python's way: the grammar keeps a tool call's shape, the answer limit cuts it mid-string, and
    # the finish reason still says "tool_calls": the server took the method; the model ran out of room
    answer = {"overview": "Retries back off.", "key_themes": ["backoff"]}
    cut = tool_call("TopicSynthesis", answer)
    cut[1]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"overview": "Retries ba'
    script = [NO_SCHEMA, cut, tool_call("TopicSynthesis", answer)]
    with ScriptedLLM(script) as llm:
        value, used = await _ask(_settings(llm.base_url, tmp_path, retries=1))
        sent = llm.requests
    assert value.overview == "Retries back off." and used["method"] == "function_calling"
    assert len(used["refused"]) == 1 and "tools" in sent[1] and "tools" in sent[2]


async def test_a_forced_method_the_server_refuses_is_one_clear_error_without_retries(tmp_path):
    with ScriptedLLM([NO_SCHEMA, NO_SCHEMA, NO_SCHEMA]) as llm:
        settings = _settings(llm.base_url, tmp_path, structured_output=StructuredMethod.JSON_SCHEMA, retries=2)
        with pytest.raises(LLMError) as caught:
            await _ask(settings)
        assert len(llm.requests) == 1
    message = str(caught.value)
    assert "--structured-output json_schema" in message and "--structured-output auto" in message
    assert "\n" not in message and not (tmp_path / STORE_NAME).exists()


async def test_a_server_that_refuses_every_method_says_what_each_got(tmp_path):
    no_json = (400, {"error": {"message": "response_format json_object is not supported"}})
    with ScriptedLLM([NO_SCHEMA, NO_TOOLS, no_json]) as llm:
        with pytest.raises(LLMError, match="refused every structured-output method .*json_schema.*"
                                           "function_calling.*json_mode"):
            await _ask(_settings(llm.base_url, tmp_path))


@pytest.mark.parametrize("status, message, refused", [
    (500, "response_format type json_schema is not supported", True),
    (400, "Unsupported parameter: 'tools'", True),
    (422, "unknown field `response_format`", True),
    (500, "internal server error", False),
    (429, "response_format rate limit", False),
    (401, "tools need a key", False),
])
def test_what_counts_as_refusing_a_method(status, message, refused):
    assert refuses_method(status, message) is refused


async def test_a_tool_call_a_grammar_kept_in_shape_but_not_in_range_is_read_tolerantly(tmp_path):
    # llama.cpp's grammar keeps a tool call's shape, not its bounds or every required field
    arguments = {"items": [{"name": "Backoff", "description": "waits longer each time", "importance": 0},
                           {"name": "Jitter"}]}
    with ScriptedLLM([tool_call("KeyConcepts", arguments)]) as llm:
        settings = _settings(llm.base_url, tmp_path, structured_output=StructuredMethod.FUNCTION_CALLING)
        async with Gateway(ChatProvider(settings), settings) as gateway:
            value = await gateway.ask(Task.KEY_CONCEPTS, PAGE)
        assert len(llm.requests) == 1  # no repair prompt was needed
    assert [c.model_dump() for c in value.items] == [
        {"name": "Backoff", "description": "waits longer each time", "importance": 1}]


def test_tolerant_parse_matches_keys_fills_missing_lists_and_clamps_numbers():
    text = 'prose {"ITEMS": [{"Name": "Backoff", "description": "waits", "Importance": 14}]} more prose'
    assert tolerant_parse(KeyConcepts, text).items[0].model_dump() == {
        "name": "Backoff", "description": "waits", "importance": 10}
    assert tolerant_parse(KeyConcepts, "{}").items == []  # a list left out is empty, not an error
    assert tolerant_parse(TopicSynthesis, '{"overview": "o"}').key_themes == []
    assert tolerant_parse(TopicSynthesis, "no json here") is None
    assert tolerant_parse(TopicSynthesis, '{"key_themes": []}') is None  # a missing text field is not invented
    half = '{"items": [{"name": "A", "description": "d", "importance": 3}, {"name": "B"}]}'
    assert [c.name for c in tolerant_parse(KeyConcepts, half).items] == ["A"]  # the incomplete item is left out
    assert extract_json('```\n{"a": 1}\n```') == {"a": 1}


def test_a_refusal_of_a_method_left_behind_asks_again_even_once_the_next_one_worked(tmp_path):
    """Requests in flight together: one is refused json_schema and moves the run on, another gets an answer
    by function calling (the method settles), then a third, sent with json_schema before the move, is
    refused too. That late refusal is old news: it is asked again, it does not end the run."""
    from document_it.analysis.negotiate import MethodChoice

    choice = MethodChoice(StructuredMethod.AUTO, tmp_path / STORE_NAME, "127.0.0.1:1")
    first = choice.current
    assert first is StructuredMethod.JSON_SCHEMA
    assert choice.refused(first, "HTTP 400: response_format is not supported")
    choice.worked(choice.current)
    assert choice.settled and choice.current is StructuredMethod.FUNCTION_CALLING
    assert choice.refused(first, "HTTP 400: response_format is not supported")  # ask again, now by tools
    assert choice.refusals == ["json_schema: HTTP 400: response_format is not supported"]
    assert not choice.refused(StructuredMethod.FUNCTION_CALLING, "HTTP 400: tools are not supported")
