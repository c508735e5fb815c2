"""The pre-flight check: the model a self-hosted server serves is found without --model, and a --model it
does not have is one clear line naming what it has."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.analysis.endpoint import check_endpoint, pick_model
from document_it.config import LLMKind, Settings
from document_it.errors import LLMError
from document_it.testing.llm_sim import SimServer

ROOT = Path(__file__).resolve().parent.parent
SERVED = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"  # llama.cpp names the model by its file


def _settings(base_url: str | None, **extra) -> Settings:
    return Settings(llm=LLMKind.OPENAI, llm_base_url=base_url, **extra)


def test_with_no_model_given_the_first_model_the_server_lists_is_used(caplog):
    with SimServer(latency_ms=1, ms_per_token=0, model=SERVED) as sim, caplog.at_level(logging.WARNING):
        checked = check_endpoint(_settings(sim.base_url, model_given=False))
    assert checked.model == SERVED
    assert any("no --model given" in r.getMessage() and SERVED in r.getMessage() for r in caplog.records)


def test_a_model_the_server_has_is_kept():
    with SimServer(latency_ms=1, ms_per_token=0, model="llama3.1:8b") as sim:
        assert check_endpoint(_settings(sim.base_url, model="llama3.1:8b")).model == "llama3.1:8b"


def test_a_given_model_the_server_lacks_is_one_line_naming_what_it_serves():
    with SimServer(latency_ms=1, ms_per_token=0, model=SERVED) as sim:
        with pytest.raises(LLMError) as caught:
            check_endpoint(_settings(sim.base_url, model="gpt-4o"))
    message = str(caught.value)
    assert "no model 'gpt-4o'" in message and SERVED in message and "\n" not in message


def test_openai_itself_keeps_the_default_model_and_long_lists_are_cut():
    openai = _settings(None, api_key="sk-test-0123456789", model_given=False)
    assert pick_model(openai, ["babbage-002", "gpt-4o"], "api.openai.com") == "gpt-4o-mini"
    with pytest.raises(LLMError, match=r"m0, m1, .*m9 and 5 more"):
        pick_model(_settings("http://127.0.0.1:1/v1", model="x"), [f"m{i}" for i in range(15)], "127.0.0.1:1")


def test_the_cli_needs_only_the_base_url(tmp_path):
    """No key, no model, no structured-output flag: the run uses the model the server lists."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCUMENT_IT_ALLOW_PRIVATE": "1"}
    with SimServer(latency_ms=1, ms_per_token=0, model=SERVED) as sim:
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--quiet", "--limit", "2",
                               "--llm-base-url", sim.base_url, "--output-dir", str(tmp_path / "out"),
                               "--state-dir", str(tmp_path / "state")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["model"] == SERVED and run["documents"]["completed"] == 2
    assert run["llm"]["structured_output"]["method"] == "json_schema"
    assert f"using '{SERVED}'" in done.stderr


def test_a_server_still_loading_its_model_is_waited_for(caplog):
    """llama.cpp's server answers 503 "Loading model" until the model is in memory."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Loading(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.server.gets += 1  # type: ignore[attr-defined]
            loading = self.server.gets <= 2  # type: ignore[attr-defined]
            body = (b'{"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}' if loading
                    else json.dumps({"object": "list", "data": [{"id": SERVED, "object": "model"}]}).encode())
            self.send_response(503 if loading else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Loading)
    server.gets = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with caplog.at_level(logging.WARNING):
            checked = check_endpoint(_settings(f"http://127.0.0.1:{server.server_address[1]}/v1", model_given=False))
    finally:
        server.shutdown()
        server.server_close()
    assert checked.model == SERVED and server.gets >= 3  # type: ignore[attr-defined]
    assert any("not ready (HTTP 503" in r.getMessage() and "Loading model" in r.getMessage() for r in caplog.records)
