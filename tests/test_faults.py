"""A faulty, rate-limited server: every page still ends completed or failed with a reason, within the cap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import write_many

ROOT = Path(__file__).resolve().parent.parent
PAGES = 40


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCUMENT_IT_ALLOW_PRIVATE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--quiet", "--output-dir", str(tmp_path / "out"),
                           "--state-dir", str(tmp_path / "state"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)


def test_forty_pages_through_faults_and_429s(tmp_path):
    write_many(tmp_path / "site", PAGES)
    cap = 8
    with SiteServer(tmp_path / "site", max_seconds=240) as site, \
            SimServer(latency_ms=30, ms_per_token=0.05, fail_429=0.15, fault_retry_after_s=0.2, fail_500=0.05,
                      hang=0.02, hang_seconds=30, malformed=0.03, seed=7, max_seconds=240) as sim:
        done = _run(["--source", site.url("llms.txt"), "--llm-base-url", sim.base_url, "--llm", "openai",
                     "--max-concurrency", str(cap), "--request-timeout", "1", "--parallelism-mode", "hybrid",
                     "--batch-size", "1"],  # one request per prompt: ~200 requests meet the faults
                    tmp_path)
        stats = sim.stats()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 3), done.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(lines) == PAGES
    assert all(r["status"] == "completed" or r["error"] for r in lines)
    completed = sum(r["status"] == "completed" for r in lines)
    assert completed >= 0.95 * PAGES
    assert stats["max_in_flight"] <= cap
    assert sum(stats["faults"].values()) > 10 and stats["faults"]["429"] > 0 and stats["faults"]["hang"] > 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["llm"]["rate_limited"] == stats["faults"]["429"]
    assert run["llm"]["attempts"] == stats["attempts"]
    assert run["llm"]["retries"] > 0 and run["llm"]["window"]["cuts"] >= 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "rate-limited" in report and "latency p50" in report


@pytest.mark.parametrize("mode", ["sync", "process"])  # process: each worker has its share of the budget
def test_budget_stops_new_pages_and_exits_3(tmp_path, mode):
    write_many(tmp_path / "site", 12)
    with SiteServer(tmp_path / "site", max_seconds=120) as site, \
            SimServer(latency_ms=5, ms_per_token=0, max_seconds=120) as sim:
        done = _run(["--source", site.url("llms.txt"), "--llm-base-url", sim.base_url, "--llm", "openai",
                     "--parallelism-mode", mode, "--analysis-workers", "2", "--max-concurrency", "2",
                     "--max-workers", "2", "--max-tokens", "3000"], tmp_path)
    assert done.returncode == 3, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    skipped = [r for r in lines if r["status"] == "failed"]
    assert skipped and all(r["error"].startswith("not analysed: token budget reached") for r in skipped)
    assert any(r["status"] == "completed" for r in lines)
    assert "failed: " in done.stdout
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "completed" and run["documents"]["not_reached"] == 0  # every page is accounted for
