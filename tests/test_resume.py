"""Crash-resume and stopping: kill -9 mid-run (a crawl or a one-shot run) then --resume, graceful SIGTERM,
the state-dir lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from document_it.cli import main
from document_it.core.job_queue import JobQueue
from document_it.core.runlock import RunLock
from document_it.testing.docsite import write_docsite
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _procs import alive, children

ROOT = Path(__file__).resolve().parents[1]
PAGES = 60
SITE_PAGES = PAGES + 4 + 1  # content pages, four section indexes, the home page


def _start(tmp_path: Path, site: SiteServer, sim: SimServer, *extra: str, source: str = "docs/index.html"
           ) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--quiet", "--source", site.url(source),
         "--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"), "--llm", "openai",
         "--llm-base-url", sim.base_url, "--max-concurrency", "4", "--batch-size", "1", *extra],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCUMENT_IT_ALLOW_PRIVATE": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach {count} results (exit {proc.poll()})")


def _kill_9(proc: subprocess.Popen) -> None:
    """kill -9 the run alone, as a crash would; the worker processes it started must not outlive it."""
    below = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in below):
        time.sleep(0.1)
    orphans = [pid for pid in below if alive(pid)]
    for pid in orphans:  # leave nothing behind, then fail
        os.kill(pid, signal.SIGKILL)
    assert not orphans, f"{len(orphans)} worker processes outlived the killed run"


def _urls(path: Path) -> list[str]:
    return [json.loads(line)["url"] for line in path.read_text().splitlines() if line.strip()]


def _resume(tmp_path: Path, sim: SimServer) -> int:
    return main(["--resume", "--quiet", "--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"),
                 "--llm", "openai", "--llm-base-url", sim.base_url, "--max-concurrency", "4", "--batch-size", "1"])


def _done_before(tmp_path: Path) -> set[str]:
    with JobQueue(tmp_path / "state" / "jobs.sqlite") as queue:
        run = queue.unfinished_run()
        assert run is not None, "the killed run should be resumable"
        return {result["url"] for result in queue.results(run.id)}


def _write_index(site: SiteServer, root: Path, paths: list[str]) -> str:
    """An llms.txt listing every page: a one-shot run over a known list of pages, not a crawl."""
    (root / "llms.txt").write_text("# Skiff manual\n\n## Pages\n\n"
                                   + "".join(f"- [{path}]({site.url(path)})\n" for path in paths))
    return "llms.txt"


@pytest.mark.parametrize("source", ["crawl", "one-shot"])
@pytest.mark.parametrize("mode", ["hybrid", "process"])
def test_kill_9_mid_run_then_resume_analyses_each_page_once(tmp_path, monkeypatch, mode, source):
    monkeypatch.setenv("DOCUMENT_IT_ALLOW_PRIVATE", "1")
    written = write_docsite(tmp_path / "site", PAGES)
    results = tmp_path / "out" / "results.jsonl"
    with SiteServer(tmp_path / "site", max_seconds=240) as site, \
            SimServer(latency_ms=120, ms_per_token=0, max_seconds=240) as sim:
        start = "docs/index.html" if source == "crawl" else _write_index(site, tmp_path / "site", written)
        proc = _start(tmp_path, site, sim, "--parallelism-mode", mode, "--analysis-workers", "2", source=start)
        try:
            _wait_for_lines(results, SITE_PAGES // 2, proc)
        finally:
            _kill_9(proc)
        finished = _done_before(tmp_path)
        assert SITE_PAGES // 2 <= len(finished) < SITE_PAGES
        sim.reset_stats()

        assert _resume(tmp_path, sim) == 0

        asked_again = set(sim.stats()["urls"]) & finished
    assert not asked_again, f"{len(asked_again)} pages finished before the kill were sent to the LLM again"
    urls = _urls(results)
    assert len(urls) == len(set(urls)) == SITE_PAGES  # every page exactly once
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "completed" and run["queue"]["resumed"] is True
    assert run["documents"]["completed"] == SITE_PAGES and run["documents"]["not_reached"] == 0
    assert (tmp_path / "out" / "report.md").read_text().count("**[") == SITE_PAGES


@pytest.mark.parametrize("grace", ["30", "0"])  # pages under way finish / are cut off and requeued
def test_sigterm_stops_gracefully_and_resume_finishes_the_run(tmp_path, monkeypatch, grace):
    monkeypatch.setenv("DOCUMENT_IT_ALLOW_PRIVATE", "1")
    write_docsite(tmp_path / "site", PAGES)
    results = tmp_path / "out" / "results.jsonl"
    with SiteServer(tmp_path / "site", max_seconds=240) as site, \
            SimServer(latency_ms=150, ms_per_token=0, max_seconds=240) as sim:
        proc = _start(tmp_path, site, sim, "--grace", grace)
        try:
            _wait_for_lines(results, 10, proc)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                _kill_9(proc)
        assert proc.returncode == 143, err
        assert "Traceback" not in err and "--resume" in err
        stopped = json.loads((tmp_path / "out" / "run.json").read_text())
        assert stopped["status"] == "interrupted" and stopped["documents"]["not_reached"] > 0
        # pages under way either finished or went back to the queue: nothing is left half-done
        assert stopped["queue"]["jobs"]["in_progress"] == 0
        assert len(_urls(results)) == stopped["documents"]["total"]

        monkeypatch.delenv("DOCUMENT_IT_ALLOW_PRIVATE")
        monkeypatch.chdir(tmp_path / "site")  # the default ./output would be the wrong place
        # no flags but --resume: the run's own LLM endpoint, output folder and --allow-private come back
        assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state")]) == 0
    assert not (tmp_path / "site" / "output").exists()
    urls = _urls(results)
    assert len(urls) == len(set(urls)) == SITE_PAGES
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["provider"] == "openai" and run["queue"]["resumed"] is True


def test_resume_with_nothing_to_resume_is_a_clear_error(tmp_path, capsys):
    assert main(["--resume", "--quiet", "--state-dir", str(tmp_path / "state"),
                 "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and err.count("\n") == 1


def test_a_second_run_on_the_same_state_dir_is_refused(tmp_path, capsys):
    write_docsite(tmp_path / "site", 8)
    with SiteServer(tmp_path / "site", max_seconds=60) as site, RunLock(tmp_path / "state"):
        code = main(["--source", site.url("docs/index.html"), "--quiet", "--state-dir", str(tmp_path / "state"),
                     "--output-dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and "--state-dir" in err


def test_a_stale_lock_from_a_killed_run_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "run.lock").write_text(f"{dead.pid}\n")
    write_docsite(tmp_path / "site", 8)
    with SiteServer(tmp_path / "site", max_seconds=60) as site:
        code = main(["--source", site.url("docs/index.html"), "--quiet", "--state-dir", str(tmp_path / "state"),
                     "--output-dir", str(tmp_path / "out")])
    assert code == 0
    assert len(_urls(tmp_path / "out" / "results.jsonl")) == 8 + 4 + 1


def _one_shot(tmp_path: Path, site: SiteServer, written: list[str]) -> int:
    source = site.url(_write_index(site, tmp_path / "site", written))
    return main(["--source", source, "--quiet", "--state-dir", str(tmp_path / "state"),
                 "--output-dir", str(tmp_path / "out")])


def test_a_one_shot_run_beside_a_run_that_holds_the_state_dir_goes_on_in_a_temporary_database(tmp_path, caplog,
                                                                                              monkeypatch):
    monkeypatch.setenv("DOCUMENT_IT_ALLOW_PRIVATE", "1")
    written = write_docsite(tmp_path / "site", 8)
    with SiteServer(tmp_path / "site", max_seconds=60) as site, RunLock(tmp_path / "state"):
        assert _one_shot(tmp_path, site, written) == 0  # a crawl would be refused (above); a one-shot run is not
    assert "temporary database" in caplog.text
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "queue" not in run and run["documents"]["completed"] == len(written)


def test_a_one_shot_run_leaves_an_unfinished_crawl_resumable(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("DOCUMENT_IT_ALLOW_PRIVATE", "1")
    written = write_docsite(tmp_path / "site", 8)
    with JobQueue(tmp_path / "state" / "jobs.sqlite") as queue:  # as a killed crawl leaves it
        crawl = queue.start_run("https://docs.example/", {"crawl": {"start": "https://docs.example/"}})
    with SiteServer(tmp_path / "site", max_seconds=60) as site:
        assert _one_shot(tmp_path, site, written) == 0
    assert "--resume continues it" in caplog.text
    with JobQueue(tmp_path / "state" / "jobs.sqlite") as queue:
        assert queue.unfinished_run() == crawl
    assert "queue" not in json.loads((tmp_path / "out" / "run.json").read_text())
