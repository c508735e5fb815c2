"""--batch-api end to end: the real openai SDK's files and batches clients against the simulator's Batch API, over
the bundled sample corpus (a copy): a whole nightly run through batches, kill -9 while a batch is out then
--resume, an expired batch finished live, a file over the size limit split in two, submit-only, strict, export
and import, and the mistakes a user can make."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from document_it.cli import main
from document_it.config import SAMPLE_SOURCE
from document_it.core.job_queue import JobQueue
from document_it.testing.llm_sim import SimServer

ROOT = Path(__file__).resolve().parents[1]
PAGES = 38  # the sample corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the sample corpus (a nightly test edits a page)."""
    shutil.copytree(Path(SAMPLE_SOURCE).parent, tmp_path / "site")
    return tmp_path / "site" / "llms.txt"


def _args(tmp_path: Path, corpus: Path, sim: SimServer, *extra: str) -> list[str]:
    return ["--quiet", "--source", str(corpus), "--output-dir", str(tmp_path / "out"),
            "--state-dir", str(tmp_path / "state"), "--llm", "openai", "--llm-base-url", sim.base_url, *extra]


def _run_json(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "run.json").read_text())


def _page_urls(sim: SimServer) -> dict[str, int]:
    """How often the prompts the simulator ran (live or in a batch) named each page of the corpus."""
    return {url: n for url, n in sim.stats()["urls"].items() if "/pages/" in url}


def test_a_nightly_run_goes_through_batches_at_half_price_each_page_once(tmp_path, corpus, capsys):
    with SimServer(latency_ms=20, ms_per_token=0, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--incremental")) == 0
        stats = sim.stats()
        assert stats["requests"] == 0  # nothing went live
        assert stats["batches_created"] == 2  # the pages, then the topic syntheses
        urls = _page_urls(sim)
        assert len(urls) == PAGES and set(urls.values()) == {1}  # every page read once
        run = _run_json(tmp_path)
        assert run["status"] == "completed" and run["documents"]["completed"] == PAGES
        assert run["stages"]["pages_parsed"] == PAGES  # a page that waited for its batch is not counted twice
        batch = run["llm"]["batch_api"]
        assert batch["requests"] == batch["lines"] == stats["batch_lines"] and batch["prompts_failed"] == 0
        assert batch["share_of_requests"] == 1.0 and batch["tokens_in"] == stats["batch_prompt_tokens"]
        assert batch["prompts_grouped"] > 0 and batch["lines"] < batch["prompts_answered"]  # pages share lines
        assert batch["cost_usd"] == pytest.approx(batch["cost_if_live_usd"] * 0.5, abs=1e-6)
        assert run["work"]["requests"] == batch["requests"] and run["work"]["prompt_tokens"] == batch["tokens_in"]
        report = (tmp_path / "out" / "report.md").read_text()
        assert "Batch API cost (at the batch price / live)" in report and "(50% off)" in report
        assert "Batch API:" in capsys.readouterr().out

        # the next night: nothing changed, so nothing is sent; then one page changes: one prompt for it
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--incremental")) == 0
        assert sim.stats()["batches_created"] == 2
        page = next((corpus.parent / "pages").rglob("*.md"))
        page.write_text(page.read_text() + "\n\nA new paragraph about retries and backoff.\n")
        sim.reset_stats()
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--incremental", "--batch-discount", "0.4")) == 0
        assert sum(_page_urls(sim).values()) == 1 and sim.stats()["requests"] == 0
        run = _run_json(tmp_path)
        assert run["changes"]["changed"] == 1 and run["documents"]["completed"] == PAGES
        batch = run["llm"]["batch_api"]
        assert batch["cost_usd"] == pytest.approx(batch["cost_if_live_usd"] * 0.6, abs=1e-6)


def test_kill_9_while_a_batch_is_out_then_resume_polls_the_same_batch(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, batch_in_progress_s=4.0, max_seconds=120) as sim:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), *_args(tmp_path, corpus, sim, "--batch-api", "--no-synthesis")],
            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while sim.stats()["batches_created"] < 1 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sim.stats()["batches_created"] == 1, proc.communicate()[1] if proc.poll() is not None else ""
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        with JobQueue(tmp_path / "state" / "jobs.sqlite") as queue:
            assert queue.unfinished_run() is not None
            assert len(queue.open_batches()) == 1  # recorded before the run waited

        assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state")]) == 0

        stats = sim.stats()
        assert stats["batches_created"] == 1 and stats["requests"] == 0  # polled, not submitted again
        assert set(_page_urls(sim).values()) == {1}
    run = _run_json(tmp_path)
    assert run["status"] == "completed" and run["documents"]["completed"] == PAGES
    assert run["queue"]["resumed"] is True


