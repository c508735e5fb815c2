"""OpenAI's Batch API for the LLM simulator (its files are _sim_files.py's): batches that validate, run and
finish on a clock, each line answered as a live chat completion would be.

A batch's state is worked out lazily from the time since it was created, whenever it is read: `validating`
for `validating_s`, `in_progress` for `in_progress_s`, `finalizing` for `finalizing_s`, then `completed`.
Validation failures (the batch's `errors.data[].code`): `token_limit_exceeded` (the batches in progress and
this one hold more tokens than `enqueued_tokens`), `file_too_large`, `empty_file`, `too_many_tasks`
(more than `max_lines` requests), `invalid_json_line`, `invalid_request` (custom_id, method or body wrong; its
`param` names which), `invalid_url` (not the batch's endpoint) and `duplicate_custom_id`. Lines not run
because the batch expired or was cancelled are in the error file with `batch_expired` / `batch_cancelled`.
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from document_it.testing._sim_faults import ApiError, parse_body, server_error
from document_it.testing._sim_batch_input import Line, parse_input
from document_it.testing._sim_files import FileStore, cursor_page, new_id, not_found

__all__ = ["BATCH_COUNTERS", "ENDPOINT", "BatchSettings", "BatchStatus", "BatchStore",
           "add_batch_arguments", "batch_kwargs"]

BATCH_COUNTERS = ("files_uploaded", "batches_created", "batch_lines", "batch_failed_lines", "batch_prompt_tokens",
                  "batch_completion_tokens")
ENDPOINT = "/v1/chat/completions"  # the one endpoint the simulator runs batches for
_WINDOW_S = 24 * 3600
_NOT_RUN = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request could not be executed before the batch was cancelled.",
}

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class BatchStatus(str, enum.Enum):
    """A batch's status, as OpenAI names them."""

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


_FINAL = {BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
_STAMP = {BatchStatus.COMPLETED: "completed_at", BatchStatus.EXPIRED: "expired_at",
          BatchStatus.CANCELLED: "cancelled_at"}
_STAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
           "cancelled_at")


@dataclass(frozen=True)
class BatchSettings:
    """How batches behave: the seconds spent in each state, expiry, failed lines and the input limits."""

    validating_s: float = 0.05
    in_progress_s: float = 0.2
    finalizing_s: float = 0.05
    expire_s: float | None = None  # None: batches never expire
    failed_lines: float = 0.0  # share of run lines answered 500
    max_file_bytes: int = 200 * 1024 * 1024
    max_lines: int = 50_000
    enqueued_tokens: int | None = None  # the queue's token limit over batches in progress (OpenAI's per model)
    no_metadata: bool = False  # refuse batches that carry metadata, as servers that copy the API loosely do
    fail_uploads: int = 0  # the first uploads answered 503
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.validating_s, self.in_progress_s, self.finalizing_s) < 0:
            raise ValueError("batch delays must be >= 0")
        if self.expire_s is not None and self.expire_s <= 0:
            raise ValueError("batch_expire_s must be > 0 (or None)")
        if not 0 <= self.failed_lines <= 1:
            raise ValueError("batch_failed_lines must be in [0, 1]")
        if self.max_file_bytes < 1 or self.max_lines < 1:
            raise ValueError("batch_max_file_bytes and batch_max_lines must be >= 1")
        if self.enqueued_tokens is not None and self.enqueued_tokens < 1:
            raise ValueError("batch_enqueued_tokens must be >= 1 (or None)")


@dataclass
class _Batch:
    """One batch and what has happened to it so far."""

    id: str
    input_file_id: str
    endpoint: str
    window: str
    metadata: dict[str, str] | None
    content: bytes  # the input file as it was when the batch was created
    ordinal: int
    created: float = field(default_factory=time.time)
    start: float = field(default_factory=time.monotonic)
    status: BatchStatus = BatchStatus.VALIDATING
    stamps: dict[str, int] = field(default_factory=dict)
    cancel_after: float | None = None  # seconds after creation the cancel came
    lines: list[Line] | None = None  # None until validated
    errors: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    tokens: tuple[int, int] = (0, 0)
    enqueued: int = 0  # its estimated tokens, counted against the queue's limit while it runs
    model: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None


