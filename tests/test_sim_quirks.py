"""Tests for the simulator's self-hosted server modes (real loopback HTTP only)."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import openai
import pytest
import requests
from pydantic import BaseModel, Field

from document_it.testing._sim_quirks import FifoSlots, quirk_kwargs
from document_it.testing._sim_reply import prompt_text
from document_it.testing.llm_sim import SimServer, _parser
from document_it.tokens import estimate_tokens

FAST = {"latency_ms": 1, "ms_per_token": 0}
HI = [{"role": "user", "content": "Explain caching headers."}]


class Synthesis(BaseModel):
    """Two required fields, one of them a list (like TopicSynthesis)."""

    overview: str
    key_themes: list[str]


class Card(BaseModel):
    """An optional field beside required ones."""

    title: str
    note: str | None = None
    tags: list[str] = Field(default_factory=list)


def _schema_format(model: type[BaseModel]) -> dict[str, Any]:
    """Return an OpenAI json_schema response_format for `model`."""
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": model.model_json_schema()}}


def _post(sim: SimServer, body: dict[str, Any], **headers: str) -> requests.Response:
    """POST one chat completion."""
    return requests.post(f"{sim.base_url}/chat/completions", json={"model": "m", **body}, headers=headers, timeout=10)


def _client(sim: SimServer) -> openai.OpenAI:
    """An OpenAI SDK client that does not retry."""
    return openai.OpenAI(base_url=sim.base_url, api_key="sk-local", max_retries=0)


def _content(reply: requests.Response) -> str:
    """Return the message content of a 200 reply."""
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def _tolerant(text: str) -> Any:
    """Parse a reply as a tolerant client does: the ```json fence if any, keys' first letter lower-cased."""
    fence = re.search(r"```json\s*\n(.*?)\n```", text, re.DOTALL)
    value = json.loads(fence.group(1) if fence else text)

    def lower(node: Any) -> Any:
        if isinstance(node, dict):
            return {k[:1].lower() + k[1:]: lower(v) for k, v in node.items()}
        return [lower(v) for v in node] if isinstance(node, list) else node

    return lower(value)


# -- response_format support ---------------------------------------------------------------------------------------

def test_no_json_schema_answers_500_but_json_object_and_tools_work() -> None:
    with SimServer(no_json_schema=True, **FAST) as sim:
        with pytest.raises(openai.InternalServerError) as caught:
            _client(sim).chat.completions.create(model="m", messages=HI, response_format=_schema_format(Card))
        assert caught.value.status_code == 500
        assert caught.value.body == {
            "message": "response_format type json_schema is not supported; use text or json_object",
            "type": "server_error", "param": "response_format", "code": None}
        assert json.loads(_content(_post(sim, {"messages": HI, "response_format": {"type": "json_object"}})))
        tool = {"type": "function", "function": {"name": "card", "parameters": Card.model_json_schema()}}
        reply = _post(sim, {"messages": HI, "tools": [tool], "tool_choice": "required"})
        Card.model_validate_json(reply.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
        assert sim.stats()["errors"] == 1 and sim.stats()["ok"] == 2 and sim.stats()["faults"]["500"] == 0


@pytest.mark.parametrize("fmt", [{"type": "json_object"}, _schema_format(Card)])
def test_tools_only_rejects_response_format_with_400(fmt: dict[str, Any]) -> None:
    with SimServer(tools_only=True, **FAST) as sim:
        with pytest.raises(openai.BadRequestError) as caught:
            _client(sim).chat.completions.create(model="m", messages=HI, response_format=fmt)
        error = caught.value.body
        assert error["type"] == "invalid_request_error" and error["param"] == "response_format"
        assert error["message"].startswith("response_format is not supported by this server")
        assert fmt["type"] in error["message"]
        assert _content(_post(sim, {"messages": HI, "response_format": {"type": "text"}})).strip()
        assert _content(_post(sim, {"messages": HI})).strip()
        tool = {"type": "function", "function": {"name": "card", "parameters": Card.model_json_schema()}}
        call = _client(sim).chat.completions.create(model="m", messages=HI, tools=[tool], tool_choice="required")
        Card.model_validate_json(call.choices[0].message.tool_calls[0].function.arguments)


def test_response_format_modes_are_exclusive() -> None:
    with pytest.raises(ValueError):
        SimServer(no_json_schema=True, tools_only=True)


# -- sloppy JSON ---------------------------------------------------------------------------------------------------

def _clean_and_sloppy(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The same request answered by a default simulator and by a sloppy one."""
    with SimServer(**FAST) as clean, SimServer(sloppy_json=True, **FAST) as sloppy:
        return json.loads(_content(_post(clean, body))), _content(_post(sloppy, body))


def test_sloppy_json_schema_reply_is_fenced_capitalised_and_misses_one_list_field() -> None:
    clean, text = _clean_and_sloppy({"messages": HI, "response_format": _schema_format(Synthesis)})
    prose, _, rest = text.partition("\n")
    assert prose and "{" not in prose and rest.startswith("```json\n") and rest.endswith("\n```")
    fenced = json.loads(rest.removeprefix("```json\n").removesuffix("\n```"))
    assert list(fenced) == ["Overview"]  # capitalised, key_themes left out
    parsed = _tolerant(text)
    assert parsed == {k: v for k, v in clean.items() if k != "key_themes"}
    assert Synthesis.model_validate({"key_themes": [], **parsed}).overview == clean["overview"]


def test_sloppy_json_object_mode_leaves_out_an_optional_field_of_the_prompt_schema() -> None:
    schema = json.dumps(Card.model_json_schema())
    system = f"Reply with JSON matching:\n```json\n{schema}\n```"
    body = {"messages": [{"role": "system", "content": system}, *HI], "response_format": {"type": "json_object"}}
    clean, text = _clean_and_sloppy(body)
    assert text.startswith("Sure! Here is the JSON you asked for:\n```json\n")
    assert set(json.loads(text.split("```json\n", 1)[1].rsplit("\n```", 1)[0])) == {"Title", "Tags"}
    parsed = _tolerant(text)
    assert parsed == {k: v for k, v in clean.items() if k != "note"}
    assert Card.model_validate(parsed) == Card.model_validate(clean).model_copy(update={"note": None})


