"""Tests for the OpenAI-compatible LLM simulator (real loopback HTTP only)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from langchain_openai import ChatOpenAI

from document_it.testing.llm_sim import SimServer
from document_it.tokens import estimate_tokens

from _sim_client import KeyConcept, KeyConcepts, Long, Short, chat, fire, json_schema_format

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def sim() -> SimServer:
    """A fast simulator."""
    with SimServer(latency_ms=5, ms_per_token=0.0) as server:
        yield server


def _assert_concepts(parsed: KeyConcepts) -> None:
    """Check the parsed object is populated and within bounds."""
    assert isinstance(parsed, KeyConcepts)
    assert len(parsed.items) == 3
    for item in parsed.items:
        assert isinstance(item, KeyConcept)
        assert item.name.strip() and item.description.strip()
        assert 1 <= item.importance <= 10


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_chatopenai_structured_output(sim: SimServer, method: str) -> None:
    llm = ChatOpenAI(
        model="gpt-4o-mini", base_url=sim.base_url, api_key="sk-test", max_retries=0, use_responses_api=False
    )
    system = "Extract the key concepts of the page."
    if method == "json_mode":
        schema = json.dumps(KeyConcepts.model_json_schema(), indent=2)
        system += f"\nReply with JSON matching:\n```json\n{schema}\n```"
    user = "FastAPI routing uses path operation decorators, dependency injection and pydantic validation."
    result = llm.with_structured_output(KeyConcepts, method=method, include_raw=True).invoke(
        [("system", system), ("user", user)]
    )
    assert result["parsing_error"] is None
    _assert_concepts(result["parsed"])
    words = set(user.replace(",", " ").replace(".", " ").split())
    assert set(result["parsed"].items[0].name.split()) <= words
    usage = result["raw"].usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert sim.stats()["requests"] == 1


def test_openai_sdk_tool_choice_and_reply_shape(sim: SimServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    tools = [
        {"type": "function", "function": {"name": n, "description": n, "parameters": m.model_json_schema()}}
        for n, m in (("short", Short), ("concepts", KeyConcepts))
    ]
    resp = client.chat.completions.create(
        model="my-model", messages=[{"role": "user", "content": [{"type": "text", "text": "Docs about caching."}]}],
        tools=tools, tool_choice={"type": "function", "function": {"name": "concepts"}},
    )
    assert resp.model == "my-model" and resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert resp.system_fingerprint == "document-it-sim"
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "concepts"
    _assert_concepts(KeyConcepts.model_validate_json(call.function.arguments))
    assert resp.usage.completion_tokens == estimate_tokens(call.function.arguments)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    hi = [{"role": "user", "content": "hi"}]
    resp = client.chat.completions.create(model="m", messages=hi, tools=tools, tool_choice="required")
    assert resp.choices[0].message.tool_calls[0].function.name == "short"
    question = [{"role": "user", "content": "Explain caching headers."}]
    plain = client.chat.completions.create(model="m", messages=question)
    assert plain.choices[0].finish_reason == "stop" and plain.choices[0].message.content.strip()


def test_json_mode_without_schema_answers_object(sim: SimServer) -> None:
    messages = [{"role": "user", "content": "What is ETag?"}]
    body = {"model": "m", "messages": messages, "response_format": {"type": "json_object"}}
    reply = requests.post(f"{sim.base_url}/chat/completions", json=body, timeout=10).json()
    content = json.loads(reply["choices"][0]["message"]["content"])
    assert list(content) == ["answer"] and isinstance(content["answer"], str) and content["answer"]


def test_determinism(sim: SimServer) -> None:
    first = chat(sim, "Pages about authentication tokens and sessions.").json()
    again = chat(sim, "Pages about authentication tokens and sessions.").json()
    other = chat(sim, "Pages about database migrations and indexes.").json()
    content = first["choices"][0]["message"]["content"]
    assert again["choices"][0]["message"]["content"] == content
    assert other["choices"][0]["message"]["content"] != content
    with SimServer(latency_ms=1, ms_per_token=0) as second:
        reply = chat(second, "Pages about authentication tokens and sessions.").json()
        assert reply["choices"][0]["message"]["content"] == content


def test_stats_concurrency() -> None:
    with SimServer(latency_ms=600, ms_per_token=0) as sim:  # far longer than a busy machine takes to send all eight
        assert fire(sim, 8) == [200] * 8
        stats = sim.stats()
        assert stats["requests"] == 8 and stats["max_in_flight"] == 8 and stats["max_serving"] == 8
        assert stats["in_flight"] == 0 and stats["errors"] == 0
        assert stats["busy_seconds"] == pytest.approx(8 * 0.6)
        served = requests.get(f"http://127.0.0.1:{sim.port}/stats", timeout=5).json()
        expected = {"requests", "prompt_tokens", "completion_tokens", "in_flight", "max_in_flight", "max_serving",
                    "busy_seconds", "errors", "started_at", "uptime_seconds"}
        assert set(served) == set(stats) >= expected
        assert served["requests"] == 8 and served["prompt_tokens"] == stats["prompt_tokens"] > 0
        assert requests.post(f"http://127.0.0.1:{sim.port}/stats/reset", timeout=5).json()["requests"] == 0
        assert sim.stats()["max_in_flight"] == 0 and sim.stats()["busy_seconds"] == 0


def test_capacity_queues_requests() -> None:
    with SimServer(latency_ms=400, ms_per_token=0, capacity=2) as sim:  # all six arrive while the first are served
        assert fire(sim, 6) == [200] * 6
        stats = requests.get(f"http://127.0.0.1:{sim.port}/stats", timeout=5).json()
        assert stats["requests"] == 6 and stats["max_serving"] == 2 and stats["max_in_flight"] > 2
        assert stats["busy_seconds"] == pytest.approx(6 * 0.4)
        assert stats["queued_seconds"] > 0.1


def test_service_time_grows_with_completion_tokens() -> None:
    with SimServer(latency_ms=5, ms_per_token=1.0) as sim:
        short = chat(sim, "caching", model=Short)
        short_busy = sim.stats()["busy_seconds"]
        long = chat(sim, "caching", model=Long)
        long_busy = sim.stats()["busy_seconds"] - short_busy
        short_tokens = short.json()["usage"]["completion_tokens"]
        long_tokens = long.json()["usage"]["completion_tokens"]
        assert long_tokens > short_tokens * 10
        assert short_busy == pytest.approx((5 + short_tokens) / 1000, abs=1e-5)
        assert long_busy == pytest.approx((5 + long_tokens) / 1000, abs=1e-5)
        assert int(long.headers["openai-processing-ms"]) > int(short.headers["openai-processing-ms"])
        assert sim.stats()["completion_tokens"] == short_tokens + long_tokens


def test_auth_rejects_wrong_key_without_echo() -> None:
    with SimServer(latency_ms=1, api_key="sk-secret-123") as sim:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        url = f"{sim.base_url}/chat/completions"
        bad = requests.post(url, json=body, headers={"Authorization": "Bearer sk-wrong"}, timeout=5)
        assert bad.status_code == 401 and "sk-secret-123" not in bad.text and "sk-wrong" not in bad.text
        assert bad.json()["error"] == {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                       "param": None, "code": "invalid_api_key"}
        assert requests.post(f"{sim.base_url}/chat/completions", json=body, timeout=5).status_code == 401
        assert requests.get(f"{sim.base_url}/models", timeout=5).status_code == 401
        ok = requests.post(url, json=body, headers={"Authorization": "Bearer sk-secret-123"}, timeout=5)
        assert ok.status_code == 200
        assert sim.stats()["errors"] == 3 and sim.stats()["requests"] == 1


def test_bad_requests(sim: SimServer) -> None:
    url = f"{sim.base_url}/chat/completions"
    bad_json = requests.post(url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert bad_json.status_code == 400
    assert set(bad_json.json()["error"]) == {"message", "type", "param", "code"}
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    assert requests.post(url, json={"model": "m", "messages": []}, timeout=5).status_code == 400
    assert sim.stats()["errors"] == 2 and sim.stats()["requests"] == 0


def test_a_streamed_reply_sends_its_first_event_at_the_first_token_and_the_rest_when_decoded() -> None:
    # one second of decode after a 50 ms first token: the first event arrives while the request is still being
    # served, the rest put back together is the same reply a whole one would be, usage last
    body = {"model": "m", "messages": [{"role": "user", "content": "Summarise: retries back off."}],
            "stream": True, "stream_options": {"include_usage": True},
            "response_format": {"type": "json_schema", "json_schema": {"name": "S", "schema": {
                "type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}}}
    with SimServer(latency_ms=50, ms_per_token=1000 / 40) as sim:
        with requests.post(f"{sim.base_url}/chat/completions", json=body, stream=True, timeout=30) as reply:
            assert reply.headers["Content-Type"] == "text/event-stream"
            lines = (line for line in reply.iter_lines(decode_unicode=True) if line)
            first = json.loads(next(lines).removeprefix("data: "))
            serving_at_first = sim.stats()["serving"]
            rest = list(lines)
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"
    assert serving_at_first == 1  # still decoding when the first event arrived
    assert rest[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in rest[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert json.loads(text)["summary"]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0


def test_models_and_alias_paths(sim: SimServer) -> None:
    for url in (f"{sim.base_url}/models", f"http://127.0.0.1:{sim.port}/models"):
        listing = requests.get(url, timeout=5).json()
        entry = {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "document-it-sim"}
        assert listing == {"object": "list", "data": [entry]}
    body = {"model": "x", "messages": [{"role": "user", "content": "hello"}]}
    assert requests.post(f"http://127.0.0.1:{sim.port}/chat/completions", json=body, timeout=5).status_code == 200


def test_max_requests_then_503() -> None:
    with SimServer(latency_ms=1, max_requests=2) as sim:
        assert [chat(sim, "a", model=Short).status_code for _ in range(3)] == [200, 200, 503]
        assert sim.stats()["requests"] == 2


def test_stop_is_idempotent_and_closes_port() -> None:
    sim = SimServer(latency_ms=1).start()
    url = f"{sim.base_url}/models"
    assert requests.get(url, timeout=5).status_code == 200
    sim.stop()
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5, headers={"Connection": "close"})


def test_max_seconds_stops_server() -> None:
    sim = SimServer(latency_ms=1, max_seconds=0.3).start()
    assert sim.wait(5) and sim.stopped


def test_cli_serves_and_exits_cleanly_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "document_it.testing.llm_sim", "--port", "0", "--latency-ms", "10",
         "--max-seconds", "20"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
        line = lines.get(timeout=15)
        prefix = "document-it llm simulator listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.rstrip().endswith("/v1")
        base_url = line.strip().rsplit(" ", 1)[-1]
        assert requests.get(f"{base_url}/models", timeout=5).json()["data"][0]["id"] == "gpt-4o-mini"
        # Same request in another process gives a byte-identical answer.
        body = {"model": "m", "messages": [{"role": "user", "content": "cross-process determinism"}],
                "response_format": json_schema_format(KeyConcepts)}
        remote = requests.post(f"{base_url}/chat/completions", json=body, timeout=5).json()
        with SimServer(latency_ms=1) as local:
            mine = requests.post(f"{local.base_url}/chat/completions", json=body, timeout=5).json()
        assert remote["choices"][0]["message"]["content"] == mine["choices"][0]["message"]["content"]
        start = time.monotonic()
        proc.terminate()
        _, err = proc.communicate(timeout=5)
        assert proc.returncode == 0
        assert time.monotonic() - start < 5
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_help_mentions_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "document_it.testing.llm_sim", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert out.returncode == 0
    flags = ("--port", "--latency-ms", "--ms-per-token", "--jitter-ms", "--capacity", "--api-key", "--max-seconds",
             "--max-requests", "--rpm", "--tpm", "--burst-seconds", "--fail-429", "--fault-retry-after", "--fail-500",
             "--hang", "--hang-seconds", "--malformed", "--reset", "--seed")
    for flag in flags:
        assert flag in out.stdout
    assert "default: 400" in out.stdout


@pytest.mark.parametrize("prompt", ["Is this spam? Answer yes or no.\nBuy now", "Answer with exactly one word, "
                                    "'toxic' or 'clean'.\nHello"])
def test_a_prompt_asking_for_one_of_two_words_gets_one_of_them(prompt):
    from document_it.testing._sim_reply import plain_answer

    words = re.findall(r"(\w+)'? or '?(\w+)", prompt)[0]
    assert plain_answer(prompt) in words and plain_answer(prompt) == plain_answer(prompt)


def test_a_plain_prompt_asking_for_json_with_named_keys_gets_an_object_with_them():
    from document_it.testing._sim_reply import plain_answer

    reply = json.loads(plain_answer("Return JSON with name, version and license.\nFerry 2.1 is MIT licensed."))

    assert set(reply) == {"name", "version", "license"} and all(isinstance(v, str) for v in reply.values())
