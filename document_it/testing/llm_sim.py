"""OpenAI-compatible chat-completions simulator for tests and benchmarks (loopback only).

By default it behaves like OpenAI's API (any model name, no key unless `api_key`, every response_format). Options
make it behave like the self-hosted servers people run (llama.cpp server, vLLM, Ollama, LM Studio); see _sim_quirks:
`no_json_schema` (json_schema answers 500), `tools_only` (any response_format but text answers 400),
`sloppy_json` (JSON content in a fence after prose, capitalised keys, one optional/list field left out),
`context_tokens` (400 context_length_exceeded; /v1/models says max_model_len), `serial` (one slot, FIFO queue),
`require_key` / `no_key` (any bearer token / no check) and `model_id` (the one model served; others get 404).
What a request costs is _sim_timing's ServiceModel (`--profile hosted|local`: sim_profiles.py); the HTTP side
is _sim_http. It also serves OpenAI's Files and Batch API (/v1/files, /v1/batches; _sim_batches): each batch
line is answered by `SimServer.answer`, as a live request is, without the timing model, limits or faults.
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable

from document_it.testing._sim_batches import (BATCH_COUNTERS, BatchSettings, BatchStore, add_batch_arguments,
                                               batch_kwargs)
from document_it.testing._sim_quirks import KeyCheck, Quirks, add_quirk_arguments, quirk_kwargs, slot_count
from document_it.testing._sim_http import FINGERPRINT, SimHTTPServer
from document_it.testing._sim_timing import ServiceModel
from document_it.testing.sim_profiles import PROFILES, profile_settings
from document_it.testing._sim_reply import build_message, prompt_text
from document_it.testing._sim_faults import (FAULT_KINDS, ApiError, Fault, FaultPlan, RateLimiter, Reply,
                                             add_cli_arguments, cli_kwargs, completion_budget, fault_429, parse_body,
                                             server_error, truncate_message)
from document_it.tokens import estimate_tokens

__all__ = ["SimServer", "main"]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_PAGE_URL = re.compile(rb"URL: ([^\s\\\"]+)")  # document-it's page prompts name their page this way
_COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "busy_seconds", "queued_seconds", "errors",
             "attempts", "rate_limited", "ok")


class SimServer:
    """A simulated OpenAI-compatible LLM server with a latency and capacity model."""

    def __init__(self, *, port: int = 0, latency_ms: float = 400, ms_per_token: float = 2.0, jitter_ms: float = 0,
                 prefill_ms_per_token: float = 0.0, capacity: int = 0, model: str = "gpt-4o-mini",
                 api_key: str | None = None,
                 max_seconds: float = 600, max_requests: int = 100_000, rpm: float = 0, tpm: float = 0,
                 burst_seconds: float = 1.0, fail_429: float = 0, fault_retry_after_s: float = 1.0,
                 fail_500: float = 0, hang: float = 0, hang_seconds: float = 120, malformed: float = 0,
                 reset: float = 0, seed: int = 0, announce_limits: bool = True, no_json_schema: bool = False,
                 tools_only: bool = False, sloppy_json: bool = False, context_tokens: int = 0, serial: bool = False,
                 require_key: bool = False, no_key: bool = False, model_id: str | None = None,
                 hidden_context: bool = False, token_ratio: float = 1.0, shared_decode: float = 0.0,
                 imperfect_batches: float = 0.0, batch_validating_s: float = 0.05, batch_in_progress_s: float = 0.2,
                 batch_finalizing_s: float = 0.05, batch_expire_s: float | None = None,
                 batch_failed_lines: float = 0.0, batch_max_file_bytes: int = 200 * 1024 * 1024,
                 batch_max_lines: int = 50_000, batch_enqueued_tokens: int | None = None,
                 batch_no_metadata: bool = False, batch_fail_uploads: int = 0) -> None:
        self.port = port
        self.latency_ms = float(latency_ms)
        self.ms_per_token = float(ms_per_token)
        self.prefill_ms_per_token = float(prefill_ms_per_token)  # prompt processing, charged per prompt token
        self.jitter_ms = float(jitter_ms)
        self.capacity = slot_count(capacity, serial)
        self.model = model_id or model
        self._auth = KeyCheck.build(api_key, require_key=require_key, no_key=no_key)
        self._quirks = Quirks.build(no_json_schema=no_json_schema, tools_only=tools_only, sloppy_json=sloppy_json,
                                    context_tokens=context_tokens, model_id=model_id, hidden_context=hidden_context,
                                    token_ratio=token_ratio)
        self.max_seconds = float(max_seconds)
        self.max_requests = int(max_requests)
        self.fault_retry_after_s = float(fault_retry_after_s)
        self.hang_seconds = float(hang_seconds)
        self._limiter = RateLimiter(rpm, tpm, burst_seconds, announce=announce_limits)
        self._faults = FaultPlan(fail_429=fail_429, fail_500=fail_500, hang=hang, malformed=malformed, reset=reset,
                                 seed=seed)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._timing = ServiceModel(latency_ms=self.latency_ms, ms_per_token=self.ms_per_token,
                                    prefill_ms_per_token=self.prefill_ms_per_token, jitter_ms=self.jitter_ms,
                                    capacity=self.capacity, shared_decode=shared_decode, stopped=self._stopped)
        self.imperfect_batches = float(imperfect_batches)  # share of batched answers with one item left out or malformed
        self._httpd: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._admitted = 0
        self._started_at = time.time()
        self._stats: dict[str, Any] = {}
        self.reset_stats()
        settings = BatchSettings(validating_s=batch_validating_s, in_progress_s=batch_in_progress_s,
                                 finalizing_s=batch_finalizing_s, expire_s=batch_expire_s,
                                 failed_lines=batch_failed_lines, max_file_bytes=batch_max_file_bytes,
                                 max_lines=batch_max_lines, enqueued_tokens=batch_enqueued_tokens,
                                 no_metadata=batch_no_metadata, fail_uploads=batch_fail_uploads, seed=seed)
        self._batches = BatchStore(settings, answer=self.answer, count_urls=self._count_urls, bump=self._bump)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> SimServer:
        """Bind to 127.0.0.1 and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._httpd = SimHTTPServer((HOST, self.port))
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
        """Return a snapshot of the counters (same dict as GET /stats).

        Every chat-completions POST counts once in `attempts` and then in exactly one of: `ok` (a valid 200),
        `rate_limited` (a 429 from the rpm/tpm buckets), `faults[kind]` (an injected 429, 500/503 - both under
        "500" -, hang, malformed 200 or reset), or `errors` (400/401/503-over-max_requests, and the self-hosted
        modes' 400/404/500; `errors` also counts 404s and 401s on other routes). So with no such errors:
        attempts == ok + rate_limited + sum(faults).
        `requests` (and prompt/completion tokens, busy/queued seconds) counts replies that took service time:
        requests == ok + faults["malformed"]. `in_flight`/`max_in_flight` count every chat request, hangs too.
        """
        with self._lock:
            snap = dict(self._stats)
            snap["faults"] = dict(self._stats["faults"])
            snap["urls"] = dict(self._stats["urls"])
        snap["busy_seconds"] = round(snap["busy_seconds"], 6)
        snap["queued_seconds"] = round(snap["queued_seconds"], 6)
        snap["started_at"] = self._started_at
        snap["uptime_seconds"] = round(time.time() - self._started_at, 3)
        return snap

    def reset_stats(self) -> None:
        """Zero the counters (gauges keep their live value; rate buckets and the fault sequence are untouched)."""
        with self._lock:
            live = {k: self._stats.get(k, 0) for k in ("in_flight", "serving")}
            self._stats = {k: 0 for k in _COUNTERS + BATCH_COUNTERS}
            self._stats.update(busy_seconds=0.0, queued_seconds=0.0, last_service_seconds=0.0, **live)
            self._stats.update(max_in_flight=live["in_flight"], max_serving=live["serving"])
            self._stats["faults"] = {k: 0 for k in FAULT_KINDS}
            self._stats["urls"] = {}
            self._stats["max_decoding"] = self._timing.max_decoding = self._timing.decoding

    def _bump(self, **deltas: float) -> None:
        """Add to counters under the lock."""
        with self._lock:
            for key, delta in deltas.items():
                self._stats[key] += delta

    def _enter(self, raw: bytes = b"") -> None:
        """Mark a chat request as arrived, counting the page URLs its prompts name (`urls` in /stats)."""
        with self._lock:
            self._tally_urls(raw)
            self._stats["attempts"] += 1
            self._stats["in_flight"] += 1
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], self._stats["in_flight"])

    def _count_urls(self, raw: bytes) -> None:
        """Count the page URLs a request's raw body names (`urls` in /stats), as `_enter` does."""
        with self._lock:
            self._tally_urls(raw)

    def _tally_urls(self, raw: bytes) -> None:
        """Count the page URLs in `raw` (caller holds the lock)."""
        for url in _PAGE_URL.findall(raw)[:64]:
            if len(self._stats["urls"]) < 20_000:
                key = url.decode("utf-8", "replace")
                self._stats["urls"][key] = self._stats["urls"].get(key, 0) + 1

    # -- request handling -----------------------------------------------------------
    def _check_auth(self, header: str | None) -> None:
        """Raise 401 unless the Authorization header passes the key check (never echoes the key)."""
        self._auth.check(header)

    def _admit(self) -> None:
        """Reserve one request from the max_requests budget, else raise 503."""
        with self._lock:
            if self._stopped.is_set() or self._admitted >= self.max_requests:
                raise ApiError(503, "The simulator request limit has been reached.", kind="server_error")
            self._admitted += 1

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer a parsed chat-completions body as this server's model would: (200, the chat.completion with
        usage) or (status, OpenAI's error body) for what the server refuses. No timing, limits or faults."""
        try:
            prompt_tokens = self._quirks.count(prompt_text(body))
            self._quirks.check(body, prompt_tokens)
            message, finish, generated = build_message(body, self.imperfect_batches)
            message, generated = self._quirks.shape(body, message, generated)
        except ApiError as err:
            return err.status, err.body
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(prompt_tokens, estimate_tokens(generated)),
            "system_fingerprint": FINGERPRINT,
        }

    def _complete(self, raw: bytes, auth: str | None,
                  stream_start: Callable[[str, bool], None] | None = None) -> Reply:
        """Check, answer, rate-limit, maybe fault, then delay and account one chat completion. A request asking
        to be streamed has `stream_start(model, include_usage)` called when its first token is ready (the HTTP
        side starts the event stream then and sends the rest from the reply)."""
        try:
            self._check_auth(auth)
            body = parse_body(raw)
        except ApiError as err:
            self._bump(errors=1)
            return Reply(err.status, err.body, err.headers)
        status, payload = self.answer(body)
        if status != 200:
            self._bump(errors=1)
            return Reply(status, payload)
        prompt_tokens, completion_tokens = payload["usage"]["prompt_tokens"], payload["usage"]["completion_tokens"]
        try:
            charge = prompt_tokens + completion_budget(body, completion_tokens)
            limits = self._limiter.acquire(charge, str(body.get("model") or self.model))
        except ApiError as err:
            self._bump(rate_limited=1)
            return Reply(err.status, err.body, err.headers)
        fault = self._faults.draw()
        if fault is not None and fault.kind != "malformed":
            return self._inject(fault, limits)
        try:
            self._admit()
        except ApiError as err:
            self._bump(errors=1)
            return Reply(err.status, err.body, {**limits, **err.headers})
        if fault is not None:
            choice = payload["choices"][0]
            choice["message"], generated = truncate_message(choice["message"])
            completion_tokens = estimate_tokens(generated)
            payload["usage"] = _usage(prompt_tokens, completion_tokens)
        service = self._timing.nominal(prompt_tokens, completion_tokens)
        first = None
        if body.get("stream") and stream_start is not None:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            first = functools.partial(stream_start, str(body.get("model") or self.model), usage)
        queued, served = self._timing.serve(service, completion_tokens, self._serving, self._served, first)
        self._bump(requests=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   busy_seconds=served, queued_seconds=queued, ok=0 if fault else 1)
        with self._lock:
            self._stats["last_service_seconds"] = served
            self._stats["max_decoding"] = max(self._stats.get("max_decoding", 0), self._timing.max_decoding)
            if fault is not None:
                self._stats["faults"][fault.kind] += 1
        payload["created"] = int(time.time())
        headers = {"openai-processing-ms": str(round(service * 1000)), "x-request-id": uuid.uuid4().hex}
        return Reply(200, payload, {**headers, **limits})

    def _inject(self, fault: Fault, limits: dict[str, str]) -> Reply:
        """Produce a fault other than `malformed`: a 429, a 500/503, a hang or a reset (no service time)."""
        with self._lock:
            self._stats["faults"][fault.kind] += 1
        if fault.kind == "429":
            err = fault_429(self.fault_retry_after_s, limits)
            return Reply(err.status, err.body, err.headers)
        if fault.kind == "500":
            err = server_error(fault.status)
            return Reply(err.status, err.body, dict(limits))
        if fault.kind == "hang":
            self._stopped.wait(self.hang_seconds)
            return Reply(drop="close")
        return Reply(drop="reset")

    def _serving(self) -> None:
        with self._lock:
            self._stats["serving"] += 1
            self._stats["max_serving"] = max(self._stats["max_serving"], self._stats["serving"])

    def _served(self) -> None:
        self._bump(serving=-1)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


