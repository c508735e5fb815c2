"""The simulator's rate limits and injected faults: 429s with honest Retry-After, token buckets, every fault
kind produced and counted, reproducible per seed (real loopback HTTP only)."""

from __future__ import annotations

import json
import math
import time

import pytest
import requests

from document_it.testing._sim_faults import format_duration
from document_it.testing.llm_sim import SimServer
from document_it.tokens import estimate_tokens

from _sim_client import Short, chat

# -- rate limits and fault injection -------------------------------------------------------------------------------

_PLAIN = {"model": "m", "max_tokens": 5}


def _plain(sim: SimServer, user: str, *, timeout: float = 10) -> requests.Response:
    """POST one plain-text chat completion (prompt tokens = the user text's estimate)."""
    body = {**_PLAIN, "messages": [{"role": "user", "content": user}]}
    return requests.post(f"{sim.base_url}/chat/completions", json=body, timeout=timeout)


def _outcome(sim: SimServer, i: int) -> str:
    """Send one json_schema request and classify what came back, as a client sees it."""
    try:
        reply = chat(sim, f"request number {i}", model=Short)
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
        replies = [chat(sim, f"burst {i}", model=Short) for i in range(6)]
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
        again = chat(sim, "after the wait", model=Short)
        if again.status_code == 429:  # tolerate one scheduling hiccup
            time.sleep(0.05)
            again = chat(sim, "after the wait", model=Short)
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
            reply = chat(sim, "once more", model=Short)
            assert reply.headers["Retry-After"] == "1" and reply.headers["retry-after-ms"] == "250"
            assert reply.json()["error"]["code"] == "rate_limit_exceeded"
        elif kind == "500":
            assert outcomes == ["500", "503", "500"]
            assert chat(sim, "x", model=Short).json()["error"]["type"] == "server_error"
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


