"""The job database: dedupe, breadth-first claims, leases across processes, and page memory between runs."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from _clock import FakeClock
from document_it.core.job_queue import Job, JobQueue, JobState, Outcome
from document_it.core.page_memory import PageRecord
from document_it.errors import ConfigError
from document_it.models import DocRef


def _ref(n: int | str) -> DocRef:
    return DocRef(url=f"https://docs.example/p{n}", title=f"Page {n}", topic="guide")


def _items(*numbers: int, depth: int = 0) -> list[tuple[str, DocRef, int]]:
    return [(f"k{n}", _ref(n), depth) for n in numbers]


def _page(key: str, url: str, content_hash: str = "h1") -> PageRecord:
    return PageRecord(key=key, url=url, topic="guide", content_hash=content_hash, etag='"abc"',
                      last_modified="Tue, 01 Jul 2025 10:00:00 GMT", result={"summary": "ünïcode"},
                      links=("https://docs.example/a",), headings=("Intro", "Usage"), words=120, analysed_at=5.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock):
    with JobQueue(tmp_path / "jobs.sqlite", lease_s=60.0, clock=clock.monotonic) as q:
        yield q


def test_add_dedupes_by_key_and_respects_max_jobs(queue):
    run = queue.start_run("https://docs.example/llms.txt", {"max_pages": 3})
    assert queue.add(run.id, _items(1, 2, 2, 1)) == 2
    assert queue.add(run.id, _items(2, 3, 4, 5), max_jobs=3) == 1  # 2 is known; only one more fits
    assert queue.add(run.id, _items(6), max_jobs=3) == 0
    assert queue.total(run.id) == 3
    other = queue.start_run("https://docs.example/llms.txt", {})
    assert queue.add(other.id, _items(1)) == 1  # keys are per run


def test_claim_is_breadth_first_and_none_when_all_taken(queue):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(10, 11, depth=1))
    queue.add(run.id, _items(1, 2, depth=0))
    queue.add(run.id, _items(20, depth=2) + _items(3, depth=0))
    order = [queue.claim(run.id, "w1").key for _ in range(6)]
    assert order == ["k1", "k2", "k3", "k10", "k11", "k20"]
    assert queue.claim(run.id, "w2") is None


def test_claim_many_takes_expired_leases_first_then_pending_breadth_first(queue, clock):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(10, depth=1) + _items(1, 2, 3, depth=0))
    held = queue.claim(run.id, "dead")  # k1, never renewed
    clock.advance(61)
    taken = queue.claim_many(run.id, "w1", 3)
    assert [job.key for job in taken] == ["k1", "k2", "k3"] and taken[0].attempts == held.attempts + 1
    assert [job.key for job in queue.claim_many(run.id, "w1", 3)] == ["k10"]
    assert queue.claim_many(run.id, "w1", 3) == []


def test_finish_many_commits_a_group_and_refuses_a_lost_claim(queue, clock):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(1, 2, 3))
    first, second, third = queue.claim_many(run.id, "w1", 3)
    clock.advance(61)
    retaken = queue.claim(run.id, "w2")  # the lease on k1 ran out: w2 has it now
    assert retaken.key == first.key
    done = queue.finish_many([Outcome(first, JobState.DONE, {"url": "1"}),
                              Outcome(second, JobState.FAILED, {"url": "2"}),
                              Outcome(third, JobState.SKIPPED, None, change_note="same page")])
    assert done == [False, True, True]
    counts = queue.counts(run.id)
    assert counts[JobState.IN_PROGRESS] == 1 and counts[JobState.FAILED] == 1 and counts[JobState.SKIPPED] == 1
    assert queue.results(run.id) == [{"url": "2"}]
    with pytest.raises(ValueError):
        queue.finish_many([Outcome(retaken, JobState.PENDING, None)])


def test_claim_sets_attempts_and_carries_the_ref(queue):
    run = queue.start_run("src", {})
    queue.add(run.id, [("k", DocRef("https://docs.example/x", "X", "api", "a note"), 2)])
    job = queue.claim(run.id, "w1")
    assert job == Job(run.id, "k", DocRef("https://docs.example/x", "X", "api", "a note"), 2, 1, "w1")
    assert queue.counts(run.id)[JobState.IN_PROGRESS] == 1


def test_two_queues_on_one_file_never_claim_the_same_job(tmp_path, clock):
    path = tmp_path / "jobs.sqlite"
    with JobQueue(path, clock=clock.monotonic) as a, JobQueue(path, clock=clock.monotonic) as b:
        run = a.start_run("src", {})
        a.add(run.id, _items(*range(10)))
        taken = []
        while True:
            job_a, job_b = a.claim(run.id, "a"), b.claim(run.id, "b")
            taken += [job.key for job in (job_a, job_b) if job is not None]
            if job_a is None and job_b is None:
                break
        assert sorted(taken) == sorted(f"k{n}" for n in range(10))


def test_threads_sharing_one_queue_finish_every_job_once(queue):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(*range(100)))

    def drain(worker: str) -> list[str]:
        done = []
        while (job := queue.claim(run.id, worker)) is not None:
            if queue.finish(job, JobState.DONE, {"url": job.ref.url}):
                done.append(job.key)
        return done

    with ThreadPoolExecutor(8) as pool:
        finished = [key for keys in pool.map(drain, [f"t{n}" for n in range(8)]) for key in keys]
    assert sorted(finished) == sorted(f"k{n}" for n in range(100))


def _claim_and_finish(path: str, run_id: int, worker: str, start, report) -> None:
    """One worker process: claim and finish jobs until none are left, then report what it finished."""
    finished = []
    with JobQueue(Path(path)) as queue:
        start.wait(timeout=60)  # every process starts claiming at once
        while (job := queue.claim(run_id, worker)) is not None:
            digest = hashlib.sha256(job.key.encode() * 200_000).hexdigest()  # a little work while holding the job
            if queue.finish(job, JobState.DONE, {"url": job.ref.url, "worker": worker, "digest": digest}):
                finished.append(job.key)
    report.put(finished)


def test_four_processes_finish_every_job_exactly_once(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with JobQueue(path) as queue:
        run = queue.start_run("src", {})
        queue.add(run.id, _items(*range(200)))
    context = multiprocessing.get_context("spawn")
    start, report = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_claim_and_finish, args=(str(path), run.id, f"w{n}", start, report))
               for n in range(4)]
    try:
        for worker in workers:
            worker.start()
        finished = [key for _ in workers for key in report.get(timeout=120)]
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
                worker.join()
    assert all(worker.exitcode == 0 for worker in workers)
    assert len(finished) == 200 and set(finished) == {f"k{n}" for n in range(200)}
    with JobQueue(path) as queue:
        assert queue.counts(run.id)[JobState.DONE] == 200
        results = queue.results(run.id)
        assert len({r["url"] for r in results}) == len(results) == 200
    db = sqlite3.connect(path)
    assert db.execute("SELECT MAX(attempts) FROM jobs").fetchone()[0] == 1  # nobody claimed a job twice
    db.close()


def test_an_expired_lease_passes_the_job_on_and_the_first_finish_is_refused(queue, clock):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(1))
    job_a = queue.claim(run.id, "a")
    assert queue.claim(run.id, "b") is None  # lease still held
    clock.advance(61)
    job_b = queue.claim(run.id, "b")
    assert job_b is not None and job_b.key == job_a.key and job_b.attempts == 2
    assert queue.finish(job_b, JobState.DONE, {"url": "x", "by": "b"}) is True
    assert queue.finish(job_a, JobState.FAILED, {"url": "x", "by": "a"},
                        page=_page("k1", "x"), source="src") is False
    assert queue.results(run.id) == [{"url": "x", "by": "b"}]
    assert queue.previous("src", "k1") is None  # the refused finish wrote no page either


def test_a_late_finish_is_refused_even_before_the_new_holder_finishes(queue, clock):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(1))
    job_a = queue.claim(run.id, "a")
    clock.advance(61)
    queue.claim(run.id, "a")  # the same worker name claiming again is a new claim
    assert queue.finish(job_a, JobState.DONE, {"url": "x"}) is False


def test_renew_keeps_a_lease_alive(queue, clock):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(1, 2))
    job = queue.claim(run.id, "a")
    queue.claim(run.id, "other")
    clock.advance(50)
    queue.renew(run.id, "a")
    clock.advance(50)  # 100 s after the claim, 50 s after the renewal
    stolen = queue.claim(run.id, "b")
    assert stolen is not None and stolen.key == "k2"  # only the unrenewed lease expired
    assert queue.finish(job, JobState.DONE, {"url": "1"}) is True


def test_release_requeues_in_progress_jobs_and_undoes_their_attempt(queue):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(1, 2, 3))
    queue.claim(run.id, "a")
    queue.claim(run.id, "b")
    queue.claim(run.id, "b")
    assert queue.release(run.id, "b") == 2
    assert queue.counts(run.id)[JobState.PENDING] == 2
    assert queue.release(run.id) == 1
    again = queue.claim(run.id, "c")
    assert again.key == "k1" and again.attempts == 1


def test_retry_failed_requeues_only_under_max_attempts(queue, clock):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(1, 2))
    first, second = queue.claim(run.id, "a"), queue.claim(run.id, "a")
    queue.finish(first, JobState.FAILED, {"url": "1", "error": "timeout"})
    queue.finish(second, JobState.FAILED, {"url": "2", "error": "timeout"})
    assert queue.retry_failed(run.id, max_attempts=2) == 2
    retried = queue.claim(run.id, "a")
    assert retried.attempts == 2
    queue.finish(retried, JobState.FAILED, {"url": "1", "error": "timeout"})
    assert queue.retry_failed(run.id, max_attempts=2) == 0
    assert queue.counts(run.id) == {JobState.PENDING: 1, JobState.IN_PROGRESS: 0, JobState.DONE: 0,
                                    JobState.FAILED: 1, JobState.SKIPPED: 0, JobState.WAITING: 0}
    assert queue.active(run.id)


def test_finish_with_a_page_remembers_it_until_marked_removed(queue):
    run = queue.start_run("src", {})
    queue.add(run.id, _items(1, 2))
    one, two = queue.claim(run.id, "a"), queue.claim(run.id, "a")
    page = _page("k1", one.ref.url)
    assert queue.finish(one, JobState.DONE, {"url": one.ref.url}, change="added", page=page, source="src")
    assert queue.finish(two, JobState.DONE, {"url": two.ref.url}, page=_page("k2", two.ref.url))  # the run's source
    assert queue.previous("src", "k1") == page
    assert queue.previous("other", "k1") is None
    assert queue.known("src") == {"k1": one.ref.url, "k2": two.ref.url}
    assert queue.mark_removed("src", ["k1", "k9"]) == 1
    assert queue.previous("src", "k1") is None
    assert queue.known("src") == {"k2": two.ref.url}
    assert queue.changes(run.id) == [(one.ref.url, "added", "")]

    later = queue.start_run("src", {})
    queue.add(later.id, _items(1))
    job = queue.claim(later.id, "a")
    newer = _page("k1", job.ref.url, content_hash="h2")
    queue.finish(job, JobState.DONE, {"url": job.ref.url}, change="changed", change_note="new section", page=newer)
    assert queue.previous("src", "k1") == newer  # upserted, and no longer removed


def test_unfinished_run_is_the_latest_running_or_interrupted_one(queue):
    assert queue.unfinished_run() is None
    first = queue.start_run("src", {"depth": 2})
    assert queue.unfinished_run() == first
    queue.finish_run(first.id, "interrupted")
    found = queue.unfinished_run()
    assert found.id == first.id and found.status == "interrupted" and found.finished is not None
    assert found.options == {"depth": 2}
    queue.finish_run(first.id, "running")  # resumed
    assert queue.run(first.id).finished is None
    queue.finish_run(first.id, "completed")
    assert queue.unfinished_run() is None
    second = queue.start_run("src", {})
    queue.finish_run(second.id, "aborted")
    assert queue.unfinished_run() is None
    with pytest.raises(ValueError):
        queue.finish_run(second.id, "exploded")


def test_results_are_sorted_by_url_one_per_job_and_counts_include_zeros(queue):
    run = queue.start_run("src", {})
    assert queue.counts(run.id) == dict.fromkeys(JobState, 0)
    queue.add(run.id, [("b", _ref("b"), 0), ("c", _ref("c"), 0), ("a", _ref("a"), 0), ("d", _ref("d"), 0)])
    jobs = [queue.claim(run.id, "w") for _ in range(4)]
    states = {"a": JobState.DONE, "b": JobState.FAILED, "c": JobState.DONE, "d": JobState.SKIPPED}
    for job in reversed(jobs):
        queue.finish(job, states[job.key], {"url": job.ref.url, "state": states[job.key].value})
    assert [r["url"] for r in queue.results(run.id)] == [_ref(n).url for n in "abc"]
    assert queue.counts(run.id)[JobState.SKIPPED] == 1 and queue.counts(run.id)[JobState.PENDING] == 0
    assert not queue.active(run.id)
    with pytest.raises(ValueError):
        queue.finish(jobs[0], JobState.PENDING, None)


def test_topic_synthesis_round_trip(queue):
    assert queue.topic_synthesis("src", "guide") is None
    queue.save_topic_synthesis("src", "guide", "fp1", {"overview": "old"})
    queue.save_topic_synthesis("src", "guide", "fp2", {"overview": "nëw"})
    assert queue.topic_synthesis("src", "guide") == ("fp2", {"overview": "nëw"})
    assert queue.topic_synthesis("other", "guide") is None


def test_prune_keeps_the_newest_runs_and_the_unfinished_one(queue):
    runs = []
    for n in range(5):
        run = queue.start_run("src", {})
        queue.add(run.id, _items(n, n + 100))
        runs.append(run)
        if n != 4:
            queue.finish_run(run.id, "completed")
    assert queue.prune(keep_runs=2) == 6
    assert [queue.total(r.id) for r in runs] == [0, 0, 0, 2, 2]
    with pytest.raises(KeyError):
        queue.run(runs[0].id)
    assert queue.prune(keep_runs=0) == 2  # the unfinished latest run survives
    assert queue.total(runs[4].id) == 2 and queue.unfinished_run().id == runs[4].id


def test_a_garbage_file_is_a_config_error(tmp_path):
    path = tmp_path / "jobs.sqlite"
    path.write_bytes(b"this is not sqlite at all\n" * 100)
    with pytest.raises(ConfigError, match="is not a document-it job database"):
        JobQueue(path)


def test_another_programs_database_is_a_config_error(tmp_path):
    path = tmp_path / "jobs.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="is not a document-it job database"):
        JobQueue(path)


def test_a_newer_schema_is_a_config_error(tmp_path):
    path = tmp_path / "jobs.sqlite"
    JobQueue(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ConfigError, match="newer document-it") as caught:
        JobQueue(path)
    assert "\n" not in str(caught.value)


def test_data_survives_close_and_reopen(tmp_path, clock):
    path = tmp_path / "state" / "jobs.sqlite"
    with JobQueue(path, clock=clock.monotonic) as queue:
        run = queue.start_run("src", {"a": 1})
        queue.add(run.id, _items(1, 2))
        job = queue.claim(run.id, "w")
        queue.finish(job, JobState.DONE, {"url": job.ref.url}, page=_page("k1", job.ref.url))
    with JobQueue(path, clock=clock.monotonic) as queue:
        assert queue.unfinished_run() == run
        assert queue.counts(run.id)[JobState.DONE] == 1 and queue.counts(run.id)[JobState.PENDING] == 1
        assert queue.results(run.id) == [{"url": job.ref.url}]
        assert queue.previous("src", "k1").result == {"summary": "ünïcode"}


def test_a_damaged_database_is_a_one_line_config_error(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with JobQueue(path) as queue:
        run = queue.start_run("src", {})
        queue.add(run.id, [(f"k{i}", DocRef(f"https://d/{i}" + "x" * 200), 0) for i in range(400)])
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * 4096 and not Path(f"{path}-wal").exists()  # everything is in the main file
    data[4096:] = b"\xff" * (len(data) - 4096)  # keep the header page (the schema), wreck every table page
    path.write_bytes(bytes(data))

    with pytest.raises(ConfigError, match="damaged|not a document-it job database|cannot use"):
        with JobQueue(path) as queue:
            queue.unfinished_run()
            queue.results(run.id)


def test_a_redirect_target_stays_with_the_job_that_claimed_it(tmp_path):
    with JobQueue(tmp_path / "jobs.sqlite") as queue:
        run = queue.start_run("src", {})
        queue.add(run.id, [("a", DocRef("https://d/a"), 0), ("c", DocRef("https://d/c"), 0)])

        assert queue.claim_alias(run.id, "b", "https://d/b", owner="a")
        assert queue.claim_alias(run.id, "b", "https://d/b", owner="a")  # tried again after a resume
        assert not queue.claim_alias(run.id, "b", "https://d/b", owner="c")  # another page redirecting there
        assert not queue.claim_alias(run.id, "c", "https://d/c", owner="a")  # a page with its own job