def test_sloppy_json_keeps_tool_arguments_and_text_clean() -> None:
    tool = {"type": "function", "function": {"name": "synth", "parameters": Synthesis.model_json_schema()}}
    body = {"messages": HI, "tools": [tool], "tool_choice": "required"}
    with SimServer(**FAST) as clean, SimServer(sloppy_json=True, **FAST) as sloppy:
        args = [_post(s, body).json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
                for s in (clean, sloppy)]
        assert args[0] == args[1] and set(json.loads(args[1])) == {"overview", "key_themes"}
        assert _content(_post(clean, {"messages": HI})) == _content(_post(sloppy, {"messages": HI}))
        reply = _post(sloppy, {"messages": HI, "response_format": {"type": "json_object"}}).json()
        assert reply["usage"]["completion_tokens"] == estimate_tokens(reply["choices"][0]["message"]["content"])


# -- context length ------------------------------------------------------------------------------------------------

def test_context_tokens_rejects_long_prompts_and_is_listed() -> None:
    with SimServer(context_tokens=100, **FAST) as sim:
        listing = requests.get(f"{sim.base_url}/models", timeout=5).json()
        assert listing["data"][0]["max_model_len"] == 100 and listing["data"][0]["id"] == "gpt-4o-mini"
        long = [{"role": "user", "content": "word " * 100}]
        tokens = estimate_tokens(prompt_text({"messages": long}))
        assert tokens > 100
        with pytest.raises(openai.BadRequestError) as caught:
            _client(sim).chat.completions.create(model="m", messages=long)
        assert caught.value.status_code == 400 and caught.value.code == "context_length_exceeded"
        assert caught.value.body == {
            "message": f"This model's maximum context length is 100 tokens. However, your messages resulted in "
                       f"{tokens} tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}
        short = estimate_tokens(prompt_text({"messages": HI}))
        assert _post(sim, {"messages": HI, "max_tokens": 100 - short}).status_code == 200
        over = _post(sim, {"messages": HI, "max_tokens": 101 - short})
        assert over.status_code == 400 and over.json()["error"]["message"] == (
            f"This model's maximum context length is 100 tokens. However, you requested 101 tokens ({short} in the "
            f"messages, {100 - short + 1} in the completion). Please reduce the length of the messages or completion.")
        assert sim.stats()["errors"] == 2 and sim.stats()["requests"] == 1


def test_a_hidden_context_is_not_listed_clamps_max_tokens_and_counts_with_its_own_tokenizer() -> None:
    with SimServer(context_tokens=100, hidden_context=True, token_ratio=2.0, **FAST) as sim:
        assert "max_model_len" not in requests.get(f"{sim.base_url}/models", timeout=5).json()["data"][0]
        short = estimate_tokens(prompt_text({"messages": HI}))
        ok = _post(sim, {"messages": HI, "max_tokens": 5000})  # clamped to what is left, as llama-cpp does
        assert ok.status_code == 200 and ok.json()["usage"]["prompt_tokens"] == 2 * short
        long = [{"role": "user", "content": "word " * 30}]  # 38 estimated tokens, 76 to this tokenizer
        assert _post(sim, {"messages": long}).status_code == 200
        longer = [{"role": "user", "content": "word " * 45}]
        refused = _post(sim, {"messages": longer})
        counted = 2 * estimate_tokens(prompt_text({"messages": longer}))
        assert refused.status_code == 400 and refused.json()["error"]["message"] == (
            f"Requested tokens ({counted}) exceed context window of 100")


def test_models_listing_has_no_max_model_len_by_default() -> None:
    with SimServer(**FAST) as sim:
        assert "max_model_len" not in requests.get(f"{sim.base_url}/models", timeout=5).json()["data"][0]
        assert _post(sim, {"messages": [{"role": "user", "content": "word " * 10_000}]}).status_code == 200


# -- one slot --------------------------------------------------------------------------------------------------------

def test_serial_serves_one_request_at_a_time_and_queues_the_rest() -> None:
    with SimServer(serial=True, latency_ms=300, ms_per_token=0) as sim:  # the others arrive while the first is served
        assert sim.capacity == 1
        barrier = threading.Barrier(3)
        codes: list[int] = []

        def one(i: int) -> None:
            barrier.wait()
            codes.append(_post(sim, {"messages": [{"role": "user", "content": f"request {i}"}]}).status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        stats = requests.get(f"http://127.0.0.1:{sim.port}/stats", timeout=5).json()
        assert codes == [200] * 3 and stats["requests"] == 3
        assert stats["max_serving"] == 1 and stats["queued_seconds"] > 0
        assert stats["busy_seconds"] == pytest.approx(3 * 0.3)


def test_serial_contradicts_a_larger_capacity() -> None:
    with pytest.raises(ValueError):
        SimServer(serial=True, capacity=2)


def test_fifo_slots_serve_waiters_in_arrival_order() -> None:
    slots, stopped, order = FifoSlots(1), threading.Event(), []
    assert slots.acquire(stopped)

    def waiter(i: int) -> None:
        if slots.acquire(stopped, poll=0.01):
            order.append(i)
            slots.release()

    threads = []
    for i in range(4):
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        while slots.waiting < i + 1:  # each waiter is queued before the next arrives
            time.sleep(0.001)
    slots.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3]
    late = threading.Thread(target=lambda: order.append(slots.acquire(stopped, poll=0.01)))
    assert slots.acquire(stopped)
    late.start()
    while slots.waiting < 1:
        time.sleep(0.001)
    stopped.set()
    late.join(5)
    assert order[-1] is False and slots.waiting == 0


# -- keys ------------------------------------------------------------------------------------------------------------

def test_require_key_accepts_any_bearer_token_and_rejects_none() -> None:
    with SimServer(require_key=True, **FAST) as sim:
        missing = _post(sim, {"messages": HI})
        assert missing.status_code == 401 and missing.json()["error"]["message"].startswith(
            "You didn't provide an API key.")
        assert missing.json()["error"]["type"] == "invalid_request_error"
        assert _post(sim, {"messages": HI}, Authorization="Bearer ").status_code == 401
        assert _post(sim, {"messages": HI}, Authorization="Basic abc").status_code == 401
        assert requests.get(f"{sim.base_url}/models", timeout=5).status_code == 401
        assert _post(sim, {"messages": HI}, Authorization="Bearer anything-at-all").status_code == 200
        assert _client(sim).models.list().data[0].id == "gpt-4o-mini"


def test_no_key_and_the_default_accept_any_or_no_authorization() -> None:
    for options in ({"no_key": True}, {}):
        with SimServer(**options, **FAST) as sim:
            for headers in ({}, {"Authorization": "Bearer whatever"}, {"Authorization": "Basic Zm9v"}):
                assert _post(sim, {"messages": HI}, **headers).status_code == 200
    with pytest.raises(ValueError):
        SimServer(no_key=True, api_key="sk-x")
    with pytest.raises(ValueError):
        SimServer(no_key=True, require_key=True)


# -- model id --------------------------------------------------------------------------------------------------------

GGUF = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"


def test_model_id_is_listed_and_other_models_get_404() -> None:
    with SimServer(model_id=GGUF, context_tokens=4096, **FAST) as sim:
        listing = _client(sim).models.list()
        assert [m.id for m in listing.data] == [GGUF] and listing.data[0].max_model_len == 4096
        with pytest.raises(openai.NotFoundError) as caught:
            _client(sim).chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert caught.value.body == {
            "message": "The model `gpt-4o-mini` does not exist or you do not have access to it.",
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
        assert _client(sim).chat.completions.create(model=GGUF, messages=HI).model == GGUF
        assert sim.stats()["errors"] == 1 and sim.stats()["ok"] == 1


def test_without_model_id_any_model_name_is_accepted() -> None:
    with SimServer(**FAST) as sim:
        assert _client(sim).chat.completions.create(model=GGUF, messages=HI).model == GGUF


# -- CLI -------------------------------------------------------------------------------------------------------------

def test_cli_flags_reach_the_server() -> None:
    args = _parser().parse_args(["--no-json-schema", "--sloppy-json", "--context-tokens", "2048", "--serial",
                                 "--require-key", "--model-id", GGUF])
    assert quirk_kwargs(args) == {"no_json_schema": True, "tools_only": False, "sloppy_json": True,
                                  "context_tokens": 2048, "serial": True, "require_key": True, "no_key": False,
                                  "model_id": GGUF, "hidden_context": False, "token_ratio": 1.0}
    assert quirk_kwargs(_parser().parse_args(["--hidden-context", "--token-ratio", "1.3"]))["token_ratio"] == 1.3
    assert quirk_kwargs(_parser().parse_args([])) == {
        "no_json_schema": False, "tools_only": False, "sloppy_json": False, "context_tokens": 0, "serial": False,
        "require_key": False, "no_key": False, "model_id": None, "hidden_context": False, "token_ratio": 1.0}
    help_text = _parser().format_help()
    for flag in ("--no-json-schema", "--tools-only", "--sloppy-json", "--context-tokens", "--serial",
                 "--require-key", "--no-key", "--model-id", "--hidden-context", "--token-ratio"):
        assert flag in help_text
