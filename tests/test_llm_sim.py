"""Tests for the OpenAI-compatible LLM simulator (real loopback HTTP only)."""

from __future__ import annotations

import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from document_it.testing._sim_faults import format_duration
from document_it.testing.llm_sim import SimServer
from document_it.tokens import estimate_tokens

REPO_ROOT = Path(__file__).resolve().parents[1]


class KeyConcept(BaseModel):
    """One concept from a page."""

    name: str
    description: str
    importance: int = Field(ge=1, le=10)


class KeyConcepts(BaseModel):
    """Concepts from a page."""

    items: list[KeyConcept]


class Short(BaseModel):
    """A tiny answer."""

    label: str


class Long(BaseModel):
    """A large answer."""

    summaries: list[str] = Field(min_length=30, max_length=30)


def _json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    """Return an OpenAI json_schema response_format for `model`."""
    spec = {"name": model.__name__, "schema": model.model_json_schema(), "strict": False}
    return {"type": "json_schema", "json_schema": spec}


def _chat(sim: SimServer, user: str, *, model: type[BaseModel] = KeyConcepts, **extra: Any) -> requests.Response:
    """POST one json_schema chat completion to the simulator."""
    messages = [{"role": "system", "content": "Extract."}, {"role": "user", "content": user}]
    body = {"model": "gpt-4o-mini", "messages": messages, "response_format": _json_schema_format(model), **extra}
    return requests.post(f"{sim.base_url}/chat/completions", json=body, timeout=10)


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
    first = _chat(sim, "Pages about authentication tokens and sessions.").json()
    again = _chat(sim, "Pages about authentication tokens and sessions.").json()
    other = _chat(sim, "Pages about database migrations and indexes.").json()
    content = first["choices"][0]["message"]["content"]
    assert again["choices"][0]["message"]["content"] == content
    assert other["choices"][0]["message"]["content"] != content
    with SimServer(latency_ms=1, ms_per_token=0) as second:
        reply = _chat(second, "Pages about authentication tokens and sessions.").json()
        assert reply["choices"][0]["message"]["content"] == content