class BatchStore:
    """The batches, advanced lazily on each read; lines are answered by `answer` when the batch finishes."""

    def __init__(self, settings: BatchSettings, *, answer: Answer, count_urls: Callable[[bytes], None],
                 bump: Callable[..., None]) -> None:
        self.settings = settings
        self.files = FileStore(bump, settings.fail_uploads)
        self._answer = answer
        self._count_urls = count_urls
        self._bump = bump
        self._batches: dict[str, _Batch] = {}
        self._lock = threading.Lock()

    def create(self, params: Any) -> dict[str, Any]:
        """Start a batch (POST /v1/batches) and return its Batch object."""
        if not isinstance(params, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        file_id, endpoint = params.get("input_file_id"), params.get("endpoint")
        window, metadata = params.get("completion_window"), params.get("metadata")
        if not isinstance(file_id, str) or not file_id:
            raise ApiError(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
        if endpoint != ENDPOINT:
            raise ApiError(400, f"Invalid 'endpoint': {endpoint!r}. This server runs batches for {ENDPOINT} only.",
                           param="endpoint")
        if window != "24h":
            raise ApiError(400, f"Invalid 'completion_window': {window!r}. Supported values are: '24h'.",
                           param="completion_window")
        if metadata is not None and self.settings.no_metadata:
            raise ApiError(400, "Unrecognized request argument supplied: metadata", param="metadata")
        if metadata is not None and not (isinstance(metadata, dict) and len(metadata) <= 16 and all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
            raise ApiError(400, "Invalid 'metadata': at most 16 string keys with string values.", param="metadata")
        entry = self.files.get(file_id)
        if entry["purpose"] != "batch":
            raise ApiError(400, f"Invalid 'input_file_id': {file_id} was not uploaded with purpose 'batch'.",
                           param="input_file_id")
        with self._lock:
            batch = _Batch(new_id("batch_"), file_id, endpoint, window, metadata, self.files.content(file_id),
                           len(self._batches))
            self._batches[batch.id] = batch
            view = self._view(batch)
        self._bump(batches_created=1)
        return view

    def get(self, batch_id: str) -> dict[str, Any]:
        """Return the Batch object as of now, or raise 404."""
        with self._lock:
            batch = self._find(batch_id)
            self._advance(batch, time.monotonic())
            return self._view(batch)

    def list(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """Return a page of batches, newest first, starting after the batch `after`."""
        limit = max(1, min(100, limit))
        with self._lock:
            batches = sorted(self._batches.values(), key=lambda b: b.ordinal, reverse=True)
            ids = [b.id for b in batches]
            start = ids.index(after) + 1 if after in ids else 0
            page = batches[start:start + limit]
            now = time.monotonic()
            for batch in page:
                self._advance(batch, now)
            return cursor_page([self._view(b) for b in page], has_more=start + limit < len(batches))

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Cancel a running batch: `cancelling` now, `cancelled` after the finalizing delay."""
        with self._lock:
            batch = self._find(batch_id)
            now = time.monotonic()
            self._advance(batch, now)
            if batch.status in _FINAL:
                raise ApiError(409, f"Cannot cancel a batch with status '{batch.status.value}'.")
            if batch.cancel_after is None:
                batch.cancel_after = now - batch.start
                batch.status = BatchStatus.CANCELLING
                batch.stamps["cancelling_at"] = int(batch.created + batch.cancel_after)
            return self._view(batch)

    # -- the clock -------------------------------------------------------------------------------------------------
    def _advance(self, batch: _Batch, now: float) -> None:
        """Bring `batch` to the state it has reached at `now` (caller holds the lock)."""
        if batch.status in _FINAL:
            return
        s = self.settings
        elapsed = now - batch.start
        validated = s.validating_s
        run_end = validated + s.in_progress_s
        done = run_end + s.finalizing_s
        if batch.cancel_after is not None:
            if elapsed >= batch.cancel_after + s.finalizing_s:
                self._finish(batch, BatchStatus.CANCELLED, batch.cancel_after + s.finalizing_s,
                             self._progress(batch.cancel_after), "batch_cancelled")
            return
        expiry = s.expire_s if s.expire_s is not None and s.expire_s < done else None
        if expiry is not None and expiry < validated and elapsed >= expiry:
            return self._finish(batch, BatchStatus.EXPIRED, expiry, 0.0, "batch_expired")
        if elapsed < validated:
            return
        if self._validate(batch):
            batch.status = BatchStatus.FAILED
            batch.stamps["failed_at"] = int(batch.created + validated)
            return
        batch.status = BatchStatus.IN_PROGRESS
        batch.stamps.setdefault("in_progress_at", int(batch.created + validated))
        if expiry is not None and elapsed >= expiry:
            return self._finish(batch, BatchStatus.EXPIRED, expiry, self._progress(expiry), "batch_expired")
        if elapsed >= run_end:
            batch.status = BatchStatus.FINALIZING
            batch.stamps.setdefault("finalizing_at", int(batch.created + run_end))
        if elapsed >= done:
            self._finish(batch, BatchStatus.COMPLETED, done, 1.0, "")

    def _progress(self, elapsed: float) -> float:
        """Share of a batch's lines answered `elapsed` seconds after creation (in proportion to time in progress)."""
        ran = elapsed - self.settings.validating_s
        if ran < 0:
            return 0.0
        return 1.0 if self.settings.in_progress_s <= 0 else min(1.0, ran / self.settings.in_progress_s)

    # -- validation and results -------------------------------------------------------------------------------------
    def _validate(self, batch: _Batch) -> bool:
        """Parse and check the input file once; return True if the batch fails validation."""
        if batch.lines is not None:
            return bool(batch.errors)
        batch.lines, batch.errors = parse_input(batch.content, batch.endpoint, self.settings.max_file_bytes,
                                                self.settings.max_lines)
        batch.content = b""
        if batch.errors:
            batch.lines = []
        else:
            batch.counts["total"] = len(batch.lines)
            batch.model = str(batch.lines[0].body.get("model") or "") or None
            batch.enqueued = sum(len(line.raw) for line in batch.lines) // 4  # about a token per 4 bytes
            limit = self.settings.enqueued_tokens
            if limit is not None and batch.enqueued + self._enqueued(batch) > limit:
                batch.errors = [{"code": "token_limit_exceeded", "param": None, "line": None, "message": (
                    f"Enqueued token limit reached for {batch.model} in organization org-sim. Limit: {limit:,} "
                    "enqueued tokens. Please try again once some in_progress batches have been completed.")}]
                batch.lines = []
        return bool(batch.errors)

    def _enqueued(self, batch: _Batch) -> int:
        """The tokens of the batches created before `batch` that are in progress now (caller holds the lock)."""
        now = time.monotonic()
        total = 0
        for other in self._batches.values():
            if other.ordinal < batch.ordinal:
                self._advance(other, now)
                if other.status in (BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING):
                    total += other.enqueued
        return total

    def _finish(self, batch: _Batch, status: BatchStatus, elapsed: float, share: float, code: str) -> None:
        """Answer the first `share` of the lines (the rest get error `code`), write the output and error files,
        and end in `status` `elapsed` seconds after creation."""
        self._validate(batch)  # a batch expired or cancelled while validating has its lines read now
        lines = batch.lines or []
        ran = math.floor(len(lines) * share + 1e-9)
        rng = random.Random(f"{self.settings.seed}:{batch.ordinal}")
        broken = set(rng.sample(range(len(lines)), round(len(lines) * self.settings.failed_lines)))
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        prompt = completion = 0
        for i, line in enumerate(lines):
            if i >= ran:
                errors.append(_result(line.custom_id, None, {"code": code, "message": _NOT_RUN[code]}))
                continue
            self._count_urls(line.raw)
            status_code, payload = (500, server_error(500).body) if i in broken else self._run(line.body)
            (output if status_code == 200 else errors).append(_result(line.custom_id, (status_code, payload)))
            if status_code == 200:
                prompt += payload["usage"]["prompt_tokens"]
                completion += payload["usage"]["completion_tokens"]
        batch.counts.update(total=len(lines), completed=len(output), failed=len(errors))
        batch.tokens = (prompt, completion)
        if output:
            batch.output_file_id = self.files.add(_jsonl(output), f"{batch.id}_output.jsonl", "batch_output")["id"]
        if errors:
            batch.error_file_id = self.files.add(_jsonl(errors), f"{batch.id}_error.jsonl", "batch_output")["id"]
        batch.status = status
        batch.stamps[_STAMP[status]] = int(batch.created + elapsed)
        self._bump(batch_lines=len(output), batch_failed_lines=len(errors), batch_prompt_tokens=prompt,
                   batch_completion_tokens=completion)

    def _run(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one line's body as a live request with that body would be answered."""
        try:
            return self._answer(parse_body(json.dumps(body).encode("utf-8")))
        except ApiError as err:
            return err.status, err.body

    def _find(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise not_found("Batch", batch_id)
        return batch

    def _view(self, batch: _Batch) -> dict[str, Any]:
        """The Batch object, in OpenAI's shape."""
        expire_s = _WINDOW_S if self.settings.expire_s is None else self.settings.expire_s
        prompt, completion = batch.tokens
        failed = batch.status is BatchStatus.FAILED
        return {
            "id": batch.id, "object": "batch", "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": list(batch.errors)} if failed else None,
            "input_file_id": batch.input_file_id, "completion_window": batch.window, "status": batch.status.value,
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "created_at": int(batch.created), "expires_at": int(batch.created + expire_s),
            **{key: batch.stamps.get(key) for key in _STAMPS},
            "request_counts": dict(batch.counts), "metadata": batch.metadata, "model": batch.model,
            "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": prompt + completion},
        }


def _result(custom_id: str, response: tuple[int, dict[str, Any]] | None,
            error: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line of an output or error file."""
    return {"id": new_id("batch_req_"), "custom_id": custom_id,
            "response": None if response is None else {"status_code": response[0], "request_id": uuid.uuid4().hex,
                                                        "body": response[1]},
            "error": error}


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _delays(text: str) -> tuple[float, float, float]:
    try:
        validating, running, finalizing = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected three seconds: VALIDATING,IN_PROGRESS,FINALIZING") from None
    return validating, running, finalizing


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """Add the Batch API flags to the simulator's CLI."""
    g = p.add_argument_group("Batch API (/v1/files, /v1/batches)")
    g.add_argument("--batch-delays", type=_delays, default="0.05,0.2,0.05", metavar="V,P,F",
                   help="seconds a batch spends validating, in progress and finalizing")
    g.add_argument("--batch-expire-s", type=float, default=None,
                   help="a batch not completed this many seconds after creation expires (None: never)")
    g.add_argument("--batch-failed-lines", type=float, default=0.0,
                   help="share of a batch's lines answered 500 (in the error file), drawn with --seed")
    g.add_argument("--batch-max-file-mb", type=float, default=200.0, help="larger input files fail validation")
    g.add_argument("--batch-max-lines", type=int, default=50_000, help="input files with more requests fail")
    g.add_argument("--batch-fail-uploads", type=int, default=0, metavar="N",
                   help="answer the first N file uploads 503 (a server briefly overloaded)")
    g.add_argument("--batch-no-metadata", action="store_true",
                   help="refuse batches that carry metadata (400), as some servers that copy the API do")
    g.add_argument("--batch-enqueued-tokens", type=int, default=None,
                   help="a batch that would take the tokens in progress past this fails (token_limit_exceeded)")


def batch_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Return the SimServer keyword arguments for the flags added by `add_batch_arguments`."""
    validating, running, finalizing = args.batch_delays
    return {"batch_validating_s": validating, "batch_in_progress_s": running, "batch_finalizing_s": finalizing,
            "batch_expire_s": args.batch_expire_s, "batch_failed_lines": args.batch_failed_lines,
            "batch_max_file_bytes": int(args.batch_max_file_mb * 1024 * 1024),
            "batch_max_lines": args.batch_max_lines, "batch_enqueued_tokens": args.batch_enqueued_tokens,
            "batch_no_metadata": args.batch_no_metadata, "batch_fail_uploads": args.batch_fail_uploads}