def test_an_expired_batch_has_its_pages_finished_live(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, batch_in_progress_s=1.0, batch_expire_s=0.6,
                   max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--no-synthesis", "--batch-size", "1")) == 0
        stats = sim.stats()
        batch = _run_json(tmp_path)["llm"]["batch_api"]
        assert batch["ended"] == {"expired": 1}
        assert 0 < batch["prompts_failed"] < PAGES and batch["prompts_answered"] == PAGES - batch["prompts_failed"]
        assert stats["requests"] == batch["prompts_failed"]  # the expired lines, asked live once each
        assert set(_page_urls(sim).values()) == {1} and len(_page_urls(sim)) == PAGES
    assert _run_json(tmp_path)["documents"]["completed"] == PAGES


def test_a_file_over_the_size_limit_is_split_in_two(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, max_seconds=120) as sim:
        # export first, to know the file's size; then a provider that takes at most three quarters of it
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "export", "--no-synthesis")) == 0
        exported = list((tmp_path / "out").glob("batch-input-*.jsonl"))
        assert len(exported) == 1
        size = exported[0].stat().st_size
    shutil.rmtree(tmp_path / "state")
    with SimServer(latency_ms=20, ms_per_token=0, batch_max_file_bytes=size * 3 // 4, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--no-synthesis")) == 0
        stats = sim.stats()
        batch = _run_json(tmp_path)["llm"]["batch_api"]
        assert stats["batches_created"] == 3 and batch["ended"] == {"failed": 1, "completed": 2}
        assert batch["split"] == 1 and batch["prompts_failed"] == 0 and stats["requests"] == 0
        assert set(_page_urls(sim).values()) == {1} and len(_page_urls(sim)) == PAGES


def test_submit_only_exits_at_once_and_resume_collects(tmp_path, corpus, capsys):
    # a server that copies the API without metadata: the batch is created without it, and found by its file
    with SimServer(latency_ms=20, ms_per_token=0, batch_no_metadata=True, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "submit-only", "--no-synthesis")) == 0
        out = capsys.readouterr().out
        assert f"{PAGES} waiting for batches" in out and "--resume" in out
        assert sim.stats()["batches_created"] == 1
        assert _run_json(tmp_path)["status"].startswith("waiting for batches")
        assert not (tmp_path / "out" / "report.md").exists()  # no report of pages that wait: the last one stays

        assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state")]) == 0
        assert sim.stats()["batches_created"] == 1 and sim.stats()["requests"] == 0
    assert _run_json(tmp_path)["documents"]["completed"] == PAGES
    assert (tmp_path / "out" / "report.md").exists()


def test_strict_asks_failed_lines_again_in_a_new_batch_never_live(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, batch_failed_lines=0.3, seed=7, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "strict", "--no-synthesis")) == 0
        stats = sim.stats()
        assert stats["requests"] == 0 and stats["batches_created"] >= 2 and stats["batch_failed_lines"] > 0
    batch = _run_json(tmp_path)["llm"]["batch_api"]
    assert batch["prompts_failed"] > 0 and _run_json(tmp_path)["documents"]["completed"] == PAGES


