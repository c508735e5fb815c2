"""LLM servers that misbehave on purpose: every reply is bounded in size and time, and each ends as the
page's failure with a reason, never a crash or a hang. The servers are started here, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from document_it.config import LLMKind, Mode, Settings
from document_it.run.pipeline import run

_MB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a body without Content-Length ends when the connection closes

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._reply(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts += 1  # type: ignore[attr-defined]
        getattr(self, f"_{self.server.behaviour}")()  # type: ignore[attr-defined]

    def _reply(self, code: int, body: bytes, ctype: str = "application/json", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, chunks, pause: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what we want

    def _huge(self) -> None:  # 100 MB of one answer
        self._stream([b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",'
                      b'"content":"'] + [b"a" * _MB] * 100 + [b'"}}]}'])

    def _endless(self) -> None:  # a byte every 50 ms, for ever (at most 60 s here)
        self._stream((b" " for _ in range(1200)), pause=0.05)

    def _deep(self) -> None:  # JSON nested 10,000 deep
        self._reply(200, b'{"choices":' + b"[" * 10_000 + b"]" * 10_000 + b"}")

    def _bad_utf8(self) -> None:
        self._reply(200, b'{"choices":[{"message":{"content":"\xff\xfe\xc3\x28"}}]}')

    def _html(self) -> None:
        self._reply(200, b"<html><body>Service temporarily unavailable</body></html>", ctype="text/html")

    def _echo_key(self) -> None:  # a careless proxy: the key it was sent, whole, in its error
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        self._reply(401 if self.server.posts % 2 else 500,  # type: ignore[attr-defined]
                    json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode())

    def _redirect(self) -> None:  # elsewhere (still loopback: nothing here leaves 127.0.0.0/8)
        self._reply(302, b"", Location="http://127.0.0.2:9/v1/chat/completions")


@pytest.fixture
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    server.posts = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("behaviour, fragment", [
    ("huge", "larger than 16 MB"), ("endless", "took longer than"), ("deep", ""), ("bad_utf8", ""),
    ("html", ""), ("redirect", "302"),
])
def test_a_hostile_reply_fails_the_page_with_a_reason(tmp_path, corpus_site, hostile, behaviour, fragment):
    hostile.behaviour = behaviour
    base = f"http://127.0.0.1:{hostile.server_address[1]}/v1"
    # the attempt's time limit is what stops the endless reply; for the others it is not what is tested, and is
    # far beyond what reading 16 MB (or less) takes on a busy machine, so each fails for its own reason
    timeout = 2 if behaviour == "endless" else 30
    summary = run(Settings(source=corpus_site.url("llms.txt"), allow_private=True, state_dir=tmp_path / "state",
                           output_dir=tmp_path / "out", mode=Mode.ASYNC, quiet=True, llm=LLMKind.OPENAI,
                           llm_base_url=base, model="m", retries=0, request_timeout=timeout, max_wait=5, limit=1,
                           no_cache=True))
    assert summary["documents"]["failed"] == 1 and summary["documents"]["completed"] == 0
    line = json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    assert line["status"] == "failed" and line["error"] and fragment in line["error"], line["error"]
    assert "unexpected" not in line["error"]  # a reply we could not read is reported as such, not as a bug


def test_a_server_that_echoes_the_key_gets_it_into_no_output_or_log(tmp_path, corpus_site, hostile):
    marker = "sk-ECHOEDkey0123456789abcdefXYZ"
    hostile.behaviour = "echo_key"
    base = f"http://127.0.0.1:{hostile.server_address[1]}/v1"
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--source", corpus_site.url("llms.txt"), "--llm", "openai",
         "--llm-base-url", base, "--model", "m", "--retries", "1", "--output-dir", str(tmp_path / "out"),
         "--state-dir", str(tmp_path / "state"), "--verbose", "--log-format", "json", "--limit", "2",
         "--max-wait", "5"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OPENAI_API_KEY": marker, "DOCUMENT_IT_ALLOW_PRIVATE": "1"})
    assert hostile.posts >= 1 and done.returncode in (2, 3), done.stderr[-2000:]
    assert "Incorrect API key" in done.stderr + (tmp_path / "out" / "results.jsonl").read_text()  # it was said
    assert marker not in done.stderr + done.stdout
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path
