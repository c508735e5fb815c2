"""The API key never appears in anything a run writes or prints: logs, errors, results, report, run.json,
the cache (keys and values) or the job database. A marker key is grepped for in every byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from document_it.testing.llm_sim import SimServer

ROOT = Path(__file__).resolve().parents[2]
MARKER = "sk-MARKERkey0123456789abcdefXYZ"


def _every_byte(folder: Path) -> list[tuple[Path, bytes]]:
    return [(path, path.read_bytes()) for path in folder.rglob("*") if path.is_file()]


def test_a_marker_key_is_in_no_output_log_cache_or_job_database(tmp_path, corpus_site):
    with SimServer(latency_ms=5, ms_per_token=0, api_key=MARKER, max_seconds=120) as sim:
        base = sim.base_url
        env = {**os.environ, "OPENAI_API_KEY": MARKER, "DOCUMENT_IT_ALLOW_PRIVATE": "1"}
        done = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--source", corpus_site.url("llms.txt"), "--llm", "openai",
             "--llm-base-url", base, "--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"),
             "--enable-queue", "--verbose", "--log-format", "json"],
            capture_output=True, text=True, timeout=180, env=env)
        stats = sim.stats()
    assert stats["ok"] > 0, done.stderr[-1500:]  # the key was sent to the server: it was in play all along
    assert done.returncode in (0, 3), done.stderr[-2000:]
    files = _every_byte(tmp_path / "out") + _every_byte(tmp_path / "state")
    assert any(path.name == "jobs.sqlite" for path, _ in files) and any("cache" in str(p) for p, _ in files)
    for path, data in files:
        assert MARKER.encode() not in data, path
        assert b"proxypass" not in data, path
    for stream in (done.stdout, done.stderr):
        assert MARKER not in stream and "proxypass" not in stream


def test_credentials_in_the_base_url_are_never_printed(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--llm", "openai", "--llm-base-url",
         f"http://proxyuser:proxypass@127.0.0.1:{port}/v1", "--output-dir", str(tmp_path / "out"),
         "--state-dir", str(tmp_path / "state"), "--allow-private", "--verbose", "--limit", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": MARKER})
    assert done.returncode == 2 and "document-it: error:" in done.stderr
    assert "proxypass" not in done.stderr + done.stdout and MARKER not in done.stderr + done.stdout
    for path, data in _every_byte(tmp_path):
        assert b"proxypass" not in data and MARKER.encode() not in data, path
