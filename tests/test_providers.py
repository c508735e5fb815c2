"""ChatProvider against loopback servers: structured output, one repair, clear errors, no leaked keys."""

from __future__ import annotations

import json

import pytest

from document_it.analysis.gateway import Gateway
from document_it.analysis.prompts import Summary, Task, TopicInput
from document_it.analysis.providers import ChatProvider, ExtractiveProvider, make_provider
from document_it.config import LLMKind, Settings, StructuredMethod
from document_it.errors import LLMAuthError, LLMError
from document_it.testing.llm_sim import SimServer

from _fake_llm import ScriptedLLM, completion

TOPIC = TopicInput("Guides", (("Retries", "How retries work.", ("backoff",)),))
KEY = "sk-test-secret-0123456789"


def _settings(base_url: str, **extra) -> Settings:
    # scripted replies test one method's retries and repairs: no negotiation of another unless asked
    return Settings(**{"llm": LLMKind.OPENAI, "llm_base_url": base_url, "api_key": KEY, "model": "test-model",
                       "structured_output": StructuredMethod.JSON_SCHEMA, **extra})


async def _ask(base_url: str, task: Task = Task.SUMMARY, **extra):
    """One prompt through a gateway that does not retry, as the provider tests need."""
    settings = _settings(base_url, **{"retries": 0, **extra})
    async with Gateway(ChatProvider(settings), settings) as gateway:
        value = await gateway.ask(task, TOPIC)
    return value, gateway.summary()


@pytest.mark.parametrize("method", list(StructuredMethod))
async def test_each_structured_output_method_validates(method):
    with SimServer(latency_ms=1, ms_per_token=0) as sim:
        value, summary = await _ask(sim.base_url, Task.TOPIC_SYNTHESIS, structured_output=method)
        assert summary["attempts"] == 1 and summary["tokens_in"] > 0 and summary["tokens_out"] > 0
        assert value.overview and isinstance(value.key_themes, list)
        assert sim.stats()["requests"] == 1


async def test_invalid_reply_is_repaired_once():
    script = [completion('{"summary": 42}'), completion('{"summary": "Retries back off."}')]
    with ScriptedLLM(script) as llm:
        value, summary = await _ask(llm.base_url)
        assert value == Summary(summary="Retries back off.")
        # both replies are counted by their usage: the server was paid for the one that failed validation too
        assert summary["attempts"] == 2 and summary["tokens_in"] == 22 and summary["tokens_out"] == 14
        repair = llm.requests[1]["messages"][-1]["content"]
        assert "not valid" in repair


async def test_reply_still_invalid_after_repair_fails_with_reason():
    with ScriptedLLM([completion("not json at all"), completion('{"wrong": 1}')]) as llm:
        with pytest.raises(LLMError, match="invalid summary reply after one repair attempt"):
            await _ask(llm.base_url)
        assert len(llm.requests) == 2


async def test_server_error_message_is_surfaced_without_the_key():
    body = {"error": {"message": f"model not found for key {KEY}", "type": "invalid_request_error"}}
    with ScriptedLLM([(404, body)]) as llm:
        with pytest.raises(LLMError) as caught:
            await _ask(llm.base_url)
    text = str(caught.value)
    assert "HTTP 404" in text and "model not found" in text and KEY not in text


async def test_rejected_key_is_an_auth_error_naming_the_host_not_the_key():
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}}
    with ScriptedLLM([(401, body)]) as llm:
        with pytest.raises(LLMAuthError) as caught:
            await _ask(llm.base_url)
    assert "API key rejected by 127.0.0.1" in str(caught.value) and KEY not in str(caught.value)


async def test_hung_server_times_out():
    with ScriptedLLM([completion('{"summary": "late"}')], hang_s=3) as llm:
        with pytest.raises(LLMError, match="timed out|took longer than"):  # httpx or the gateway stops it
            await _ask(llm.base_url, request_timeout=0.3)


async def test_json_mode_puts_the_schema_in_the_prompt():
    with ScriptedLLM([completion('{"summary": "ok"}')]) as llm:
        await _ask(llm.base_url, structured_output=StructuredMethod.JSON_MODE)
        sent = llm.requests[0]
    assert sent["response_format"] == {"type": "json_object"}
    system = sent["messages"][0]["content"]
    schema = json.loads(system.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert schema["properties"]["summary"]["type"] == "string"


async def test_extractive_provider_makes_no_requests():
    provider = make_provider(Settings(llm=LLMKind.EXTRACTIVE))
    assert isinstance(provider, ExtractiveProvider)
    reply = await provider.complete(Task.TOPIC_SYNTHESIS, TOPIC)
    assert "Retries" in reply.value.overview


def test_a_plain_http_server_costs_no_certificate_loading_and_tls_stays_verified():
    import ssl

    from document_it.analysis.providers import _tls_context

    plain = _tls_context("http://127.0.0.1:8000/v1")
    assert plain.cert_store_stats()["x509_ca"] == 0  # nothing loaded: this client never speaks TLS to it
    assert plain.verify_mode is ssl.CERT_REQUIRED and plain.check_hostname  # and would refuse any TLS peer
    secure = _tls_context("https://api.example.org/v1")
    assert secure.verify_mode is ssl.CERT_REQUIRED and secure.cert_store_stats()["x509_ca"] > 0
    assert _tls_context(None).cert_store_stats()["x509_ca"] > 0  # OpenAI itself


async def test_a_refused_connection_says_so_not_the_sdks_exception_name():
    import socket

    from document_it.errors import LLMTransientError

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = ChatProvider(_settings(f"http://127.0.0.1:{port}/v1"))
    try:
        with pytest.raises(LLMTransientError) as caught:
            await provider.send(Task.SUMMARY, provider.messages(Task.SUMMARY, TOPIC))
    finally:
        await provider.aclose()
    assert str(caught.value).endswith("failed: connection refused") and caught.value.kind == "no connection"


async def test_a_reply_without_usage_is_taken_and_its_tokens_estimated():
    # some OpenAI-compatible servers send no `usage` at all: the answer stands, its tokens are estimated
    status, body = completion(json.dumps({"summary": "How retries work, in three sentences."}))
    del body["usage"]
    with ScriptedLLM([(status, body)]) as llm:
        value, summary = await _ask(llm.base_url)
    assert value.summary.startswith("How retries work")
    assert summary["attempts"] == 1 and summary["tokens_in"] == 0 and summary["tokens_out"] > 0
