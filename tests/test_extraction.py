"""ParallelProcessor (document_it.analysis.extraction): fields from chunks, retries, metadata, statuses.

Every client here is a tiny fake (no network); nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from document_it.analysis.patterns import (
    LLMClient, ParallelProcessor, ProcessingRequest, PromptReply, RequestStatus,
)
from document_it.errors import LLMAuthError, LLMTransientError
from document_it.tokens import estimate_tokens

from _pattern_fakes import Recorder, echo


class ScriptedClient:
    """An LLMClient whose replies to each chunk come from a list; an exception in the list is raised."""

    def __init__(self, replies: dict[str, list[Any]]) -> None:
        self.replies = replies
        self.calls: list[tuple[str, str, float]] = []

    async def process_prompt(self, prompt: str, *, model_name: str, timeout: float) -> PromptReply:
        self.calls.append((prompt, model_name, timeout))
        chunk = prompt.rsplit("TEXT: ", 1)[1]
        reply = self.replies[chunk].pop(0)
        if isinstance(reply, BaseException):
            raise reply
        if reply == "HANG":
            await asyncio.Event().wait()
        return PromptReply(reply, tokens_in=10, tokens_out=len(reply))


def request(chunks: list[str], **overrides: Any) -> ProcessingRequest:
    settings = {"prompt_template": "Extract {fields} as JSON. TEXT: {chunk}", "fields": ["title", "author"],
                "model_name": "test-model", **overrides}
    return ProcessingRequest(chunks, **settings)


async def test_a_bad_json_reply_is_retried_and_counted() -> None:
    good = 'Here you go:\n```json\n{"title": "Intro", "year": 2020}\n```'
    client = ScriptedClient({"doc": ["Sorry, I cannot.", good]})
    [done] = await ParallelProcessor(client).process(request(["doc"]))
    assert done.chunk == "doc"
    assert done.result == {"title": "Intro", "author": None}  # extra fields dropped, missing ones None
    meta = done.processing_metadata
    assert meta.attempt_count == 2 and meta.status == "completed" and meta.error is None
    assert meta.token_count == (10 + len("Sorry, I cannot.")) + (10 + len(good))  # from each PromptReply
    assert meta.model_name == "test-model" and meta.processing_time >= 0
    assert client.calls[0] == ("Extract title, author as JSON. TEXT: doc", "test-model", 60.0)


async def test_a_chunk_fails_after_its_retry_attempts() -> None:
    client = ScriptedClient({"doc": ["no", "still no", "nope", "never asked"]})
    processor = ParallelProcessor(client)
    recorder = Recorder()
    [done] = await processor.process(request(["doc"], retry_attempts=3), **recorder.kwargs())
    meta = done.processing_metadata
    assert meta.status == "failed" and meta.attempt_count == 3 and len(client.calls) == 3
    assert meta.error == "Error: the reply held no JSON object (after 3 attempts)"
    assert done.result == {"title": None, "author": None}
    assert processor.statuses() == {0: RequestStatus.FAILED}
    assert recorder.of("error") == {0: meta.error}


async def test_transient_errors_and_timeouts_are_retried_other_errors_are_not() -> None:
    client = ScriptedClient({
        "flaky": [LLMTransientError("server busy"), '{"title": "F"}'],
        "slow": ["HANG", '{"title": "S"}'],
        "denied": [LLMAuthError("key rejected"), '{"title": "never"}'],
        "buggy": [KeyError("oops"), '{"title": "never"}'],
    })
    done = await ParallelProcessor(client).process(request(["flaky", "slow", "denied", "buggy"], timeout=0.05))
    flaky, slow, denied, buggy = (d.processing_metadata for d in done)
    assert (flaky.status, flaky.attempt_count, done[0].result["title"]) == ("completed", 2, "F")
    assert (slow.status, slow.attempt_count, done[1].result["title"]) == ("completed", 2, "S")
    assert (denied.status, denied.attempt_count, denied.error) == ("failed", 1, "Error: key rejected")
    assert (buggy.status, buggy.attempt_count) == ("failed", 1) and buggy.error.startswith("Error: KeyError")


async def test_results_keep_input_order_and_statuses_are_tracked() -> None:
    rng = random.Random(3)
    chunks = [f"chunk {i}" for i in range(25)]
    in_flight, peak = 0, 0
    processor: ParallelProcessor

    async def llm(prompt: str) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        chunk = prompt.rsplit("TEXT: ", 1)[1]
        assert processor.statuses()[chunks.index(chunk)] is RequestStatus.IN_PROGRESS
        await asyncio.sleep(rng.uniform(0, 0.01))
        in_flight -= 1
        return f'{{"title": "{chunk}", "author": "{{braces}} kept"}}'

    processor = ParallelProcessor(llm)
    done = await processor.process(request(chunks, max_concurrency=4))
    assert [d.result["title"] for d in done] == chunks
    assert done[0].result["author"] == "{braces} kept"
    assert peak == 4
    assert processor.statuses() == dict.fromkeys(range(25), RequestStatus.COMPLETED)


async def test_a_plain_callable_gets_estimated_token_counts() -> None:
    reply = '{"title": "T", "author": "A"}'

    async def llm(prompt: str) -> str:
        return reply

    [done] = await ParallelProcessor(llm).process(request(["some text"]))
    prompt = "Extract title, author as JSON. TEXT: some text"
    assert done.processing_metadata.token_count == estimate_tokens(prompt) + estimate_tokens(reply)
    assert done.result == {"title": "T", "author": "A"}


def test_clients_are_recognised_and_process_sync_works_from_sync_code() -> None:
    client = ScriptedClient({"a": ['{"title": "A"}'], "b": ['{"author": "B"}']})
    assert isinstance(client, LLMClient) and not isinstance(echo, LLMClient)
    recorder = Recorder()
    done = ParallelProcessor(client).process_sync(request(["a", "b"]), **recorder.kwargs())
    assert [d.result for d in done] == [{"title": "A", "author": None}, {"title": None, "author": "B"}]
    assert recorder.of("result") == {0: {"title": "A", "author": None}, 1: {"title": None, "author": "B"}}


def test_a_chunk_containing_a_placeholder_is_not_rewritten() -> None:
    req = request(["see {fields} and {chunk}"])
    assert req.prompt(req.chunks[0]) == "Extract title, author as JSON. TEXT: see {fields} and {chunk}"


@pytest.mark.parametrize("overrides, message", [
    ({"chunks": "one string"}, "chunks"),
    ({"fields": []}, "fields"),
    ({"fields": ["a", "a"]}, "fields"),
    ({"prompt_template": "no placeholder"}, "{chunk}"),
    ({"model_name": " "}, "model_name"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"retry_attempts": 0}, "retry_attempts"),
    ({"timeout": 0}, "timeout"),
])
def test_a_bad_processing_request_is_refused(overrides: dict[str, Any], message: str) -> None:
    chunks = overrides.pop("chunks", ["a"])
    with pytest.raises(ValueError, match=message):
        request(chunks, **overrides)
