"""The Batch API's memory in jobs.sqlite (core/batch_ledger.py): lines, batches, prompt states and kept pages, as
a run killed while a batch is out finds them again on the next open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from document_it.core.batch_ledger import BatchKind, LineRecord, PromptState
from document_it.core.job_queue import SCHEMA_VERSION, JobQueue, JobState, Outcome
from document_it.models import DocRef

_LEDGER_TABLES = ("batches", "batch_lines", "batch_prompts", "kept_pages")


def _line(custom_id: str, *keys: str, page: str = "https://docs.example/p") -> LineRecord:
    """A line carrying `keys` (one alone with item id "", several grouped with ids "1", "2", ...)."""
    ids = [""] if len(keys) == 1 else [str(n) for n in range(1, len(keys) + 1)]
    return LineRecord(custom_id, {"tasks": ["summary"], "brief": False},
                      tuple((item, key, f"{page}/{key}") for item, key in zip(ids, keys)),
                      {"model": "m", "messages": [{"role": "user", "content": f"ask {custom_id} ünï\nline"}]})


def _states(queue: JobQueue) -> dict[str, str]:
    return {key: state.state for key, state in queue.prompt_states().items()}


@pytest.fixture
def queue(tmp_path: Path):
    with JobQueue(tmp_path / "jobs.sqlite") as jobs:
        yield jobs


def _waiting_job(queue: JobQueue, key: str = "k1") -> tuple[int, object]:
    """A run with one claimed job."""
    run = queue.start_run("src", {})
    queue.add(run.id, [(key, DocRef(url=f"https://docs.example/{key}", title=key, topic="guide"), 0)])
    job = queue.claim(run.id, "w1")
    assert job is not None
    return run.id, job


def test_stored_lines_wait_in_the_order_stored_and_their_prompts_wait(queue):
    lines = [_line("c1", "a"), _line("c2", "b", "c"), _line("c3", "d")]
    queue.store_lines(lines[:2])
    queue.store_lines(lines[2:])
    assert queue.waiting_lines() == lines  # read back as written (items, question and body round trip)
    assert queue.prompt_states() == {key: PromptState("waiting", 0, "") for key in "abcd"}
    assert set(queue.prompt_states(["a", "d", "zz"])) == {"a", "d"}


def test_a_batch_takes_its_lines_and_is_listed_open_by_kind(queue):
    queue.store_lines([_line("c1", "a"), _line("c2", "b", "c"), _line("c3", "d")])
    run = queue.start_run("src", {}).id
    api = queue.add_batch(run, "api", ["c1", "c2"], 1234, input_file_id="file-1")
    assert [line.custom_id for line in queue.waiting_lines()] == ["c3"]
    assert [line.custom_id for line in queue.lines_of(api)] == ["c1", "c2"]
    assert _states(queue) == {"a": "submitted", "b": "submitted", "c": "submitted", "d": "waiting"}
    [record] = queue.open_batches()
    assert (record.id, record.kind, record.status, record.input_file_id, record.lines, record.bytes) == \
        (api, "api", "uploaded", "file-1", 2, 1234)
    assert record.kind is BatchKind.API and record.batch_id is None
    exported = queue.add_batch(run, "file", ["c3"], 99, path="/tmp/out.jsonl")
    assert [b.id for b in queue.open_batches()] == [api]  # only the API's
    [written] = queue.open_batches("file")
    assert (written.id, written.status, written.path) == (exported, "exported", "/tmp/out.jsonl")
    assert written.kind is BatchKind.FILE  # not the provider's to work on
    assert [b.id for b in queue.batches(run)] == [api, exported] and queue.batches(run + 1) == []


def test_what_the_provider_says_of_a_batch_is_recorded(queue):
    queue.store_lines([_line("c1", "a")])
    run = queue.start_run("src", {}).id
    row = queue.add_batch(run, "api", ["c1"], 10, input_file_id="file-1")
    queue.batch_created(row, "batch_abc", "validating")
    [record] = queue.open_batches()
    assert (record.batch_id, record.status) == ("batch_abc", "validating")
    queue.batch_status(row, "in_progress", {"total": 1, "completed": 0})
    queue.batch_status(row, "completed", output_file_id="out-1", error_file_id="err-1")
    [record] = queue.open_batches()  # finished at the provider, not yet collected
    assert (record.status, record.output_file_id, record.error_file_id) == ("completed", "out-1", "err-1")
    assert record.counts == {"total": 1, "completed": 0}  # kept when a later status says none


def test_a_settled_batch_closes_with_answers_and_failures_counted(queue):
    queue.store_lines([_line("c1", "a", "b", "c")])
    run = queue.start_run("src", {}).id
    row = queue.add_batch(run, "api", ["c1"], 10)
    queue.settle(row, {"a": {"summary": "A"}}, {"b": "HTTP 500: boom", "c": "x" * 800})
    assert queue.open_batches() == []
    assert queue.batches()[0].status == "collected"
    states = queue.prompt_states()
    assert states["a"] == PromptState("answered", 0, "")
    assert states["b"] == PromptState("failed", 1, "HTTP 500: boom")
    assert states["c"].state == "failed" and states["c"].error == "x" * 500  # kept, cut to 500 characters
    assert queue.waiting_lines() == []  # the line is closed, not sent again

    queue.store_lines([_line("c2", "b")])  # asked again in a later batch, which fails it again
    assert queue.prompt_states(["b"])["b"] == PromptState("waiting", 1, "HTTP 500: boom")
    again = queue.add_batch(run, "api", ["c2"], 10)
    queue.settle(again, {}, {"b": "expired"})
    assert queue.prompt_states(["b"])["b"] == PromptState("failed", 2, "expired")


def test_a_split_batch_puts_its_lines_back_to_wait(queue):
    queue.store_lines([_line("c1", "a"), _line("c2", "b", "c"), _line("c3", "d")])
    run = queue.start_run("src", {}).id
    first = queue.add_batch(run, "api", ["c1", "c2"], 10)
    queue.add_batch(run, "api", ["c3"], 10)
    queue.unbatch(first)
    assert [line.custom_id for line in queue.waiting_lines()] == ["c1", "c2"]  # in the order first stored
    assert _states(queue) == {"a": "waiting", "b": "waiting", "c": "waiting", "d": "submitted"}
    assert queue.lines_of(first) == []
    assert [b.status for b in queue.batches()] == ["split", "uploaded"]
    assert [b.lines for b in queue.open_batches()] == [1]


def test_a_kept_page_round_trips_and_goes_once_its_job_is_finished(queue):
    run, job = _waiting_job(queue)
    raw = bytes(range(256)) + b"\x00tail"
    queue.keep_page(run, "k1", raw)
    assert queue.kept_page(run, "k1") == raw
    assert queue.kept_page(run, "k2") is None and queue.kept_page(run + 1, "k1") is None
    queue.keep_page(run, "k1", b"newer")
    assert queue.kept_page(run, "k1") == b"newer"

    assert queue.finish_many([Outcome(job, JobState.WAITING, None)]) == [True]
    assert queue.kept_page(run, "k1") == b"newer"  # it waits for its batch: the download stays
    assert queue.wake(run) == 1
    job = queue.claim(run, "w2")
    assert job is not None and job.attempts == 1  # the wait did not count as a try
    assert queue.finish_many([Outcome(job, JobState.DONE, {"summary": "s"})]) == [True]
    assert queue.kept_page(run, "k1") is None


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.SKIPPED])
def test_a_job_that_ends_otherwise_drops_its_kept_page(queue, state):
    run, job = _waiting_job(queue)
    queue.keep_page(run, "k1", b"page")
    queue.finish_many([Outcome(job, state, None)])
    assert queue.kept_page(run, "k1") is None


def test_waiting_jobs_are_not_active_until_woken(queue):
    run, job = _waiting_job(queue)
    queue.finish(job, JobState.WAITING, None)
    assert not queue.active(run)
    assert queue.counts(run)[JobState.WAITING] == 1
    assert queue.wake(run) == 1
    assert queue.active(run) and queue.counts(run)[JobState.PENDING] == 1
    assert queue.wake(run) == 0


def test_pruned_runs_lose_their_kept_pages(queue):
    old = queue.start_run("src", {}).id
    queue.keep_page(old, "k1", b"old")
    queue.finish_run(old, "completed")
    new = queue.start_run("src", {}).id
    queue.keep_page(new, "k1", b"new")
    queue.prune(keep_runs=1)
    assert queue.kept_page(old, "k1") is None
    assert queue.kept_page(new, "k1") == b"new"


def test_a_v1_job_database_is_upgraded_and_keeps_its_runs(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with JobQueue(path) as queue:
        run = queue.start_run("src", {"depth": 1}).id
    db = sqlite3.connect(path)
    for table in _LEDGER_TABLES:
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    with JobQueue(path) as queue:
        assert queue.run(run).options == {"depth": 1}
        queue.store_lines([_line("c1", "a")])
        row = queue.add_batch(run, "api", ["c1"], 10)
        queue.settle(row, {"a": {"summary": "A"}}, {})
        queue.keep_page(run, "k", b"x")
        assert queue.prompt_states()["a"].state == "answered" and queue.kept_page(run, "k") == b"x"
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()


def test_the_ledger_outlives_the_process_that_wrote_it(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with JobQueue(path) as queue:
        queue.store_lines([_line("c1", "a"), _line("c2", "b")])
        run = queue.start_run("src", {}).id
        row = queue.add_batch(run, "api", ["c1"], 10, input_file_id="file-1")
        queue.batch_created(row, "batch_abc", "in_progress")
    with JobQueue(path) as queue:  # a run killed while the batch was out: --resume finds it
        [record] = queue.open_batches()
        assert (record.batch_id, record.status) == ("batch_abc", "in_progress")
        assert [line.custom_id for line in queue.waiting_lines()] == ["c2"]
        assert _states(queue) == {"a": "submitted", "b": "waiting"}


def test_a_settled_line_drops_its_body_and_pruned_runs_lose_their_collected_batches(queue):
    old = queue.start_run("src", {}).id
    queue.store_lines([_line("c1", "a"), _line("c2", "b")])
    row = queue.add_batch(old, "api", ["c1", "c2"], 10)
    queue.settle(row, {"a": {"summary": "A"}}, {"b": "expired"})
    assert [line.body for line in queue.lines_of(row)] == [{}, {}]  # the page text is not kept once answered
    queue.finish_run(old, "completed")
    queue.start_run("src", {})
    queue.prune(keep_runs=1)
    assert queue.batches(old) == [] and queue.lines_of(row) == []
    assert _states(queue) == {"b": "failed"}  # a failed prompt keeps its tries for the next batch