def test_export_then_import_an_output_file_completes_the_run(tmp_path, corpus, capsys):
    with SimServer(latency_ms=20, ms_per_token=0, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "export", "--no-synthesis")) == 0
        assert "--batch-api import" in capsys.readouterr().out
        (exported,) = (tmp_path / "out").glob("batch-input-*.jsonl")
        output = tmp_path / "results-of-the-batch.jsonl"  # as `vllm run-batch -o` writes it
        with output.open("w") as out:
            for raw in exported.read_text().splitlines():
                line = json.loads(raw)
                status, body = sim.answer(line["body"])
                out.write(json.dumps({"id": "x", "custom_id": line["custom_id"],
                                      "response": {"status_code": status, "body": body}, "error": None}) + "\n")
        sim.reset_stats()
        # the input file given by mistake: a one-line error, nothing asked live
        assert main(["--quiet", "--state-dir", str(tmp_path / "state"), "--batch-api", "import", str(exported)]) == 2
        assert "is not a batch output file" in capsys.readouterr().err and sim.stats()["requests"] == 0
        assert main(["--quiet", "--state-dir", str(tmp_path / "state"), "--batch-api", "import", str(output)]) == 0
        assert sim.stats()["requests"] == 0
    run = _run_json(tmp_path)
    assert run["status"] == "completed" and run["documents"]["completed"] == PAGES
    assert run["llm"]["batch_api"]["prompts_answered"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--batch-api", "nightly"], "'nightly' is not a mode"),
    (["--batch-api", "import"], "--batch-api import needs the output file"),
    (["--batch-api", "import", "missing.jsonl"], "missing.jsonl is not a file"),
    (["--batch-api", "--llm", "extractive"], "--batch-api needs an LLM"),
    (["--batch-api", "--llm", "simulate", "--parallelism-mode", "process"], "runs in sync, async or hybrid mode"),
    (["--batch-api", "--llm", "simulate", "--no-queue"], "drop --no-queue"),
    (["--batch-wait", "soon"], "--batch-wait must be a duration"),
    (["--batch-discount", "1.5"], "--batch-discount must be a fraction"),
])
def test_bad_batch_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    assert main([*argv, "--state-dir", str(tmp_path / "state"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_batch_still_running_at_the_next_nights_start_is_collected_not_resubmitted(tmp_path, corpus, capsys):
    with SimServer(latency_ms=20, ms_per_token=0, batch_in_progress_s=1.5, max_seconds=120) as sim:
        # night one submits and stops (its batch runs on); night two is a new run over the same site
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "submit-only", "--incremental", "--no-synthesis")) == 0
        assert sim.stats()["batches_created"] == 1 and "waiting for batches" in capsys.readouterr().out

        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--incremental", "--no-synthesis")) == 0
        stats = sim.stats()
        assert stats["batches_created"] == 1 and stats["requests"] == 0  # collected, not submitted again
        assert set(_page_urls(sim).values()) == {1}
    run = _run_json(tmp_path)
    assert run["status"] == "completed" and run["documents"]["completed"] == PAGES
    batch = run["llm"]["batch_api"]
    assert batch["batches"] == batch["lines"] == 0 and batch["requests"] > 0 and batch["prompts_answered"] == PAGES


def test_a_run_whose_batch_wait_runs_out_exits_5_and_resume_collects(tmp_path, corpus, capsys):
    with SimServer(latency_ms=20, ms_per_token=0, batch_in_progress_s=2.0, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--batch-wait", "0", "--no-synthesis")) == 5
        assert "still running" in capsys.readouterr().out
        assert _run_json(tmp_path)["status"].startswith("waiting for batches")
        assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state"), "--batch-wait", "60"]) == 0
        assert sim.stats()["batches_created"] == 1 and sim.stats()["requests"] == 0
    assert _run_json(tmp_path)["documents"]["completed"] == PAGES


def test_a_batch_the_provider_no_longer_knows_has_its_prompts_asked_again(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, batch_in_progress_s=30, max_seconds=120) as first:
        assert main(_args(tmp_path, corpus, first, "--batch-api", "submit-only", "--no-synthesis")) == 0
    with SimServer(latency_ms=20, ms_per_token=0, max_seconds=120) as other:  # another server, another account
        assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state"), "--llm-base-url",
                     other.base_url]) == 0
        assert other.stats()["requests"] == PAGES  # the lost batch's prompts, asked live once each
    run = _run_json(tmp_path)
    assert run["status"] == "completed" and run["documents"]["completed"] == PAGES
    assert run["llm"]["batch_api"]["prompts_failed"] == PAGES