def _fire(sim: SimServer, count: int) -> list[int]:
    """Send `count` concurrent chat requests; return their status codes."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def one(i: int) -> None:
        barrier.wait()
        statuses.append(_chat(sim, f"request {i}", model=Short).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses


def test_stats_concurrency() -> None:
    with SimServer(latency_ms=600, ms_per_token=0) as sim:  # far longer than a busy machine takes to send all eight
        assert _fire(sim, 8) == [200] * 8
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
        assert _fire(sim, 6) == [200] * 6
        stats = requests.get(f"http://127.0.0.1:{sim.port}/stats", timeout=5).json()
        assert stats["requests"] == 6 and stats["max_serving"] == 2 and stats["max_in_flight"] > 2
        assert stats["busy_seconds"] == pytest.approx(6 * 0.4)
        assert stats["queued_seconds"] > 0.1


def test_service_time_grows_with_completion_tokens() -> None:
    with SimServer(latency_ms=5, ms_per_token=1.0) as sim:
        short = _chat(sim, "caching", model=Short)
        short_busy = sim.stats()["busy_seconds"]
        long = _chat(sim, "caching", model=Long)
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
    streamed = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    stream = requests.post(url, json=streamed, timeout=5)
    assert stream.status_code == 400 and "streaming is not supported" in stream.json()["error"]["message"]
    assert sim.stats()["errors"] == 3 and sim.stats()["requests"] == 0


def test_models_and_alias_paths(sim: SimServer) -> None:
    for url in (f"{sim.base_url}/models", f"http://127.0.0.1:{sim.port}/models"):
        listing = requests.get(url, timeout=5).json()
        entry = {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "document-it-sim"}
        assert listing == {"object": "list", "data": [entry]}
    body = {"model": "x", "messages": [{"role": "user", "content": "hello"}]}
    assert requests.post(f"http://127.0.0.1:{sim.port}/chat/completions", json=body, timeout=5).status_code == 200


def test_max_requests_then_503() -> None:
    with SimServer(latency_ms=1, max_requests=2) as sim:
        assert [_chat(sim, "a", model=Short).status_code for _ in range(3)] == [200, 200, 503]
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
                "response_format": _json_schema_format(KeyConcepts)}
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


# -- rate limits and fault injection -------------------------------------------------------------------------------

_PLAIN = {"model": "m", "max_tokens": 5}


def _plain(sim: SimServer, user: str, *, timeout: float = 10) -> requests.Response:
    """POST one plain-text chat completion (prompt tokens = the user text's estimate)."""
    body = {**_PLAIN, "messages": [{"role": "user", "content": user}]}
    return requests.post(f"{sim.base_url}/chat/completions", json=body, timeout=timeout)


def _outcome(sim: SimServer, i: int) -> str:
    """Send one json_schema request and classify what came back, as a client sees it."""
    try:
        reply = _chat(sim, f"request number {i}", model=Short)
    except requests.ConnectionError:
        return "reset"
    if reply.status_code != 200:
        return str(reply.status_code)
    try:
        json.loads(reply.json()["choices"][0]["message"]["content"])
    except ValueError:
        return "malformed"
    return "ok"


def test_format_duration_matches_openai_style() -> None:
    assert [format_duration(s) for s in (0.25, 1.2, 1.0, 63, 60, 3605.5)] == [
        "250ms", "1.2s", "1s", "1m3s", "1m0s", "1h0m5.5s"]


def test_rpm_bucket_answers_429_with_honest_retry_after() -> None:
    with SimServer(latency_ms=1, ms_per_token=0, rpm=120, burst_seconds=1) as sim:
        replies = [_chat(sim, f"burst {i}", model=Short) for i in range(6)]
        assert [r.status_code for r in replies] == [200, 200, 429, 429, 429, 429]
        first = replies[0].headers
        assert first["x-ratelimit-limit-requests"] == "120" and first["x-ratelimit-remaining-requests"] == "1"
        assert first["x-ratelimit-reset-requests"].endswith("ms") and "x-ratelimit-limit-tokens" not in first
        for reply in replies[2:]:
            assert int(reply.headers["Retry-After"]) >= 1 and 1 <= int(reply.headers["retry-after-ms"]) <= 1000
            assert reply.headers["x-ratelimit-remaining-requests"] == "0"
            assert {"x-ratelimit-limit-requests", "x-ratelimit-reset-requests"} <= set(reply.headers)
            error = reply.json()["error"]
            assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
            assert error["message"].startswith("Rate limit reached for requests")
            assert "Please try again in" in error["message"]
        time.sleep(int(replies[-1].headers["retry-after-ms"]) / 1000)
        again = _chat(sim, "after the wait", model=Short)
        if again.status_code == 429:  # tolerate one scheduling hiccup
            time.sleep(0.05)
            again = _chat(sim, "after the wait", model=Short)
        assert again.status_code == 200
        stats = sim.stats()
        assert stats["ok"] == stats["requests"] == 3
        assert stats["attempts"] == stats["ok"] + stats["rate_limited"] and stats["rate_limited"] >= 4
        assert stats["errors"] == 0 and sum(stats["faults"].values()) == 0


def test_tpm_bucket_limits_tokens() -> None:
    with SimServer(latency_ms=1, ms_per_token=0, tpm=600) as sim:  # 10 tokens/s, bucket of 10, 600 a minute
        huge = _plain(sim, "word " * 4000)  # ~5000 tokens: more than a whole minute allows
        assert huge.status_code == 429 and "Retry-After" not in huge.headers
        assert huge.headers["x-should-retry"] == "false"
        assert huge.json()["error"]["type"] == "tokens" and "Request too large" in huge.json()["error"]["message"]
        assert huge.headers["x-ratelimit-limit-tokens"] == "600" and "x-ratelimit-limit-requests" not in huge.headers
        medium = "word " * 400  # ~500 tokens: more than the bucket holds, so only a full bucket admits it
        first, second = _plain(sim, medium), _plain(sim, medium)
        assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "0"
        assert second.status_code == 429 and second.json()["error"]["type"] == "tokens"
        assert {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"} <= set(
            second.headers)
        charged = first.json()["usage"]["prompt_tokens"] + _PLAIN["max_tokens"]
        wait_ms = int(second.headers["retry-after-ms"])  # refill the debt, then a full bucket, at 10 tokens/s
        assert wait_ms == pytest.approx(charged * 100, abs=1000)
        assert int(second.headers["Retry-After"]) == math.ceil(wait_ms / 1000)
        assert sim.stats()["rate_limited"] == 2 and sim.stats()["ok"] == 1


@pytest.mark.parametrize("kind", ["429", "500", "malformed", "reset"])
def test_each_fault_kind_is_produced_and_counted(kind: str) -> None:
    rates = {"429": {"fail_429": 1.0}, "500": {"fail_500": 1.0}, "malformed": {"malformed": 1.0},
             "reset": {"reset": 1.0}}[kind]
    with SimServer(latency_ms=1, ms_per_token=0, fault_retry_after_s=0.25, **rates) as sim:
        outcomes = [_outcome(sim, i) for i in range(3)]
        stats = sim.stats()
        assert stats["faults"] == {k: (3 if k == kind else 0) for k in ("429", "500", "hang", "malformed", "reset")}
        assert stats["attempts"] == 3 and stats["ok"] == 0 and stats["errors"] == 0 and stats["in_flight"] == 0
        assert stats["requests"] == (3 if kind == "malformed" else 0)
        if kind == "429":
            assert outcomes == ["429"] * 3 and stats["rate_limited"] == 0
            reply = _chat(sim, "once more", model=Short)
            assert reply.headers["Retry-After"] == "1" and reply.headers["retry-after-ms"] == "250"
            assert reply.json()["error"]["code"] == "rate_limit_exceeded"
        elif kind == "500":
            assert outcomes == ["500", "503", "500"]
            assert _chat(sim, "x", model=Short).json()["error"]["type"] == "server_error"
        elif kind == "reset":
            assert outcomes == ["reset"] * 3
        else:
            assert outcomes == ["malformed"] * 3
            from openai import OpenAI

            client = OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
            tool = {"type": "function", "function": {"name": "short", "parameters": Short.model_json_schema()}}
            resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                  tools=[tool], tool_choice="required")
            arguments = resp.choices[0].message.tool_calls[0].function.arguments
            with pytest.raises(ValueError):
                json.loads(arguments)
            assert resp.usage.completion_tokens == estimate_tokens(arguments)


