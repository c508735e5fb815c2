"""The Batch API's rounds (--batch-api). After each drain of the job queue (and after the topic syntheses) the
prompts the gateway left for a batch are written as lines, recorded in the job queue, sent in files within the
provider's limits and waited for; their answers go to the memo, and the pages that waited are drained again,
now answered from it. A page takes as many rounds as its prompts depend on each other: one for a page read
whole, more for a long page's notes; the syntheses take one more.

Everything is recorded before the run waits: a run killed meanwhile (even `kill -9`), or one that stops
waiting (--batch-wait, submit-only), is continued by --resume or by the next nightly run, which poll the
batches already submitted and never submit a prompt twice (core/batch_ledger.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..analysis.batch_api import ENDPOINT, BatchClient, BatchState, TooLarge
from ..analysis.gateway import Gateway
from ..config import BatchApi, Settings
from ..core.batch_ledger import TERMINAL, BatchRecord, LineRecord
from ..core.job_queue import JobQueue
from ..core.progress import RunProgress
from ..errors import ConfigError
from ..report import atomic_write_text
from .loop import RunSpec

__all__ = ["BatchRounds", "MAX_ROUNDS"]

log = logging.getLogger(__name__)

MAX_ROUNDS = 8  # past this many rounds, what is still asked goes live (a prompt chain longer than any we make)
POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S = 1.0, 1.5, 60.0


@dataclass
class Figures:
    """What the run did through the Batch API (run.json's llm.batch_api)."""

    rounds: int = 0
    files: int = 0  # input files uploaded or written
    batches: int = 0  # batches created
    lines: int = 0  # lines sent
    split: int = 0  # files the provider refused as too large, sent again in halves
    answered: int = 0  # prompts answered from batch output
    failed: int = 0  # prompts a batch did not answer (asked again live, or in a new batch with strict)
    requests: int = 0  # lines that came back with HTTP 200
    tokens_in: int = 0
    tokens_out: int = 0
    ended: dict[str, int] = field(default_factory=dict)  # batches by how they ended


class BatchRounds:
    """One run's rounds: `start()` before the first drain, then `after()` after each drain or synthesis step,
    which says whether answers came in (drain or synthesise again). `left` says why the run stops with pages
    waiting (submitted only, exported, or --batch-wait ran out)."""

    def __init__(self, settings: Settings, spec: RunSpec, queue: JobQueue, gateway: Gateway,
                 progress: RunProgress | None, stop: asyncio.Event) -> None:
        self.settings, self.spec, self.queue, self.gateway = settings, spec, queue, gateway
        self.mode = settings.batch_api
        self.lane = gateway.open_lane()
        self.progress, self.stop = progress, stop
        self.client = BatchClient(settings) if self.mode not in (BatchApi.EXPORT, BatchApi.IMPORT) else None
        self.figures = Figures()
        self.left: str | None = None
        self.left_kind = ""  # "submitted", "exported" or "waiting"
        self._max_bytes = settings.batch_max_bytes

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    # -- the rounds ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Before the first drain: read an imported output file, then what the ledger knows of every prompt."""
        if self.mode is BatchApi.IMPORT:
            assert self.settings.batch_file is not None
            self._import(self.settings.batch_file)
        self.lane.states = self.queue.prompt_states()

    async def after(self) -> bool:
        """Send what the last step left for a batch and wait for every open batch; True when answers came in for
        pages or prompts that wait (the step is done again), False when nothing waits or the run stops here."""
        deferred = self.lane.pending
        if deferred:
            self.queue.store_lines(self.lane.lines())
        waiting = self.queue.waiting_lines()
        if self.mode in (BatchApi.EXPORT, BatchApi.IMPORT):
            if waiting:
                return self._leave("exported", self._export(waiting))
            files = self.queue.open_batches("file")
            if files:
                return self._leave("exported", f"{len(files)} batch file(s) still wait for --batch-api import: "
                                               + ", ".join(str(record.path) for record in files))
        else:
            if waiting:
                await self._submit(waiting)
            opened = self.queue.open_batches("api")
            if opened and self.mode is BatchApi.SUBMIT_ONLY and not await self._wait(once=True):
                # what had finished is collected; the rest is left for the next run
                return self._leave("submitted", self._described(self.queue.open_batches("api"), "submitted"))
            if opened and not await self._wait():
                return self._leave("waiting", self._described(self.queue.open_batches("api"), "still running")
                                   + f" after --batch-wait {self.settings.batch_wait:g} s")
        woken = self.queue.wake(self.spec.run_id)
        self.lane.states = self.queue.prompt_states()
        if not (deferred or woken):
            return False
        self.figures.rounds += 1
        if self.figures.rounds >= MAX_ROUNDS:
            log.warning("%d Batch API rounds: what is still asked goes live", self.figures.rounds)
            self.gateway.lane = None
        return True

    def _leave(self, kind: str, why: str) -> bool:
        self.left, self.left_kind = why, kind
        self._show(why)
        return False

    def _described(self, opened: list[BatchRecord], what: str) -> str:
        lines = sum(record.lines for record in opened)
        ids = ", ".join(record.batch_id or f"(file {record.input_file_id})" for record in opened)
        return (f"{len(opened)} batch(es) of {lines} requests {what} at {self.client.host if self.client else ''} "
                f"({ids}); --resume or the next nightly run collects them")

    # -- sending ------------------------------------------------------------------------------
    async def _submit(self, lines: list[LineRecord]) -> None:
        for part in self._files(lines):
            await self._send(part)

    def _files(self, lines: list[LineRecord]) -> Iterator[list[LineRecord]]:
        """The lines in files of at most --batch limits of lines and bytes."""
        part: list[LineRecord] = []
        size = 0
        for line in lines:
            length = len(line.jsonl(ENDPOINT).encode()) + 1
            if part and (len(part) >= self.settings.batch_max_lines or size + length > self._max_bytes):
                yield part
                part, size = [], 0
            part.append(line)
            size += length
        if part:
            yield part

    async def _send(self, part: list[LineRecord]) -> None:
        """Upload one file and create its batch, each step recorded before the next; a file the provider refuses
        as too large goes again in halves."""
        assert self.client is not None
        data = _jsonl(part)
        try:
            file_id = await self.client.upload(f"document-it-run{self.spec.run_id}.jsonl", data)
        except TooLarge as exc:
            await self._halve(part, len(data), str(exc))
            return
        row = self.queue.add_batch(self.spec.run_id, "api", [line.custom_id for line in part], len(data),
                                   input_file_id=file_id)
        self.figures.files += 1
        self.figures.lines += len(part)
        await self._create(row, file_id)

    async def _create(self, row: int, file_id: str) -> BatchState:
        assert self.client is not None
        state = await self.client.create(file_id, {"document_it_run": str(self.spec.run_id)})
        self.queue.batch_created(row, state.id, state.status)
        self.figures.batches += 1
        log.info("batch %s created: %s", state.id, state.status)
        return state

    async def _halve(self, part: list[LineRecord], size: int, why: str) -> None:
        self.figures.split += 1
        if len(part) == 1:
            row = self.queue.add_batch(self.spec.run_id, "api", [part[0].custom_id], size)
            self.queue.settle(row, [], {key: f"too large for a batch file ({why})" for _, key, _ in part[0].items},
                              status="split")
            return
        self._max_bytes = max(1024, min(self._max_bytes, size // 2))
        log.info("the provider refused a batch file of %d lines (%d bytes) as too large: sent in halves", len(part),
                 size)
        middle = len(part) // 2
        await self._send(part[:middle])
        await self._send(part[middle:])

    # -- waiting and collecting ---------------------------------------------------------------
    async def _wait(self, once: bool = False) -> bool:
        """Poll the open batches with backoff until none is open (True) or --batch-wait runs out (False); `once`:
        poll each once (submit-only)."""
        deadline = time.monotonic() + self.settings.batch_wait
        delay = POLL_FIRST_S
        while True:
            opened = self.queue.open_batches("api")
            if not opened:
                return True
            states = [await self._poll(record) for record in opened]
            self._show(" · ".join(f"{s.id} {s.status} {s.counts.get('completed', 0)}/{s.counts.get('total', 0)}"
                                  + (f" ({s.counts['failed']} failed)" if s.counts.get("failed") else "")
                                  for s in states if s is not None))
            if not self.queue.open_batches("api"):
                return True
            left = deadline - time.monotonic()
            if once or left <= 0 or self.stop.is_set():
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), min(delay, left))
            delay = min(delay * POLL_GROWTH, POLL_MAX_S)

    async def _poll(self, record: BatchRecord) -> BatchState | None:
        """One batch's state now, its answers read once it has ended; a batch whose id a killed run did not
        record is found by its file (or created)."""
        assert self.client is not None and record.input_file_id is not None
        if record.batch_id is None:
            found = await self.client.find(record.input_file_id)
            if found is None:
                return await self._create(record.id, record.input_file_id)
            self.queue.batch_created(record.id, found.id, found.status)
            state = found
        else:
            state = await self.client.state(record.batch_id)
        self.queue.batch_status(record.id, state.status, state.counts, state.output_file_id, state.error_file_id)
        if state.status in TERMINAL:
            await self._collect(record, state)
        return state

    async def _collect(self, record: BatchRecord, state: BatchState) -> None:
        assert self.client is not None
        self.figures.ended[state.status] = self.figures.ended.get(state.status, 0) + 1
        if state.too_large:  # its lines go again in two files of half the size each (halved again if refused)
            lines = self.queue.lines_of(record.id)
            self.queue.unbatch(record.id)
            log.info("batch %s refused as too large (%s): its lines go again in two halves", state.id,
                     "; ".join(state.errors))
            await self._halve(lines, record.bytes, "; ".join(state.errors))
            return
        records: dict[str, dict[str, Any]] = {}
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                records.update(_records(await self.client.content(file_id)))
        missing = f"the batch {state.status}" + (f" ({'; '.join(state.errors)})" if state.errors else "")
        self._settle(record, records, missing)
        log.info("batch %s %s: %d answers, %d prompts to ask again", state.id, state.status, self.figures.answered,
                 self.figures.failed)

    def _settle(self, record: BatchRecord, records: dict[str, dict[str, Any]], missing: str,
                status: str = "collected") -> None:
        answered: list[str] = []
        failed: dict[str, str] = {}
        for line in self.queue.lines_of(record.id):
            outcome = self.lane.read(line, records.get(line.custom_id))
            if line.custom_id not in records:
                outcome.failed = {key: missing for key in outcome.failed}
            answered.extend(outcome.answered)
            failed.update(outcome.failed)
            self.figures.requests += outcome.ok
            self.figures.tokens_in += outcome.tokens_in
            self.figures.tokens_out += outcome.tokens_out
        self.figures.answered += len(answered)
        self.figures.failed += len(failed)
        f = self.figures
        cost = self.gateway.tracker.prices.cost(f.tokens_in, f.tokens_out)
        self.gateway.batch_spent = (f.tokens_in + f.tokens_out, (cost or 0.0) * (1 - self.settings.batch_discount))
        self.queue.settle(record.id, answered, failed, status)

    # -- batch files for self-hosters ---------------------------------------------------------
    def _export(self, lines: list[LineRecord]) -> str:
        """Write the lines as batch input files in the output folder; what to do next."""
        paths = []
        for part in self._files(lines):
            data = _jsonl(part)
            number = len(self.queue.batches()) + 1
            path = (self.settings.output_dir / f"batch-input-{number}.jsonl").resolve()
            atomic_write_text(path, data.decode())  # written before it is recorded: a recorded file exists
            self.queue.add_batch(self.spec.run_id, "file", [line.custom_id for line in part], len(data),
                                 path=str(path))
            paths.append(path)
            self.figures.files += 1
            self.figures.lines += len(part)
        return (f"wrote {len(lines)} requests to {', '.join(str(p) for p in paths)}; run them (e.g. vllm run-batch "
                f"-i FILE -o OUT --model {self.settings.model}) and continue with --batch-api import OUT")

    def _import(self, path: Path) -> None:
        """Answers from an output JSONL in the Batch API's format, for the exported files whose lines it names."""
        try:
            records = _records(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--batch-api import: cannot read {path}: {exc}") from None
        exported = self.queue.open_batches("file")
        if not exported:
            raise ConfigError(f"--batch-api import: no exported batch file waits in {self.settings.state_dir} "
                              "(run --batch-api export first)")
        known = {line.custom_id for record in exported for line in self.queue.lines_of(record.id)}
        if records and not known.intersection(records):
            raise ConfigError(f"--batch-api import: {path} answers none of the exported requests "
                              "(its custom_ids are not this state dir's)")
        for record in exported:
            self._settle(record, records, f"not in {path.name}", status="imported")
        self.figures.ended["imported"] = len(exported)

    # -- figures ------------------------------------------------------------------------------
    def _show(self, text: str) -> None:
        if self.progress is not None:
            self.progress.batches(text)

    def summary(self, llm: dict[str, Any]) -> dict[str, Any]:
        """run.json's llm.batch_api: the batch share of requests and tokens, and the cost at the batch price
        beside what the same work would have cost live."""
        f = self.figures
        prices = self.gateway.tracker.prices
        discount = self.settings.batch_discount
        live_cost = prices.cost(f.tokens_in, f.tokens_out)
        other = llm.get("cost_usd")  # the requests sent live
        requests = f.requests + int(llm.get("requests") or 0)
        tokens = f.tokens_in + f.tokens_out
        all_tokens = tokens + int(llm.get("tokens_in") or 0) + int(llm.get("tokens_out") or 0)
        batch_cost = None if live_cost is None else live_cost * (1 - discount)
        return {
            "mode": self.mode.value, "rounds": f.rounds, "files": f.files, "batches": f.batches, "lines": f.lines,
            "split": f.split, "ended": f.ended, "prompts_answered": f.answered, "prompts_failed": f.failed,
            "requests": f.requests, "tokens_in": f.tokens_in, "tokens_out": f.tokens_out,
            "share_of_requests": round(f.requests / requests, 4) if requests else 0.0,
            "share_of_tokens": round(tokens / all_tokens, 4) if all_tokens else 0.0,
            "discount": discount,
            "cost_usd": None if batch_cost is None else round(batch_cost, 6),
            "cost_if_live_usd": None if live_cost is None else round(live_cost, 6),
            "run_cost_usd": None if batch_cost is None or other is None else round(batch_cost + other, 6),
            "run_cost_if_live_usd": None if live_cost is None or other is None else round(live_cost + other, 6),
            "left": self.left, "left_kind": self.left_kind,
        }


def _jsonl(lines: list[LineRecord]) -> bytes:
    return "".join(line.jsonl(ENDPOINT) + "\n" for line in lines).encode()


def _records(text: str) -> dict[str, dict[str, Any]]:
    """custom_id -> output record, from a batch output or error file (lines that are not JSON are skipped)."""
    found: dict[str, dict[str, Any]] = {}
    for raw in text.split("\n"):  # not splitlines(): JSON may hold U+2028 and its kind unescaped
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record.get("custom_id"), str):
                found.setdefault(record["custom_id"], record)
    return found

