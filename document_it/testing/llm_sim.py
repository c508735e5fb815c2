"""OpenAI-compatible chat-completions simulator for tests and benchmarks (loopback only)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from document_it.testing._schema_fill import content_text, fill_schema, find_prompt_schema, last_user_text, plain_answer
from document_it.tokens import estimate_tokens

__all__ = ["SimServer", "main"]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
FINGERPRINT = "document-it-sim"
_COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "busy_seconds", "queued_seconds", "errors")


class _ApiError(Exception):
    """An error reply in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _prompt_text(body: dict[str, Any]) -> str:
    """Return all prompt text (messages, tool-call arguments, schemas) for token counting."""
    parts: list[str] = []
    for message in body["messages"]:
        parts.append(content_text(message.get("content")))
        for call in message.get("tool_calls") or []:
            parts.append(json.dumps(call.get("function", {})))
    for key in ("tools", "response_format"):
        if body.get(key):
            parts.append(json.dumps(body[key]))
    return "\n".join(p for p in parts if p)


def _pick_tool(tools: list[Any], choice: Any) -> dict[str, Any]:
    """Return the function spec named by `tool_choice`, else the first tool."""
    functions = [t.get("function") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if not functions:
        raise _ApiError(400, "tools must contain at least one function", param="tools")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        for function in functions:
            if function.get("name") == name:
                return function
        raise _ApiError(400, f"tool_choice names an unknown function: {name!r}", param="tool_choice")
    return functions[0]


def _dumps(value: Any) -> str:
    """Serialise compactly and deterministically, the way models emit JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _build_message(body: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """Return (message, finish_reason, generated text) for a chat request."""
    messages = body["messages"]
    user = last_user_text(messages)
    tools = body.get("tools")
    choice = body.get("tool_choice")
    fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    if isinstance(tools, list) and tools and choice != "none":
        function = _pick_tool(tools, choice)
        args = _dumps(fill_schema(function.get("parameters") or {"type": "object"}, text=user))
        call_id = "call_" + hashlib.sha256(f"{user}\x1f{args}".encode()).hexdigest()[:24]
        call = {"id": call_id, "type": "function", "function": {"name": function.get("name", ""), "arguments": args}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", args
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        if not isinstance(spec.get("schema"), dict):
            raise _ApiError(400, "response_format.json_schema.schema must be an object", param="response_format")
        content = _dumps(fill_schema(spec["schema"], text=user))
    elif fmt.get("type") == "json_object":
        schema = find_prompt_schema(content_text(m.get("content")) for m in messages)
        value = fill_schema(schema, text=user) if schema else {"answer": plain_answer(user)}
        content = _dumps(value)
    else:
        content = plain_answer(user)
    return {"role": "assistant", "content": content, "refusal": None}, "stop", content


class _Handler(BaseHTTPRequestHandler):
    """HTTP handler; `self.server.sim` is the owning SimServer."""

    protocol_version = "HTTP/1.1"
    server_version = "document-it-sim/1.0"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Route the default access log to logging at debug level."""
        logger.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Send a JSON reply with Content-Length."""
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: _ApiError) -> None:
        """Send an error reply and count it."""
        self.server.sim._bump(errors=1)  # type: ignore[attr-defined]
        self._send(err.status, err.body)

    def _route(self) -> str:
        """Return the request path without query string or trailing slash."""
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        """Serve /v1/models and /stats."""
        sim: SimServer = self.server.sim  # type: ignore[attr-defined]
        route = self._route()
        try:
            if route == "/stats":
                return self._send(200, sim.stats())
            if route in ("/v1/models", "/models"):
                sim._check_auth(self.headers.get("Authorization"))
                model = {"id": sim.model, "object": "model", "created": 0, "owned_by": FINGERPRINT}
                return self._send(200, {"object": "list", "data": [model]})
            raise _ApiError(404, f"Unknown path: {route}")
        except _ApiError as err:
            self._error(err)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        """Serve chat completions and /stats/reset."""
        sim: SimServer = self.server.sim  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)  # always drain the body (keep-alive)
        raw = self.rfile.read(length) if length > 0 else b""
        route = self._route()
        try:
            if route == "/stats/reset":
                sim.reset_stats()
                return self._send(200, sim.stats())
            if route not in ("/v1/chat/completions", "/chat/completions"):
                raise _ApiError(404, f"Unknown path: {route}")
        except _ApiError as err:
            return self._error(err)
        sim._enter()
        try:
            status, payload, headers = sim._complete(raw, self.headers.get("Authorization"))
        finally:
            sim._bump(in_flight=-1)  # before writing, so a client that has its reply sees consistent stats
        self._send(status, payload, headers)


class _HTTPServer(ThreadingHTTPServer):
    """Threading HTTP server with a deep accept backlog."""

    daemon_threads = True
    request_queue_size = 256
    sim: SimServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log handler errors (e.g. a client hanging up) at debug level instead of printing them."""
        logger.debug("error while serving %s", client_address, exc_info=True)


class SimServer:
    """A simulated OpenAI-compatible LLM server with a latency and capacity model."""

    def __init__(self, *, port: int = 0, latency_ms: float = 400, ms_per_token: float = 2.0, jitter_ms: float = 0,
                 capacity: int = 0, model: str = "gpt-4o-mini", api_key: str | None = None,
                 max_seconds: float = 600, max_requests: int = 100_000) -> None:
        self.port = port
        self.latency_ms = float(latency_ms)
        self.ms_per_token = float(ms_per_token)
        self.jitter_ms = float(jitter_ms)
        self.capacity = int(capacity)
        self.model = model
        self._api_key = api_key
        self.max_seconds = float(max_seconds)
        self.max_requests = int(max_requests)
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.capacity) if self.capacity > 0 else None
        self._stopped = threading.Event()
        self._jitter = random.Random()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._admitted = 0
        self._started_at = time.time()
        self._stats: dict[str, Any] = {}
        self.reset_stats()

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> SimServer:
        """Bind to 127.0.0.1 and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((HOST, self.port), _Handler)
        self._httpd.sim = self
        self.port = self._httpd.server_address[1]
        self._started_at = time.time()
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="llm-sim", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.max_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        logger.info("llm simulator listening on %s", self.base_url)
        return self

    @property
    def base_url(self) -> str:
        """Return the OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def stopped(self) -> bool:
        """Return True once the server has stopped."""
        return self._stopped.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or `timeout`); return True if stopped."""
        return self._stopped.wait(timeout)

    def stop(self) -> None:
        """Shut the server down and close its socket; idempotent."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        logger.info("llm simulator stopped")

    def __enter__(self) -> SimServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    # -- stats ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Return a snapshot of the counters (same dict as GET /stats)."""
        with self._lock:
            snap = dict(self._stats)
        snap["busy_seconds"] = round(snap["busy_seconds"], 6)
        snap["queued_seconds"] = round(snap["queued_seconds"], 6)
        snap["started_at"] = self._started_at
        snap["uptime_seconds"] = round(time.time() - self._started_at, 3)
        return snap

    def reset_stats(self) -> None:
        """Zero the counters (gauges keep their live value)."""
        with self._lock:
            live = {k: self._stats.get(k, 0) for k in ("in_flight", "serving")}
            self._stats = {k: 0 for k in _COUNTERS}
            self._stats.update(busy_seconds=0.0, queued_seconds=0.0, last_service_seconds=0.0, **live)
            self._stats.update(max_in_flight=live["in_flight"], max_serving=live["serving"])

    def _bump(self, **deltas: float) -> None:
        """Add to counters under the lock."""
        with self._lock:
            for key, delta in deltas.items():
                self._stats[key] += delta

    def _enter(self) -> None:
        """Mark a chat request as arrived."""
        with self._lock:
            self._stats["in_flight"] += 1
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], self._stats["in_flight"])

    # -- request handling -----------------------------------------------------------
    def _check_auth(self, header: str | None) -> None:
        """Raise 401 unless the bearer token matches (never echoes the key)."""
        if self._api_key is None:
            return
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self._api_key:
            raise _ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _admit(self) -> None:
        """Reserve one request from the max_requests budget, else raise 503."""
        with self._lock:
            if self._stopped.is_set() or self._admitted >= self.max_requests:
                raise _ApiError(503, "The simulator request limit has been reached.", kind="server_error")
            self._admitted += 1

    def _complete(self, raw: bytes, auth: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Build, delay and account one chat completion; returns (status, payload, headers)."""
        try:
            self._check_auth(auth)
            body = _parse_body(raw)
            message, finish, generated = _build_message(body)
            self._admit()
        except _ApiError as err:
            self._bump(errors=1)
            return err.status, err.body, {}
        usage_prompt = estimate_tokens(_prompt_text(body))
        usage_completion = estimate_tokens(generated)
        service = self._service_seconds(usage_completion)
        queued = self._serve(service)
        self._bump(requests=1, prompt_tokens=usage_prompt, completion_tokens=usage_completion,
                   busy_seconds=service, queued_seconds=queued)
        with self._lock:
            self._stats["last_service_seconds"] = service
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": usage_prompt, "completion_tokens": usage_completion,
                      "total_tokens": usage_prompt + usage_completion},
            "system_fingerprint": FINGERPRINT,
        }
        return 200, payload, {"openai-processing-ms": str(round(service * 1000)), "x-request-id": uuid.uuid4().hex}

    def _service_seconds(self, completion_tokens: int) -> float:
        """Return time-to-first-token + decode time + jitter, in seconds."""
        with self._lock:
            jitter = self._jitter.uniform(0, self.jitter_ms) if self.jitter_ms > 0 else 0.0
        return (self.latency_ms + self.ms_per_token * completion_tokens + jitter) / 1000.0

    def _serve(self, service: float) -> float:
        """Wait for a capacity slot, then sleep `service` seconds; returns the queue wait."""
        arrived = time.monotonic()
        if self._slots is not None:
            while not self._slots.acquire(timeout=0.1):
                if self._stopped.is_set():
                    return time.monotonic() - arrived
        queued = time.monotonic() - arrived
        with self._lock:
            self._stats["serving"] += 1
            self._stats["max_serving"] = max(self._stats["max_serving"], self._stats["serving"])
        try:
            self._stopped.wait(service)
        finally:
            self._bump(serving=-1)
            if self._slots is not None:
                self._slots.release()
        return queued


def _parse_body(raw: bytes) -> dict[str, Any]:
    """Parse and validate a chat-completions request body."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _ApiError(400, "The request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _ApiError(400, "'messages' must be a non-empty array of message objects.", param="messages")
    if body.get("stream"):
        raise _ApiError(400, "streaming is not supported by the simulator", param="stream")
    return body


def _parser() -> argparse.ArgumentParser:
    """Build the CLI argument parser."""
    p = argparse.ArgumentParser(prog="python -m document_it.testing.llm_sim",
                                description="OpenAI-compatible LLM simulator on 127.0.0.1.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free port)")
    p.add_argument("--latency-ms", type=float, default=400, help="time to first token per request, ms")
    p.add_argument("--ms-per-token", type=float, default=2.0, help="decode time per completion token, ms")
    p.add_argument("--jitter-ms", type=float, default=0, help="extra uniform random delay in [0, jitter], ms")
    p.add_argument("--capacity", type=int, default=0, help="max requests served at once, others queue (0 = unlimited)")
    p.add_argument("--model", default="gpt-4o-mini", help="model id listed by /v1/models")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 (None = no auth)")
    p.add_argument("--max-seconds", type=float, default=600, help="stop the server (and exit) after this many seconds")
    p.add_argument("--max-requests", type=int, default=100_000, help="chat requests served; later ones get HTTP 503")
    p.add_argument("--log-level", default="WARNING", help="logging level for stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until the time limit or SIGTERM/SIGINT; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING), stream=sys.stderr)
    sim = SimServer(port=args.port, latency_ms=args.latency_ms, ms_per_token=args.ms_per_token,
                    jitter_ms=args.jitter_ms, capacity=args.capacity, model=args.model, api_key=args.api_key,
                    max_seconds=args.max_seconds, max_requests=args.max_requests)
    quit_event = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: quit_event.set())
    sim.start()
    print(f"document-it llm simulator listening on {sim.base_url}", flush=True)
    try:
        while not quit_event.is_set() and not sim.wait(0.2):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