def test_hang_is_cut_by_client_timeout_and_stop_is_prompt() -> None:
    from openai import APITimeoutError, OpenAI

    sim = SimServer(latency_ms=1, hang=1.0, hang_seconds=60).start()
    try:
        client = OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, timeout=0.5)
        with pytest.raises(APITimeoutError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        stats = sim.stats()
        assert stats["faults"]["hang"] == 1 and stats["in_flight"] == 1 and stats["max_in_flight"] == 1
    finally:
        started = time.monotonic()
        sim.stop()
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 2
    while sim.stats()["in_flight"] and time.monotonic() < deadline:  # the hung handler wakes on stop()
        time.sleep(0.01)
    assert sim.stats()["in_flight"] == 0 and sim.stats()["requests"] == 0


def test_fault_sequence_is_reproducible_per_seed() -> None:
    rates = {"fail_429": 0.2, "fail_500": 0.2, "malformed": 0.2, "reset": 0.1}

    def run(seed: int) -> list[str]:
        with SimServer(latency_ms=1, ms_per_token=0, seed=seed, **rates) as sim:
            return [_outcome(sim, i) for i in range(30)]

    first, again, other = run(7), run(7), run(8)
    assert first == again and first != other
    assert {"ok", "429", "malformed", "reset"} <= set(first) and {"500", "503"} & set(first)


def test_stats_account_for_every_attempt() -> None:
    rates = {"fail_429": 0.15, "fail_500": 0.15, "malformed": 0.15, "reset": 0.1}
    with SimServer(latency_ms=1, ms_per_token=0, rpm=600, seed=3, **rates) as sim:  # bucket of 10 requests
        outcomes = [_outcome(sim, i) for i in range(24)]
        stats = requests.get(f"http://127.0.0.1:{sim.port}/stats", timeout=5).json()
        assert stats["attempts"] == 24 == stats["ok"] + stats["rate_limited"] + sum(stats["faults"].values())
        assert stats["rate_limited"] >= 10 and stats["ok"] >= 1 and sum(stats["faults"].values()) >= 1
        assert stats["requests"] == stats["ok"] + stats["faults"]["malformed"]
        assert outcomes.count("ok") == stats["ok"] and outcomes.count("reset") == stats["faults"]["reset"]
        assert outcomes.count("429") == stats["rate_limited"] + stats["faults"]["429"]
        reset = requests.post(f"http://127.0.0.1:{sim.port}/stats/reset", timeout=5).json()
        assert reset["attempts"] == reset["ok"] == reset["rate_limited"] == 0
        assert set(reset["faults"].values()) == {0}


def test_fault_rates_are_validated() -> None:
    with pytest.raises(ValueError):
        SimServer(fail_429=0.6, fail_500=0.6)
    with pytest.raises(ValueError):
        SimServer(hang=-0.1)


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
