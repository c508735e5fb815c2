"""Run figures a user can watch: CPU and memory over the process tree, and progress lines in logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import psutil

from document_it.core.progress import RunProgress
from document_it.core.resources import ResourceSampler
from document_it.models import DocResult, DocStatus

ROOT = Path(__file__).resolve().parents[1]


def test_the_sampler_counts_worker_processes_and_their_memory():
    alone = psutil.Process().memory_info().rss
    child = subprocess.Popen([sys.executable, "-c", "import sys; data = b'x' * 50_000_000; "
                              "print('ready', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"  # its 50 MB are allocated (and touched)
        sampler = ResourceSampler(interval_s=60)  # sampled by hand, not by the thread
        sampler.sample()
        summary = sampler.summary()
    finally:
        child.kill()
        child.wait()
    assert summary["peak_processes"] >= 2 and summary["samples"] == 1
    assert summary["peak_rss_mb"] * 1e6 - alone > 45_000_000


def test_with_a_sampler_there_is_always_at_least_one_sample():
    with ResourceSampler(interval_s=60) as sampler:
        pass
    assert sampler.samples >= 1 and sampler.summary()["peak_rss_mb"] > 0


def test_a_run_summed_up_before_the_first_sample_still_has_its_figures():
    with ResourceSampler(interval_s=60) as sampler:
        summary = sampler.summary()  # as a run shorter than the interval does, before the sampler stops
    assert summary["samples"] == 1 and summary["peak_rss_mb"] > 0


def test_progress_goes_to_the_log_as_lines_when_stderr_is_not_a_terminal(caplog):
    ok = DocResult(url="u", title="t", topic="", status=DocStatus.COMPLETED)
    bad = DocResult(url="v", title="t", topic="", status=DocStatus.FAILED, error="fetch: HTTP 404")
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        with RunProgress(3, enabled=True, log_every_s=0) as progress:
            progress.advance(ok)
            progress.advance(bad)
            progress.advance(ok)
    lines = [r.getMessage() for r in caplog.records if r.name == "document_it.progress"]
    assert lines[0].startswith("1/3 pages") and lines[-1].startswith("3/3 pages finished: 2 completed, 1 failed")


def test_quiet_means_no_progress_lines(caplog):
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        with RunProgress(1, enabled=False, log_every_s=0) as progress:
            progress.advance(DocResult(url="u", title="t", topic="", status=DocStatus.COMPLETED))
    assert not [r for r in caplog.records if r.name == "document_it.progress"]


def test_json_logs_are_one_object_per_line_without_the_key(tmp_path):
    key = "sk-live-abcdef0123456789abcdef"
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--limit", "3", "--verbose", "--log-format", "json",
                           "--output-dir", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                            "DOCUMENT_IT_STATE_DIR": str(tmp_path / "state"),
                                            "DOCUMENT_IT_LLM": "extractive", "OPENAI_API_KEY": key})
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert entries and all({"time", "level", "logger", "message", "pid"} <= set(e) for e in entries)
    assert any(e["logger"] == "document_it.progress" and e["message"].startswith("3/3 pages") for e in entries)
    assert key not in done.stderr
