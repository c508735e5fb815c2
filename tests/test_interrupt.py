"""Stopping a run (SIGTERM, as a scheduler does) keeps what finished and leaves no process behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from document_it.testing.llm_sim import SimServer

from _procs import alive, children

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", ["process", "hybrid"])
def test_sigterm_mid_run_keeps_finished_pages_and_stops_every_worker(mode, tmp_path):
    out = tmp_path / "out"
    with SimServer(latency_ms=300, ms_per_token=0, max_seconds=120) as sim:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--quiet", "--output-dir", str(out), "--llm", "openai",
             "--llm-base-url", sim.base_url, "--parallelism-mode", mode, "--max-concurrency", "4",
             "--analysis-workers", "2"],
            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCUMENT_IT_ALLOW_PRIVATE": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        results = out / "results.jsonl"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") >= 2):
            time.sleep(0.1)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # 128 + SIGTERM
    assert "Traceback" not in err and "interrupted" in err
    lines = results.read_text().splitlines()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert run["documents"]["total"] == len(lines) >= 2 and run["documents"]["not_reached"] > 0
    assert (out / "report.md").read_text().count("**[") == len(lines)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)]
