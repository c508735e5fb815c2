"""connect_llm(): a gateway-backed client for free-form prompts, against the simulator over loopback."""

from __future__ import annotations

import asyncio

import pytest

import document_it
from document_it.errors import ConfigError, LLMAuthError
from document_it.testing.llm_sim import SimServer


@pytest.fixture
def sim():
    with SimServer(latency_ms=30, ms_per_token=0, max_seconds=60) as server:
        yield server


def _connect(sim: SimServer, tmp_path, **extra) -> document_it.GatewayClient:
    return document_it.connect_llm(base_url=sim.base_url, state_dir=tmp_path / "state", **extra)


def test_query_from_plain_code_and_the_cache_answers_a_repeat(sim, tmp_path):
    with _connect(sim, tmp_path) as llm:
        first = llm.query("Explain the retry policy of the queue.")
        again = llm.query("Explain the retry policy of the queue.")
    assert first and first == again
    assert sim.stats()["requests"] == 1  # the second answer came from the diskcache memo


async def test_query_async_from_a_running_loop_respects_the_concurrency_cap(sim, tmp_path):
    async with _connect(sim, tmp_path, max_concurrency=3, cache=False) as llm:
        answers = await asyncio.gather(*(llm.query_async(f"question number {i}") for i in range(12)))
        figures = llm.summary()[llm.settings.model]
    assert len(answers) == 12 and all(answers)
    assert sim.stats()["requests"] == 12 and sim.stats()["max_in_flight"] <= 3
    assert figures["requests"] == 12 and figures["tokens_in"] > 0


async def test_process_prompt_reports_tokens_and_can_use_another_model(sim, tmp_path):
    async with _connect(sim, tmp_path, cache=False) as llm:
        reply = await llm.process_prompt("Name the fields.", model_name="small-model", timeout=30)
        models = set(llm.summary())
    assert reply.text and reply.tokens_in > 0 and reply.tokens_out > 0
    assert models == {"small-model"}


def test_a_rejected_key_is_an_auth_error_without_the_key(tmp_path):
    with SimServer(latency_ms=5, api_key="sk-right-0000", max_seconds=60) as server:
        with document_it.connect_llm(base_url=server.base_url, api_key="sk-wrong-1234",
                                     state_dir=tmp_path / "state") as llm:
            with pytest.raises(LLMAuthError) as caught:
                llm.query("hello")
    assert "sk-wrong-1234" not in str(caught.value)


def test_without_any_llm_configured_it_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        document_it.connect_llm(env={})


def test_a_closed_client_refuses_politely(sim, tmp_path):
    llm = _connect(sim, tmp_path)
    llm.close()
    with pytest.raises(RuntimeError, match="closed"):
        llm.query("hello")


def test_simulate_starts_and_stops_its_own_simulator(tmp_path):
    with document_it.connect_llm(simulate=True, state_dir=tmp_path / "state", env={}) as llm:
        assert llm.query("What does the scheduler do?")
        base = llm.settings.llm_base_url
    assert base and base.startswith("http://127.0.0.1:")