_TIMING = ("latency_ms", "ms_per_token", "prefill_ms_per_token", "capacity", "shared_decode")


def _argv(argv: list[str] | None) -> list[str]:
    return sys.argv[1:] if argv is None else argv


def _parser() -> argparse.ArgumentParser:
    """Build the CLI argument parser."""
    p = argparse.ArgumentParser(prog="python -m document_it.testing.llm_sim",
                                description="OpenAI-compatible LLM simulator on 127.0.0.1.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free port)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="a real server's shape (sim_profiles.py: hosted, local); the timing flags below override it")
    p.add_argument("--latency-ms", type=float, default=400, help="time to first token per request, ms")
    p.add_argument("--ms-per-token", type=float, default=2.0, help="decode time per completion token, ms")
    p.add_argument("--prefill-ms-per-token", type=float, default=0.0,
                   help="prompt processing time per prompt token, ms (a real server pays for every prompt token)")
    p.add_argument("--jitter-ms", type=float, default=0, help="extra uniform random delay in [0, jitter], ms")
    p.add_argument("--capacity", type=int, default=0,
                   help="sequence slots: requests served at once, others queue in arrival order (0 = unlimited)")
    p.add_argument("--shared-decode", type=float, default=0.0,
                   help="each token takes ms-per-token × (1 + this × (sequences decoding at once − 1)), as under "
                        "continuous batching (0 = off)")
    p.add_argument("--imperfect-batches", type=float, default=0.0,
                   help="share of batched answers (several items) with one item left out or malformed")
    p.add_argument("--model", default="gpt-4o-mini", help="model id listed by /v1/models")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1 (None = any or no Authorization header accepted)")
    p.add_argument("--max-seconds", type=float, default=600, help="stop the server (and exit) after this many seconds")
    p.add_argument("--max-requests", type=int, default=100_000, help="chat requests served; later ones get HTTP 503")
    add_cli_arguments(p)
    add_quirk_arguments(p)
    add_batch_arguments(p)
    p.add_argument("--log-level", default="WARNING", help="logging level for stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until the time limit or SIGTERM/SIGINT; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING), stream=sys.stderr)
    timing = {name: getattr(args, name) for name in _TIMING}
    if args.profile:  # the profile's figures, except the timing flags given on the command line
        given = {action.dest for action in _parser()._actions
                 if any(arg.split("=", 1)[0] in action.option_strings for arg in _argv(argv))}
        timing = profile_settings(args.profile, **{name: timing[name] for name in _TIMING if name in given})
    sim = SimServer(port=args.port, jitter_ms=args.jitter_ms, imperfect_batches=args.imperfect_batches, **timing,
                    model=args.model, api_key=args.api_key,
                    max_seconds=args.max_seconds, max_requests=args.max_requests, **cli_kwargs(args),
                    **quirk_kwargs(args), **batch_kwargs(args))
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
