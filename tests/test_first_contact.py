"""Failures that speak at once: an error of our own stops the run before anything is sent, and a server
whose first replies are all unusable in the same way stops it within a few requests, not after --max-wait.
A server that serves some requests and fails others keeps the retries and the breaker."""

from __future__ import annotations

import json
import re
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from document_it.analysis import providers
from document_it.cli import main
from document_it.core.first_contact import FirstContact
from document_it.testing.llm_sim import SimServer

from _corpus import write_corpus

_HTML = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
         b"</h1></center><hr><center>nginx</center></body></html>")


# -- the policy alone -----------------------------------------------------------------------------
def test_alike_failures_over_two_requests_say_stop() -> None:
    watch = FirstContact(attempts=5, requests=2)
    verdicts = [watch.failure(1, "HTTP 5xx", "502 Bad Gateway") for _ in range(4)]
    assert verdicts == [None] * 4  # one request's retries alone are not enough
    verdict = watch.failure(2, "HTTP 5xx", "502 Bad Gateway")
    assert verdict is not None and "first 5 attempts (2 requests)" in verdict and "HTTP 5xx (502 Bad Gateway)" in verdict


def test_one_usable_reply_disarms_it_for_good() -> None:
    watch = FirstContact(attempts=2, requests=1)
    watch.success()
    assert all(watch.failure(n, "not JSON", "x") is None for n in range(10))


def test_failures_of_different_kinds_are_left_to_the_retries() -> None:
    watch = FirstContact(attempts=3, requests=1)
    assert watch.failure(1, "HTTP 5xx", "a") is None
    assert watch.failure(2, "no connection", "b") is None
    assert all(watch.failure(3, "HTTP 5xx", "a") is None for _ in range(10))


