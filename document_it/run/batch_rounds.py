"""The Batch API's rounds (--batch-api). After each drain of the job queue (and after the topic syntheses) the
prompts the gateway left for a batch are written as lines, recorded in the job queue, sent in files within the
provider's limits and waited for; their answers go to the memo and the ledger, and the pages that waited are
drained again, now answered from them. A page takes as many rounds as its prompts depend on each other: one
for a page read whole, more for a long page's notes; the syntheses take one more.

Everything is recorded before the run waits: a run killed meanwhile (even `kill -9`), or one that stops
waiting (--batch-wait, submit-only), is continued by --resume or by the next nightly run, which poll the
batches already submitted and never submit a prompt twice (core/batch_ledger.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ..analysis.batch_api import BatchApiError, BatchClient, BatchState, NotFound, TooLarge
from ..analysis.gateway import Gateway
from ..config import BatchApi, Settings
from ..core.batch_ledger import TERMINAL, BatchKind, BatchRecord, LineRecord
from ..core.job_queue import JobQueue
from ..core.progress import RunProgress
from . import batch_files
from .batch_figures import BatchFigures
from .loop import RunSpec

__all__ = ["BatchRounds", "MAX_ROUNDS"]

log = logging.getLogger(__name__)

MAX_ROUNDS = 16  # past this many rounds, what is still asked goes live (longer than any chain of prompts we make)
POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S = 1.0, 1.5, 60.0
_OFFLINE = (BatchApi.EXPORT, BatchApi.IMPORT)


class BatchRounds:
    """One run's rounds: `start()` before the first drain, then `after()` after each drain or synthesis step,
    which says whether answers came in (drain or synthesise again). `left` says why the run stops with pages
    waiting (submitted only, exported, or --batch-wait ran out)."""

    def __init__(self, settings: Settings, spec: RunSpec, queue: JobQueue, gateway: Gateway,
                 progress: RunProgress | None, stop: asyncio.Event) -> None:
        self.settings, self.spec, self.queue, self.gateway = settings, spec, queue, gateway
        self.mode = settings.batch_api
        self.kind = BatchKind.FILE if self.mode in _OFFLINE else BatchKind.API
        # --refresh and --no-cache ask afresh: only this run's batches answer from the ledger
        since = spec.run_id if settings.refresh or settings.no_cache else 0
        self.lane = gateway.open_lane(lambda key: queue.answer(key, since))
        self.progress, self.stop = progress, stop
        self._deadline = time.monotonic() + settings.batch_wait  # for the whole run, not each round
        self.client = BatchClient(settings, self._deadline) if self.kind is BatchKind.API else None
        self.figures = BatchFigures()
        self.left: str | None = None
        self.left_kind = ""  # "submitted", "exported" or "waiting"
        self._max_bytes = settings.batch_max_bytes
        self._held: set[str] = set()  # lines the provider's full queue sent back: sent once none of ours runs
        self._settled: set[str] = set()  # pages (URLs) with prompts settled since the pages last drained

    async def aclose(self) -> None:
        """Close the Batch API client's connections."""
        if self.client is not None:
            await self.client.aclose()

    def summary(self, llm: dict[str, Any]) -> dict[str, Any]:
        """run.json's llm.batch_api (batch_figures.py)."""
        return {**self.figures.summary(self.mode.value, llm, (self.lane.tokens_in, self.lane.tokens_out),
                                       self.gateway.tracker.prices, self.settings.batch_discount, self.left,
                                       self.left_kind),
                "prompts_grouped": self.lane.items_grouped}  # prompts that shared a line with other pages

    # -- the rounds ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Before the first drain: batches of the other kind are given up (their prompts go in this run's), an
        imported output file is read, and what the ledger knows of every prompt is loaded."""
        other = BatchKind.API if self.kind is BatchKind.FILE else BatchKind.FILE
        dropped = self.queue.abandon(other)
        if dropped:
            log.warning("%d %s batch(es) of an earlier run given up: this run sends their prompts itself",
                        len(dropped), "exported" if other is BatchKind.FILE else "submitted")
        if self.mode is BatchApi.IMPORT:
            assert self.settings.batch_file is not None
            found, covered = batch_files.imported(self.queue, self.settings.batch_file)
            for record in covered:
                self._settle(record.id, found, f"not in {self.settings.batch_file.name}", status="imported")
            self.figures.ended["imported"] = len(covered)
        self.lane.load(self.queue.prompt_states())

    async def after(self) -> bool:
        """Send what the last step left for a batch and wait for the open batches until some come back; True when
        answers came in for pages or prompts that wait (the step is done again), False when nothing waits or the
        run stops here (`left` says why)."""
        deferred = self.lane.pending
        if deferred:
            self.queue.store_lines(self.lane.lines())
        waiting = self._sendable()
        if self.kind is BatchKind.FILE:
            if waiting:
                return self._leave("exported", self._export(waiting))
            files = self.queue.open_batches(BatchKind.FILE)
            if files:
                return self._leave("exported", f"{len(files)} batch file(s) still wait for --batch-api import: "
                                               + ", ".join(str(record.path) for record in files))
            woken = self.queue.wake(self.spec.run_id)
        else:
            if waiting:
                self.figures.lines += len(waiting)
                await self._send_lines(waiting)
            woken = await self._collected()
            if woken is None:
                return False
        self.lane.load(self.queue.prompt_states())
        if not (deferred or woken):
            return False
        self.figures.rounds += bool(deferred)  # a round asks something new; a batch collected wakes its pages
        if self.figures.rounds >= MAX_ROUNDS:
            log.warning("%d Batch API rounds: what is still asked goes live", self.figures.rounds)
            self.gateway.close_lane()
        return True

    async def _collected(self) -> int | None:
        """Wait until batches bring back prompts of waiting pages, and wake those pages (all of them once no
        batch is out); how many woke, or None when the run stops here (`left` says why)."""
        while True:
            if (self.queue.open_batches() or self.queue.waiting_lines()) \
                    and not await self._wait(once=self.mode is BatchApi.SUBMIT_ONLY):
                if self.mode is BatchApi.SUBMIT_ONLY:  # what had finished is collected; the rest is left
                    self._leave("submitted", self._described("submitted"))
                    return None
                why = "the run was stopped" if self.stop.is_set() else \
                    f"--batch-wait ({self.settings.batch_wait:g} s) ran out"
                self._leave("waiting", self._described("still running") + f" when {why}")
                return None
            out = self.queue.open_batches() or self.queue.waiting_lines()
            # while batches are out, only the pages whose prompts came back go on (the others would only wait
            # again); once none is, every waiting page does
            settled, self._settled = self._settled, set()
            woken = self.queue.wake(self.spec.run_id, settled if out else None)
            if woken or settled or not out:  # prompts came back (a synthesis's too, which wakes no page)
                return woken

    def _leave(self, kind: str, why: str) -> bool:
        self.left, self.left_kind = why, kind
        self._show(why)
        return False

    def _described(self, what: str) -> str:
        opened = self.queue.open_batches()
        ids = ", ".join(record.batch_id or f"(file {record.input_file_id})" for record in opened)
        host = self.client.host if self.client else ""
        unsent = len(self.queue.waiting_lines())
        said = [f"{len(opened)} batch(es) of {sum(record.lines for record in opened)} requests {what} at {host} "
                f"({ids})"] if opened else []
        said += [f"{unsent} requests not sent yet (the Batch API at {host} failed)"] if unsent else []
        return "; ".join(said) + "; --resume or the next nightly run goes on with them"

    # -- sending ------------------------------------------------------------------------------
    def _sendable(self) -> list[LineRecord]:
        """The waiting lines to send now: those not sent yet (new, or the provider failed), and those its full
        queue sent back once none of ours runs."""
        running = bool(self.queue.open_batches())
        return [line for line in self.queue.waiting_lines() if not running or line.custom_id not in self._held]

    async def _send_lines(self, lines: list[LineRecord]) -> bool:
        """Send the waiting lines in files within the limits; False when the provider failed for a while (the
        lines that were not sent stay waiting for the next try)."""
        try:
            for part in batch_files.cut(lines, self.settings.batch_max_lines, self._max_bytes):
                await self._send(part)
        except BatchApiError as exc:
            if not exc.transient:
                raise
            log.warning("%s; the requests not sent yet are tried again at the next poll", exc)
            return False
        return True

    async def _send(self, part: list[LineRecord]) -> None:
        """Upload one file and create its batch, each step recorded before the next; a file the provider refuses
        as too large goes again in halves."""
        assert self.client is not None
        data = batch_files.jsonl(part)
        try:
            file_id = await self.client.upload(f"document-it-run{self.spec.run_id}.jsonl", data)
        except TooLarge as exc:
            await self._halve(part, len(data), str(exc))
            return
        row = self.queue.add_batch(self.spec.run_id, BatchKind.API, [line.custom_id for line in part], len(data),
                                   input_file_id=file_id)
        self.figures.files += 1
        await self._create(row, file_id)

    async def _create(self, row: int, file_id: str) -> BatchState | None:
        """Create the batch of an uploaded file; a refusal (say, a model the provider does not batch) fails its
        lines, asked again live (or, strict, in a new batch), rather than stopping every later run here."""
        assert self.client is not None
        try:
            state = await self.client.create(file_id, {"document_it_run": str(self.spec.run_id)})
        except BatchApiError as exc:
            if exc.transient:
                raise
            log.warning("%s; its %s prompts go again", exc, "live" if self.mode is not BatchApi.STRICT else "batch")
            self._settle(row, {}, str(exc))
            return None
        self.queue.batch_created(row, state.id, state.status)
        self.figures.batches += 1
        log.info("batch %s created: %s", state.id, state.status)
        return state

    async def _halve(self, part: list[LineRecord], size: int, why: str, smaller_files: bool = True) -> None:
        """Send `part` again in two halves (`smaller_files`: and every later file no larger than a half)."""
        self.figures.split += 1
        if len(part) == 1:
            self.queue.refuse_line(self.spec.run_id, part[0], f"too large for a batch file ({why})")
            return
        if smaller_files:
            self._max_bytes = max(1024, min(self._max_bytes, size // 2))
        log.info("the provider refused a batch file of %d lines (%d bytes): sent in halves", len(part), size)
        middle = len(part) // 2
        await self._send(part[:middle])
        await self._send(part[middle:])

    # -- waiting and collecting ---------------------------------------------------------------
    async def _wait(self, once: bool = False) -> bool:
        """Poll the open batches with backoff until one has been collected or none is open (True: the pages it
        answered go on), or --batch-wait runs out (False); `once`: poll each once (submit-only). A poll or a
        send that fails for a while (the provider down) is tried at the next."""
        delay = POLL_FIRST_S
        while True:
            states = []
            for record in self.queue.open_batches():
                try:
                    states.append(await self._poll(record))
                except BatchApiError as exc:
                    if not exc.transient:
                        raise
                    log.warning("%s; polled again in %.0f s", exc, delay)
            self._show(" · ".join(f"{s.id} {s.status} {s.counts.get('completed', 0)}/{s.counts.get('total', 0)}"
                                  + (f" ({s.counts['failed']} failed)" if s.counts.get("failed") else "")
                                  for s in states if s is not None))
            unsent = self._sendable()
            if unsent:
                held = any(line.custom_id in self._held for line in unsent)
                self._held.difference_update(line.custom_id for line in unsent)
                if await self._send_lines(unsent) and not held:  # a full queue is asked again only after a pause
                    continue
            if self._settled or not (self.queue.open_batches() or self.queue.waiting_lines()):
                return True  # prompts came back (answered, or failed and asked again), or nothing is out
            left = self._deadline - time.monotonic()
            if once or left <= 0 or self.stop.is_set():
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), min(delay, left))
            delay = min(delay * POLL_GROWTH, POLL_MAX_S)

    async def _poll(self, record: BatchRecord) -> BatchState | None:
        """One batch's state now, its answers read once it has ended; a batch whose id a killed run did not
        record is found by its file (or created); one the provider no longer knows, or whose results cannot
        be read, fails its lines (asked again) rather than stopping every later run here."""
        assert self.client is not None and record.input_file_id is not None
        try:
            if record.batch_id is None:
                state = await self._found(record, record.input_file_id)
                if state is None:
                    return await self._create(record.id, record.input_file_id)
                self.queue.batch_created(record.id, state.id, state.status)
            else:
                state = await self.client.state(record.batch_id)
        except NotFound as exc:
            log.warning("%s: the provider no longer knows it; its prompts go again", exc)
            self._settle(record.id, {}, f"the provider no longer knows batch {record.batch_id}")
            return None
        self.queue.batch_status(record.id, state.status, state.counts, state.output_file_id, state.error_file_id)
        if state.status in TERMINAL:
            try:
                await self._collect(record, state)
            except BatchApiError as exc:
                if exc.transient:
                    raise
                log.warning("%s; the prompts of batch %s go again", exc, state.id)
                self._settle(record.id, {}, f"its results could not be read ({exc})")
        return state

    async def _found(self, record: BatchRecord, file_id: str) -> BatchState | None:
        """The batch a killed run created from `file_id` but did not record; None when the provider has none (or
        cannot list its batches: then one is created, the lesser risk)."""
        assert self.client is not None
        try:
            return await self.client.find(file_id, record.created)
        except NotFound:
            return None

    async def _collect(self, record: BatchRecord, state: BatchState) -> None:
        assert self.client is not None
        self.figures.ended[state.status] = self.figures.ended.get(state.status, 0) + 1
        ahead = [other for other in self.queue.open_batches() if other.id != record.id]
        lines = self.queue.lines_of(record.id) if state.too_large or state.queue_full else []
        if state.queue_full and (ahead or len(lines) == 1):  # sent again once none of ours runs
            self.queue.unbatch(record.id)
            self._held.update(line.custom_id for line in lines)
            log.info("batch %s waits for the provider's queue (%s): sent again once none of ours runs", state.id,
                     "; ".join(state.errors))
            return
        if lines:  # too large, or alone too large for the queue: its lines go again in two halves
            self.queue.unbatch(record.id)
            log.info("batch %s refused (%s): its lines go again in two halves", state.id, "; ".join(state.errors))
            await self._halve(lines, record.bytes, "; ".join(state.errors), smaller_files=not state.queue_full)
            return
        found: dict[str, dict[str, Any]] = {}
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                found.update(batch_files.records(await self.client.content(file_id)))
        missing = f"the batch {state.status}" + (f" ({'; '.join(state.errors)})" if state.errors else "")
        answered, failed = self._settle(record.id, found, missing)
        log.info("batch %s %s: %d prompts answered, %d to ask again", state.id, state.status, answered, failed)

    def _settle(self, row: int, found: dict[str, dict[str, Any]], missing: str,
                status: str = "collected") -> tuple[int, int]:
        """Read every line of batch `row` from its output records (`missing`: why a line without one failed), keep
        the answers and count the rest as failed; (answered, failed)."""
        answered: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for line in self.queue.lines_of(row):
            self._settled.update(page for _, _, page in line.items)
            outcome = self.lane.read(line, found.get(line.custom_id))
            if line.custom_id not in found:
                outcome.failed = {key: missing for key in outcome.failed}
            answered.update(outcome.answered)
            failed.update(outcome.failed)
            self.figures.requests += outcome.ok
        self.figures.answered += len(answered)
        self.figures.failed += len(failed)
        self.queue.settle(row, answered, failed, status)
        return len(answered), len(failed)

    # -- batch files for self-hosters ---------------------------------------------------------
    def _export(self, lines: list[LineRecord]) -> str:
        """Write the lines as batch input files in the output folder; what to do next."""
        paths = batch_files.export(self.queue, self.spec.run_id, lines, self.settings.output_dir,
                                   self.settings.batch_max_lines, self._max_bytes)
        self.figures.files += len(paths)
        self.figures.lines += len(lines)
        return (f"wrote {len(lines)} requests to {', '.join(str(p) for p in paths)}; run them (e.g. vllm run-batch "
                f"-i FILE -o OUT --model {self.settings.model}) and continue with --batch-api import OUT")

    def _show(self, text: str) -> None:
        if self.progress is not None:
            self.progress.batches(text)