def test_without_a_cache_a_resumed_run_reads_the_answers_the_ledger_kept(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--no-cache", "--no-synthesis", "--batch-wait", "0",
                          "--batch-size", "1")) == 5
        time.sleep(0.5)  # the simulator's batch finishes meanwhile (0.3 s)
        assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state")]) == 0
        assert sim.stats()["batches_created"] == 1 and sim.stats()["requests"] == 0
        assert set(_page_urls(sim).values()) == {1}
    assert _run_json(tmp_path)["documents"]["completed"] == PAGES


def test_a_long_pages_notes_for_a_sub_model_go_in_batches_too(tmp_path, corpus):
    long_page = corpus.parent / "pages" / "long.md"
    long_page.write_text("# A long page\n\n" + "\n\n".join(
        f"Section {n} explains how queue {n} retries failed jobs with exponential backoff, how the worker "
        f"pool {n} leases each job, and what happens when lease {n} runs out before the job is done." * 3
        for n in range(120)))
    corpus.write_text(corpus.read_text() + "\n## Long\n\n- [A long page](pages/long.md)\n")
    with SimServer(latency_ms=20, ms_per_token=0, context_tokens=4096, max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--no-synthesis", "--sub-model", "small-model",
                          "--limit", "40")) == 0
        assert sim.stats()["requests"] == 0  # the notes (--sub-model) and the pages: all in batches
    run = _run_json(tmp_path)
    assert run["documents"]["completed"] == PAGES + 1 and run["llm"]["batch_api"]["rounds"] >= 2
    with JobQueue(tmp_path / "state" / "jobs.sqlite") as queue:
        asked = [line.question for batch in queue.batches() for line in queue.lines_of(batch.id)]
    assert {"task": "chunk_notes"} in asked  # the long page was read in pieces, through batches


def test_a_batch_past_the_providers_queue_limit_is_sent_again_when_its_turn_comes(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, max_seconds=120) as sim:  # the file's size, to size the queue
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "export", "--no-synthesis")) == 0
        (exported,) = (tmp_path / "out").glob("batch-input-*.jsonl")
        tokens = exported.stat().st_size // 4
    shutil.rmtree(tmp_path / "state")
    # the queue takes 60 % of the run's tokens: the whole file is refused, then its second half waits its turn
    with SimServer(latency_ms=20, ms_per_token=0, batch_in_progress_s=2.0, batch_enqueued_tokens=tokens * 3 // 5,
                   max_seconds=120) as sim:
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--no-synthesis")) == 0
        stats = sim.stats()
        assert stats["requests"] == 0 and stats["batches_created"] == 4  # whole, two halves, the second again
        assert set(_page_urls(sim).values()) == {1} and len(_page_urls(sim)) == PAGES
    batch = _run_json(tmp_path)["llm"]["batch_api"]
    assert batch["ended"] == {"failed": 2, "completed": 2} and batch["prompts_failed"] == 0


def test_uploads_that_fail_for_a_while_are_tried_again_at_the_next_poll(tmp_path, corpus):
    with SimServer(latency_ms=20, ms_per_token=0, batch_fail_uploads=3, max_seconds=120) as sim:
        # --retries 1: two attempts per call, so the first send gives up and the lines wait for the next poll
        assert main(_args(tmp_path, corpus, sim, "--batch-api", "--no-synthesis", "--retries", "1")) == 0
        stats = sim.stats()
        assert stats["files_uploaded"] == 1 and stats["batches_created"] == 1 and stats["requests"] == 0
        assert set(_page_urls(sim).values()) == {1} and len(_page_urls(sim)) == PAGES
    assert _run_json(tmp_path)["documents"]["completed"] == PAGES


def test_import_with_no_exported_run_is_a_one_line_error(tmp_path, capsys):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"custom_id": "x", "response": {"status_code": 200, "body": {}}}) + "\n")
    assert main(["--batch-api", "import", str(answers), "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "goes on with an exported run, and none waits" in err and len(err.strip().splitlines()) == 1
