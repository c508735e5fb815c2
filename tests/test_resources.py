"""Run figures a user can watch: CPU and memory over the process tree, and progress lines in logs."""

from __future__ import annotations

import subprocess
import sys

import psutil

from document_it.core.progress import RunProgress
from document_it.core.resources import ResourceSampler
from document_it.models import DocResult, DocStatus


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


def test_progress_goes_to_the_log_as_lines_when_stderr_is_not_a_terminal(capsys):
    ok = DocResult(url="u", title="t", topic="", status=DocStatus.COMPLETED)
    bad = DocResult(url="v", title="t", topic="", status=DocStatus.FAILED, error="fetch: HTTP 404")
    with RunProgress(3, enabled=True, log_every_s=0) as progress:
        progress.advance(ok)
        progress.advance(bad)
        progress.advance(ok)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("document-it:")]
    assert lines[0].startswith("document-it: 1/3 pages") and lines[-1].startswith("document-it: 3/3 pages, 1 failed")


def test_quiet_means_no_progress_lines(capsys):
    with RunProgress(1, enabled=False, log_every_s=0) as progress:
        progress.advance(DocResult(url="u", title="t", topic="", status=DocStatus.COMPLETED))
    assert "document-it:" not in capsys.readouterr().err
