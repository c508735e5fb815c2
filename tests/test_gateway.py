"""The gateway over loopback servers: what is retried, what fails at once, what is waited for, what is spent."""

from __future__ import annotations

import pytest

from document_it.analysis.gateway import Gateway, RetryPolicy, build_gateway
from document_it.analysis.prompts import Task, TopicInput
from document_it.analysis.providers import ChatProvider
from document_it.config import Fallback, LLMKind, Settings, StructuredMethod
from document_it.core import timeouts
from document_it.core.breaker import BreakerState
from document_it.errors import LLMError, LLMTransientError
from document_it.testing.llm_sim import SimServer

from _fake_llm import ScriptedLLM, completion

TOPIC = TopicInput("Guides", (("Retries", "How retries work.", ("backoff",)),))
OK = completion('{"overview": "Fine.", "key_themes": ["a"]}')


def _settings(base_url: str, **extra) -> Settings:
    # scripted replies test one method's retries and repairs: no negotiation of another
    return Settings(**{"llm": LLMKind.OPENAI, "llm_base_url": base_url, "api_key": "sk-test-0123456789",
                       "structured_output": StructuredMethod.JSON_SCHEMA,
                       "model": "gpt-4o-mini", "request_timeout": 1.0, **extra})


def _error(status: int, message: str = "boom", headers: dict | None = None):
    return status, {"error": {"message": message, "type": "server_error"}}, headers or {}


async def _ask(base_url: str, **extra):
    settings = _settings(base_url, **extra)
    async with build_gateway(settings) as gateway:
        gateway.retry = RetryPolicy(retries=settings.retries, base_s=0.01, cap_s=0.05)  # quick backoff
        try:
            return await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC), gateway
        except LLMError as exc:
            return exc, gateway


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
async def test_transient_statuses_are_retried(status):
    with ScriptedLLM([_error(status), OK]) as llm:
        value, gateway = await _ask(llm.base_url)
    assert value.overview == "Fine."
    summary = gateway.summary()
    assert summary["attempts"] == 2 and summary["retries"] == 1 and summary["by_status"]["completed"] == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_permanent_statuses_fail_at_once_with_the_servers_message(status):
    with ScriptedLLM([_error(status, "no such model: gpt-x"), OK]) as llm:
        error, gateway = await _ask(llm.base_url)
        assert len(llm.requests) == 1
    assert isinstance(error, LLMError) and not isinstance(error, LLMTransientError)
    assert f"HTTP {status}" in str(error) and "no such model: gpt-x" in str(error)
    assert gateway.summary()["by_status"]["failed"] == 1


async def test_retries_stop_after_the_configured_number():
    with ScriptedLLM([_error(500)] * 10) as llm:
        error, gateway = await _ask(llm.base_url, retries=2)
        assert len(llm.requests) == 3
    assert "gave up after 3 attempts" in str(error)


async def test_429_pauses_for_retry_after_cuts_the_window_and_is_not_a_failure():
    headers = {"retry-after-ms": "300", "x-ratelimit-limit-requests": "600"}
    with ScriptedLLM([_error(429, "slow down", headers), OK]) as llm:
        value, gateway = await _ask(llm.base_url, retries=0)  # a 429 does not use up retries
    assert value.overview == "Fine."
    summary = gateway.summary()
    assert summary["rate_limited"] == 1 and summary["attempts"] == 2
    assert summary["window"]["cuts"] == 1 and summary["window"]["current"] == 10
    assert summary["learned_rpm"] == 600.0
    assert gateway.limiter.pause.until > 0
    assert gateway.breaker.state is BreakerState.CLOSED


@pytest.fixture
def no_work_floor(monkeypatch):
    """Attempts limited by --request-timeout alone (not by what a slow CPU server needs for the answer asked)."""
    monkeypatch.setattr(timeouts, "SLOW_PREFILL_S", 0.0)
    monkeypatch.setattr(timeouts, "SLOW_DECODE_S", 0.0)


