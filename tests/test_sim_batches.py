"""The simulator's Files and Batch API, driven by the real openai SDK over loopback: batches validate, run and
finish on the clock, each line answered as a live request would be; failures, expiry, cancel, limits, stats."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
import requests
from pydantic import BaseModel, Field

from document_it.testing._sim_batches import batch_kwargs
from document_it.testing.llm_sim import SimServer, _parser

FAST = {"latency_ms": 1, "ms_per_token": 0.0, "batch_validating_s": 0.02, "batch_in_progress_s": 0.05,
        "batch_finalizing_s": 0.02}
FINAL = {"completed", "failed", "expired", "cancelled"}


class Card(BaseModel):
    """A tiny answer schema."""

    title: str
    score: int = Field(ge=1, le=5)
    tags: list[str]


def _card_format() -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "Card", "schema": Card.model_json_schema(), "strict": True}}


def _body(i: int, **extra: Any) -> dict[str, Any]:
    """A chat body whose prompt names one page, the way document-it's page prompts do."""
    user = f"URL: https://docs.example/page-{i}\n\nRouting, handlers and middleware of page {i}."
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}], **extra}


def _line(custom_id: str, body: dict[str, Any], url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def _client(sim: SimServer, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key=key, max_retries=0)


def _submit(client: openai.OpenAI, lines: list[dict[str, Any]] | bytes, **meta: str) -> Any:
    """Upload `lines` as a .jsonl batch file and create a chat-completions batch on it."""
    data = lines if isinstance(lines, bytes) else "".join(json.dumps(x) + "\n" for x in lines).encode()
    file = client.files.create(file=("requests.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h",
                                 metadata=meta or None)


def _wait(client: openai.OpenAI, batch_id: str, deadline_s: float = 10.0) -> Any:
    """Poll until the batch reaches a terminal status."""
    end = time.monotonic() + deadline_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in FINAL:
            return batch
        assert time.monotonic() < end, f"batch still {batch.status}"
        time.sleep(0.01)


def _records(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """The lines of an output or error file (none for a null id)."""
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_batch_completes_with_one_output_line_per_request() -> None:
    with SimServer(**FAST) as sim:
        client = _client(sim)
        created = _submit(client, [_line(f"req-{i}", _body(i)) for i in range(4)], run="nightly")
        assert created.status == "validating" and created.request_counts.total == 0
        assert created.expires_at == created.created_at + 24 * 3600 and created.in_progress_at is None
        batch = _wait(client, created.id)
        assert batch.status == "completed" and batch.metadata == {"run": "nightly"}
        assert batch.request_counts.model_dump() == {"total": 4, "completed": 4, "failed": 0}
        assert created.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
        assert batch.error_file_id is None and batch.errors is None and batch.failed_at is None
        assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
        records = _records(client, batch.output_file_id)
        assert [r["custom_id"] for r in records] == [f"req-{i}" for i in range(4)]
        for record in records:
            assert record["id"].startswith("batch_req_") and record["error"] is None
            assert record["response"]["status_code"] == 200 and record["response"]["request_id"]
            completion = openai.types.chat.ChatCompletion.model_validate(record["response"]["body"])
            assert completion.choices[0].message.content and completion.usage.completion_tokens > 0
        prompt = sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in records)
        assert batch.usage.input_tokens == prompt and batch.usage.total_tokens > prompt


def test_json_schema_lines_are_valid_and_answered_as_live() -> None:
    with SimServer(**FAST) as sim:
        client = _client(sim)
        body = _body(7, response_format=_card_format())
        batch = _wait(client, _submit(client, [_line("card", body)]).id)
        content = _records(client, batch.output_file_id)[0]["response"]["body"]["choices"][0]["message"]["content"]
        card = Card.model_validate_json(content)
        assert 1 <= card.score <= 5 and card.title
        live = client.chat.completions.create(**body)
        assert live.choices[0].message.content == content


def test_failed_lines_go_to_the_error_file_and_are_reproducible() -> None:
    def run() -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
        with SimServer(batch_failed_lines=0.3, seed=7, **FAST) as sim:
            client = _client(sim)
            batch = _wait(client, _submit(client, [_line(f"r{i}", _body(i)) for i in range(10)]).id)
            return batch, _records(client, batch.error_file_id), sim.stats()

    batch, errors, stats = run()
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 10, "completed": 7, "failed": 3}
    assert len(errors) == 3 and stats["batch_failed_lines"] == 3 and stats["batch_lines"] == 7
    for record in errors:
        assert record["error"] is None and record["response"]["status_code"] == 500
        assert record["response"]["body"]["error"]["type"] == "server_error"
    assert [r["custom_id"] for r in run()[1]] == [r["custom_id"] for r in errors]


def test_expiry_keeps_the_lines_answered_in_time() -> None:
    # in progress from 0.05 s to 0.45 s, expired at 0.25 s: half the lines ran
    with SimServer(latency_ms=1, ms_per_token=0, batch_validating_s=0.05, batch_in_progress_s=0.4,
                   batch_finalizing_s=0.02, batch_expire_s=0.25) as sim:
        client = _client(sim)
        created = _submit(client, [_line(f"r{i}", _body(i)) for i in range(10)])
        assert created.expires_at - created.created_at in (0, 1)
        batch = _wait(client, created.id)
        assert batch.status == "expired" and batch.expired_at and batch.completed_at is None
        assert batch.request_counts.model_dump() == {"total": 10, "completed": 5, "failed": 5}
        assert [r["custom_id"] for r in _records(client, batch.output_file_id)] == [f"r{i}" for i in range(5)]
        errors = _records(client, batch.error_file_id)
        assert [r["custom_id"] for r in errors] == [f"r{i}" for i in range(5, 10)]
        assert all(r["response"] is None and r["error"] == {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired."} for r in errors)
        assert sorted(sim.stats()["urls"]) == sorted(f"https://docs.example/page-{i}" for i in range(5))


def test_cancel_while_validating_runs_nothing() -> None:
    with SimServer(latency_ms=1, ms_per_token=0, batch_validating_s=0.3, batch_in_progress_s=0.05,
                   batch_finalizing_s=0.05) as sim:
        client = _client(sim)
        created = _submit(client, [_line(f"r{i}", _body(i)) for i in range(3)])
        cancelling = client.batches.cancel(created.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        batch = _wait(client, created.id)
        assert batch.status == "cancelled" and batch.cancelled_at and batch.output_file_id is None
        assert batch.in_progress_at is None
        assert batch.request_counts.model_dump() == {"total": 3, "completed": 0, "failed": 3}
        assert {r["error"]["code"] for r in _records(client, batch.error_file_id)} == {"batch_cancelled"}
        assert sim.stats()["urls"] == {} and sim.stats()["batch_lines"] == 0
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(created.id)


def test_cancel_in_progress_keeps_a_prefix_of_answers() -> None:
    with SimServer(latency_ms=1, ms_per_token=0, batch_validating_s=0.02, batch_in_progress_s=1.0,
                   batch_finalizing_s=0.02) as sim:
        client = _client(sim)
        created = _submit(client, [_line(f"r{i}", _body(i)) for i in range(20)])
        while client.batches.retrieve(created.id).status == "validating":
            time.sleep(0.01)
        time.sleep(0.1)
        client.batches.cancel(created.id)
        batch = _wait(client, created.id)
        answered = [r["custom_id"] for r in _records(client, batch.output_file_id)]
        cancelled = [r["custom_id"] for r in _records(client, batch.error_file_id)]
        assert batch.status == "cancelled" and 0 < len(answered) < 20
        assert answered + cancelled == [f"r{i}" for i in range(20)]
        assert batch.request_counts.completed == len(answered)


@pytest.mark.parametrize(("options", "lines", "code", "line"), [
    ({"batch_max_file_bytes": 300}, [_line(f"r{i}", _body(i)) for i in range(3)], "file_too_large", None),
    ({"batch_max_lines": 2}, [_line(f"r{i}", _body(i)) for i in range(3)], "too_many_tasks", None),
    ({}, [_line("same", _body(1)), _line("same", _body(2))], "duplicate_custom_id", 2),
    ({}, [_line("a", _body(1)), _line("b", _body(2), url="/v1/embeddings")], "invalid_url", 2),
    ({}, b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n{not json\n',
     "invalid_json_line", 2),
])
def test_invalid_input_fails_validation(options: dict[str, Any], lines: Any, code: str, line: int | None) -> None:
    with SimServer(**{**FAST, **options}) as sim:
        client = _client(sim)
        batch = _wait(client, _submit(client, lines).id)
        assert batch.status == "failed" and batch.failed_at and batch.in_progress_at is None
        assert batch.output_file_id is None and batch.error_file_id is None
        assert batch.errors.object == "list" and [(e.code, e.line) for e in batch.errors.data] == [(code, line)]
        if code == "file_too_large":
            assert "300" in batch.errors.data[0].message
        assert sim.stats()["batch_lines"] == 0 and sim.stats()["urls"] == {}


def test_list_is_newest_first_and_pages() -> None:
    with SimServer(**FAST) as sim:
        client = _client(sim)
        ids = [_submit(client, [_line("a", _body(i))]).id for i in range(3)]
        page = client.batches.list(limit=2)
        assert [b.id for b in page.data] == ids[:0:-1] and page.has_more
        assert [b.id for b in client.batches.list(limit=2, after=ids[1]).data] == ids[:1]
        assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # the SDK follows the pages
        raw = requests.get(f"{sim.base_url}/batches", timeout=5).json()
        assert raw["object"] == "list" and raw["first_id"] == ids[2] and raw["last_id"] == ids[0]
        assert raw["has_more"] is False


def test_files_round_trip_and_unknown_ids_are_404() -> None:
    with SimServer(**FAST) as sim:
        client = _client(sim)
        data = b'{"custom_id": "a"}\r\n{"x": "\xc3\xa9"}\n'
        file = client.files.create(file=("in.jsonl", data), purpose="batch")
        assert file.id.startswith("file-") and file.bytes == len(data) and file.filename == "in.jsonl"
        assert file.status == "processed" and client.files.retrieve(file.id) == file
        assert client.files.content(file.id).read() == data
        assert client.files.delete(file.id).deleted
        with pytest.raises(openai.NotFoundError) as caught:
            client.files.retrieve(file.id)
        assert caught.value.body["type"] == "invalid_request_error" and file.id in caught.value.body["message"]
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_missing")
        with pytest.raises(openai.BadRequestError):
            client.files.create(file=("notes.txt", b"x"), purpose="batch")
        assert sim.stats()["files_uploaded"] == 1


def test_auth_is_checked_on_files_and_batches() -> None:
    with SimServer(api_key="sk-right", **FAST) as sim:
        wrong = _client(sim, "sk-wrong")
        with pytest.raises(openai.AuthenticationError):
            wrong.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
        with pytest.raises(openai.AuthenticationError):
            wrong.batches.list()
        assert requests.get(f"{sim.base_url}/batches", timeout=5).status_code == 401
        right = _client(sim, "sk-right")
        batch = _wait(right, _submit(right, [_line("a", _body(1))]).id)
        assert batch.status == "completed"
        with pytest.raises(openai.AuthenticationError):
            wrong.files.content(batch.output_file_id)


def test_no_json_schema_lines_get_the_live_error() -> None:
    with SimServer(no_json_schema=True, **FAST) as sim:
        client = _client(sim)
        body = _body(1, response_format=_card_format())
        batch = _wait(client, _submit(client, [_line("schema", body), _line("plain", _body(2))]).id)
        assert batch.request_counts.model_dump() == {"total": 2, "completed": 1, "failed": 1}
        [error] = _records(client, batch.error_file_id)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(**body)
        assert error["custom_id"] == "schema" and error["response"]["status_code"] == caught.value.status_code
        assert error["response"]["body"]["error"] == caught.value.body
        assert [r["custom_id"] for r in _records(client, batch.output_file_id)] == ["plain"]


def test_stats_count_batch_lines_apart_and_urls_together() -> None:
    with SimServer(**FAST) as sim:
        client = _client(sim)
        client.chat.completions.create(**_body(0))
        batch = _wait(client, _submit(client, [_line(f"r{i}", _body(i)) for i in (1, 2, 3)]).id)
        records = _records(client, batch.output_file_id)
        stats = sim.stats()
        assert stats["urls"] == {f"https://docs.example/page-{i}": 1 for i in range(4)}
        assert stats["requests"] == stats["attempts"] == stats["ok"] == 1
        assert (stats["files_uploaded"], stats["batches_created"], stats["batch_lines"]) == (1, 1, 3)
        assert stats["batch_failed_lines"] == 0
        assert stats["batch_prompt_tokens"] == sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in records)
        assert stats["batch_completion_tokens"] == batch.usage.output_tokens > 0
        assert requests.get(f"http://127.0.0.1:{sim.port}/stats", timeout=5).json()["batch_lines"] == 3
        sim.reset_stats()
        assert all(sim.stats()[k] == 0 for k in ("files_uploaded", "batches_created", "batch_lines",
                                                  "batch_prompt_tokens", "batch_completion_tokens"))


def test_cli_flags_set_the_batch_options() -> None:
    args = _parser().parse_args(["--batch-delays", "1,2.5,3", "--batch-expire-s", "60", "--batch-failed-lines",
                                 "0.1", "--batch-max-file-mb", "2", "--batch-max-lines", "10",
                                 "--batch-enqueued-tokens", "5000"])
    assert batch_kwargs(args) == {"batch_validating_s": 1.0, "batch_in_progress_s": 2.5, "batch_finalizing_s": 3.0,
                                  "batch_expire_s": 60.0, "batch_failed_lines": 0.1,
                                  "batch_max_file_bytes": 2 * 1024 * 1024, "batch_max_lines": 10,
                                  "batch_enqueued_tokens": 5000, "batch_no_metadata": False,
                                  "batch_fail_uploads": 0}
    SimServer(**batch_kwargs(_parser().parse_args([])))  # the defaults are valid options
    with pytest.raises(SystemExit):
        _parser().parse_args(["--batch-delays", "1,2"])


def test_a_batch_past_the_enqueued_token_limit_fails_while_another_runs_and_is_taken_after() -> None:
    lines = [_line(f"r{i}", _body(i)) for i in range(4)]
    size = len("".join(json.dumps(x) + "\n" for x in lines))
    with SimServer(latency_ms=0, ms_per_token=0, batch_validating_s=0.0, batch_in_progress_s=0.5,
                   batch_enqueued_tokens=size // 4 + 10) as sim:
        client = _client(sim)
        first = _submit(client, lines)
        assert client.batches.retrieve(first.id).status == "in_progress"
        second = client.batches.retrieve(_submit(client, lines).id)  # while the first holds the queue
        assert second.status == "failed" and second.errors.data[0].code == "token_limit_exceeded"
        assert "Enqueued token limit reached" in second.errors.data[0].message
        assert _wait(client, first.id).status == "completed"
        third = _wait(client, _submit(client, lines).id)  # the queue is free again
        assert third.status == "completed"
