"""The request bodies the provider builds itself are the ones LangChain's ChatOpenAI sent, and replies read back
as the SDK would have read them (tool calls, parts, usage, refusals, a cut-short answer)."""

from __future__ import annotations

import json

import pytest
from langchain_openai import ChatOpenAI

from document_it.analysis.gateway import build_gateway
from document_it.analysis.prompts import Task, TopicInput, batch_schema, schema_for
from document_it.analysis.wire import read_reply, request_body
from document_it.config import LLMKind, Settings, StructuredMethod
from document_it.errors import LLMError

from _fake_llm import ScriptedLLM, completion

MESSAGES = [("system", "You analyse documentation."), ("user", "Summarise: retries back off.")]


@pytest.mark.parametrize("method", [StructuredMethod.JSON_SCHEMA, StructuredMethod.FUNCTION_CALLING,
                                    StructuredMethod.JSON_MODE])
@pytest.mark.parametrize("schema", [schema_for(Task.SUMMARY), batch_schema(Task.KEY_CONCEPTS)])
async def test_each_method_sends_the_body_chatopenai_sent(method, schema):
    with ScriptedLLM([completion("{}")]) as llm:
        chat = ChatOpenAI(model="m", base_url=llm.base_url, api_key="sk-test", max_retries=0, use_responses_api=False)
        try:
            await chat.with_structured_output(schema, method=method.value, include_raw=True).ainvoke(MESSAGES)
        except Exception:  # noqa: BLE001 - "{}" need not validate: only the request is compared
            pass
        theirs = llm.requests[0]
    mine = request_body("m", MESSAGES, schema, method)
    assert json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def test_the_answer_limit_goes_in_the_field_asked_and_plain_text_asks_for_no_structure():
    body = request_body("m", [("human", "hi"), ("ai", "hello")], None, StructuredMethod.JSON_SCHEMA,
                        "max_tokens", 256)
    assert body["max_tokens"] == 256 and "response_format" not in body and "tools" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert "max_tokens" not in request_body("m", MESSAGES, None, StructuredMethod.JSON_SCHEMA, "max_tokens", 0)


def _data(message: dict, finish: str = "stop", usage: dict | None = None) -> dict:
    data = {"choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", **message}}]}
    if usage is not None:
        data["usage"] = usage
    return data


def test_a_reply_is_read_from_its_tool_call_its_parts_or_its_text():
    call = {"type": "function", "function": {"name": "Summary", "arguments": '{"summary": "x"}'}}
    reply = read_reply(_data({"content": None, "tool_calls": [call]}, usage={"prompt_tokens": 9,
                                                                              "completion_tokens": 4}), {})
    assert reply.json_text == '{"summary": "x"}' and (reply.tokens_in, reply.tokens_out) == (9, 4)
    as_object = {"type": "function", "function": {"name": "Summary", "arguments": {"summary": "y"}}}
    assert json.loads(read_reply(_data({"tool_calls": [as_object]}), {}).json_text) == {"summary": "y"}
    parts = read_reply(_data({"content": [{"type": "text", "text": '{"summary": '}, {"text": '"z"}'}]}), {})
    assert parts.json_text == '{"summary": "z"}' and parts.tokens_in == 0 and parts.tokens_out > 0  # estimated
    with pytest.raises(ValueError):
        read_reply(["not", "a", "completion"], {})
    with pytest.raises((KeyError, IndexError)):
        read_reply({"choices": []}, {})


def test_a_refusal_a_filter_and_a_cut_short_reply_each_say_why():
    assert "refused: not this" in read_reply(_data({"content": None, "refusal": "not this"}), {}).problem
    assert "content filter" in read_reply(_data({"content": ""}, "content_filter"), {}).problem
    assert "cut short" in read_reply(_data({"content": '{"summ'}, "length"), {}).problem
    assert read_reply(_data({"content": "{}"}), {}).problem == ""


def _settings(base_url: str) -> Settings:
    return Settings(llm=LLMKind.OPENAI, llm_base_url=base_url, api_key="sk-test-0123456789", retries=1,
                    structured_output=StructuredMethod.JSON_SCHEMA, model="gpt-4o-mini", request_timeout=5.0)


TOPIC = TopicInput("Guides", (("Retries", "How retries work.", ("backoff",)),))
GOOD = json.dumps({"overview": "Fine.", "key_themes": ["a"]})


async def test_a_reply_cut_at_the_answer_limit_is_asked_again_and_a_refusal_is_not_read_as_an_answer():
    cut = completion(GOOD[:12])
    cut[1]["choices"][0]["finish_reason"] = "length"
    refused = completion("")
    refused[1]["choices"][0]["message"]["refusal"] = "I cannot help with that"
    with ScriptedLLM([cut, completion(GOOD)]) as llm:
        async with build_gateway(_settings(llm.base_url)) as gateway:
            value = await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC)
    assert value.overview == "Fine." and len(llm.requests) == 2
    with ScriptedLLM([refused, refused]) as llm:
        async with build_gateway(_settings(llm.base_url)) as gateway:
            with pytest.raises(LLMError, match="refused: I cannot help with that"):
                await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC)