def test_a_self_hosted_attempt_gets_the_time_its_answer_needs_on_a_slow_server():
    limit = timeouts.AttemptLimit(60.0)
    assert limit.for_work(100, 50) == 60.0  # short work: --request-timeout stands
    long = limit.for_work(3000, 2200)  # a page and a five-part answer at CPU speed
    assert long == pytest.approx(3000 * timeouts.SLOW_PREFILL_S + 2200 * timeouts.SLOW_DECODE_S) and long > 60
    assert limit.for_work(10**6, 10**6) == limit.ceiling
    assert limit.for_work(3000, 2200, turn=2) == pytest.approx(2 * long)  # served after one ahead of it


async def test_a_hung_server_times_out_and_is_retried(no_work_floor):
    with ScriptedLLM([OK], hang_s=3) as llm:
        error, gateway = await _ask(llm.base_url, request_timeout=0.3, retries=1)
    assert isinstance(error, LLMTransientError) and "took longer than 0.6s" in str(error)  # 0.3 s, then 0.6 s
    assert gateway.summary()["attempts"] == 2


async def test_a_server_slower_than_the_timeout_gets_longer_attempts_when_nothing_else_waits(no_work_floor):
    # alive, but every reply takes 0.35 s: always past the first attempt's 0.3 s, and far inside the next one's
    with ScriptedLLM([OK] * 4, hang_s=0.35) as llm:
        value, gateway = await _ask(llm.base_url, request_timeout=0.3, retries=3)
    assert value.overview == "Fine."  # a later attempt had 0.6 s (or 1.2 s on a very busy machine)
    summary = gateway.summary()
    assert summary["attempts"] >= 2 and summary["attempt_timeout_s"] in (0.6, 1.2)


async def test_malformed_replies_are_retried():
    with ScriptedLLM([completion('{"overview": "cut sho'), OK]) as llm:
        value, gateway = await _ask(llm.base_url)
    assert value.overview == "Fine." and gateway.summary()["attempts"] == 2


async def test_breaker_opens_then_pages_wait_and_fail_after_max_wait():
    with ScriptedLLM([_error(500)] * 50) as llm:
        settings = _settings(llm.base_url, retries=10, max_wait=0.5)
        async with build_gateway(settings) as gateway:
            gateway.retry = RetryPolicy(retries=10, base_s=0.001, cap_s=0.001)
            with pytest.raises(LLMError, match="LLM unavailable: gave up after waiting 0.5s"):
                await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC)
        assert len(llm.requests) == gateway.breaker.threshold  # nothing was sent while open
    assert gateway.breaker.opened == 1


async def test_fallback_answers_offline_and_labels_it():
    with ScriptedLLM([_error(503)] * 10) as llm:
        settings = _settings(llm.base_url, retries=1, fallback=Fallback.EXTRACTIVE)
        async with build_gateway(settings) as gateway:
            gateway.retry = RetryPolicy(retries=1, base_s=0.001, cap_s=0.001)
            value = await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC)
    assert "Retries" in value.overview  # the extractive synthesis names the pages
    assert gateway.fell_back == {"Guides": ["topic_synthesis"]} and gateway.summary()["fallbacks"] == 1


async def test_token_budget_is_reported_once_spent():
    with SimServer(latency_ms=1, ms_per_token=0) as sim:
        settings = _settings(sim.base_url, max_tokens=50)
        async with Gateway(ChatProvider(settings), settings) as gateway:
            assert gateway.budget_reason() is None
            await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC)
            assert "token budget reached" in gateway.budget_reason()


async def test_cost_is_estimated_from_the_price_table_and_overrides():
    with SimServer(latency_ms=1, ms_per_token=0) as sim:
        settings = _settings(sim.base_url, price_in=1000.0, price_out=1000.0)
        async with Gateway(ChatProvider(settings), settings) as gateway:
            await gateway.ask(Task.TOPIC_SYNTHESIS, TOPIC)
    summary = gateway.summary()
    expected = (summary["tokens_in"] + summary["tokens_out"]) * 1000.0 / 1e6
    assert summary["cost_usd"] == pytest.approx(expected)