# -- end to end, over loopback --------------------------------------------------------------------
class _Broken(BaseHTTPRequestHandler):
    """Lists a model, then answers every chat request with the same unusable reply."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._reply(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode(),
                    "application/json")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.posts += 1  # type: ignore[attr-defined]
        status, body, ctype = self.server.reply  # type: ignore[attr-defined]
        self._reply(status, body, ctype)

    def _reply(self, status: int, body: bytes, ctype: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # the run stopped at once and hung up on the requests under way; the server's traceback would land
            # on the same stderr as the run's one line (how often depends on the machine's load)
            pass


@pytest.fixture
def broken() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    server.daemon_threads = True
    server.posts, server.lock = 0, threading.Lock()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    write_corpus(root)
    return root / "llms.txt"


def _argv(corpus: Path, tmp_path: Path, base_url: str, mode: str = "hybrid", model: str = "gpt-4o-mini") -> list[str]:
    return ["--source", str(corpus), "--limit", "6", "--output-dir", str(tmp_path / "out"), "--quiet", "--model", model,
            "--llm-base-url", base_url, "--parallelism-mode", mode, "--max-wait", "120", "--retries", "3"]


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("reply, shown", [
    ((200, _HTML, "text/html"), "not JSON"),
    ((502, _HTML, "text/html"), "HTTP 5xx"),
    ((404, b'{"error": {"message": "no route /v1/chat/completions"}}', "application/json"), "HTTP 404"),
], ids=["html-200", "html-502", "always-404"])
@pytest.mark.parametrize("mode", ["sync", "hybrid"])
def test_a_server_that_answers_nothing_usable_stops_the_run_in_a_few_requests(
        reply, shown, mode, broken, corpus, tmp_path, capsys) -> None:
    broken.reply = reply
    started = time.monotonic()
    code = main(_argv(corpus, tmp_path, f"http://127.0.0.1:{broken.server_address[1]}/v1", mode, "m"))
    elapsed = time.monotonic() - started
    line = _error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("document-it: error: the LLM at 127.0.0.1:") and "is not usable" in line
    assert shown in line and "<html" not in line.lower()
    if reply[1] == _HTML:
        assert "502 Bad Gateway nginx" in line  # what the replies were, without their tags
    # 6 pages of 5 prompts, 4 attempts each, would be 120 requests; the verdict comes after about 5
    assert broken.posts <= 25
    assert elapsed < 60  # nowhere near --max-wait (120 s) per page


def test_in_process_mode_a_worker_that_meets_such_a_server_stops_the_run(broken, corpus, tmp_path, capsys) -> None:
    broken.reply = (502, _HTML, "text/html")
    code = main(_argv(corpus, tmp_path, f"http://127.0.0.1:{broken.server_address[1]}/v1", "process", "m")
                + ["--analysis-workers", "2"])
    line = _error_line(capsys.readouterr().err)
    assert code == 2 and "is not usable" in line and "502 Bad Gateway nginx" in line
    assert broken.posts <= 40  # each worker process finds out for itself, after about 5 requests


def test_a_structured_output_method_the_server_refuses_stops_the_run_at_once(corpus, tmp_path, capsys) -> None:
    with SimServer(latency_ms=5, ms_per_token=0, no_json_schema=True, max_seconds=120) as sim:
        code = main(_argv(corpus, tmp_path, sim.base_url) + ["--structured-output", "json_schema"])
        attempts = sim.stats()["attempts"]
    line = _error_line(capsys.readouterr().err)
    assert code == 2 and "does not take --structured-output json_schema" in line and "auto" in line
    assert attempts <= 25  # not every prompt of every page


def test_a_server_that_fails_some_requests_and_serves_others_keeps_retrying(corpus, tmp_path, capsys) -> None:
    with SimServer(latency_ms=5, ms_per_token=0, fail_500=0.3, seed=3, max_seconds=120) as sim:
        code = main(_argv(corpus, tmp_path, sim.base_url) + ["--tasks", "summary"])
        stats = sim.stats()
    assert code == 0, capsys.readouterr().err
    assert stats["faults"]["500"] > 0 and stats["ok"] > 0


def test_an_error_of_our_own_before_sending_stops_the_run_at_once(corpus, tmp_path, capsys, monkeypatch) -> None:
    """As when openai 3 was handed an httpx.Timeout where it wants an httpx2.Timeout: the client is built wrong."""
    real = providers.httpx2
    monkeypatch.setattr(providers, "httpx2", types.SimpleNamespace(
        AsyncClient=real.AsyncClient, AsyncHTTPTransport=real.AsyncHTTPTransport, Limits=real.Limits,
        Timeout=lambda *args, **kwargs: "60 seconds"))
    with SimServer(latency_ms=5, ms_per_token=0, max_seconds=120) as sim:
        code = main(_argv(corpus, tmp_path, sim.base_url))
        stats = sim.stats()
    line = _error_line(capsys.readouterr().err)
    assert code == 2
    assert "the request to the LLM could not be built, so nothing was sent" in line
    assert re.search(r"\((builtins\.)?(TypeError|ValueError)|openai\.", line), line
    assert stats["attempts"] == 0  # nothing reached the server: no retries, no breaker


def test_verbose_logs_every_retry_with_its_reason(corpus, tmp_path, capsys) -> None:
    with SimServer(latency_ms=5, ms_per_token=0, fail_500=0.3, seed=3, max_seconds=120) as sim:
        code = main(_argv(corpus, tmp_path, sim.base_url) + ["--tasks", "summary", "--verbose"])
        faults = sim.stats()["faults"]["500"]
    err = capsys.readouterr().err
    assert code == 0
    retries = [line for line in err.splitlines() if re.search(r"retrying \w+ request \d+ \(attempt", line)]
    assert len(retries) >= faults > 0
    assert all("answered HTTP 50" in line and "next in" in line for line in retries)


def test_the_failed_list_gives_each_page_its_reason(tmp_path, capsys) -> None:
    index = write_corpus(tmp_path / "site", extra_links=["", "## Broken", "", "- [Gone](pages/gone.html): missing"])
    code = main(["--source", str(index), "--output-dir", str(tmp_path / "out"), "--quiet", "--tasks", "summary"])
    out = capsys.readouterr().out
    failed = [line.strip() for line in out.splitlines() if line.strip().startswith("failed:")]
    assert code == 3 and len(failed) == 1
    assert failed[0].startswith("failed: ") and "pages/gone.html — fetch: " in failed[0] and "not found" in failed[0]
