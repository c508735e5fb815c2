"""The run loop, the same for every run and mode: claim a page from the job queue, fetch it (conditionally),
skip it when unchanged, parse it, queue its links, analyse it, record the outcome in the queue (the run's
memory) and emit the result."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import base64
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..analysis.agent import PageAgent
from ..config import MARKDOWN_OUTPUTS, Settings
from ..core.dispatcher import Stages
from ..core.job_queue import Job, JobQueue, JobState, Outcome
from ..core.page_memory import PageRecord
from ..errors import BatchDeferred
from .crawl import Crawl, CrawlSpec
from ..fetch import FetchLimits
from .incremental import Change, content_hash, page_record, what_changed
from ..models import PAGE_TASKS, DocRef, DocResult, DocStatus, Fetched
from .steps import analyze_page, failed_result, parse_step
from ..scope import url_key

__all__ = ["RunSpec", "JobWorker", "open_worker", "worker_name", "not_analysed"]

log = logging.getLogger(__name__)

_IDLE_S = 0.25  # how long an idle worker waits before asking the queue again (others may add links)
_CLAIM_BATCH = 8  # at most this many jobs claimed in one transaction (a quarter of the pages in flight)
_GONE = (404, 410)


@dataclass(frozen=True)
class RunSpec:
    """What every worker of one run needs to know (picklable, for worker processes).

    `oneshot`: a run over a known list of pages, started without --incremental or --enable-queue; when a
    budget runs out its remaining pages are recorded as not analysed (not_analysed) rather than left for
    --resume.
    `database`: the job queue's file (the state dir's, or a temporary one with --no-queue)."""

    run_id: int
    source: str
    incremental: bool = False
    crawl: CrawlSpec | None = None
    oneshot: bool = False
    database: Path | None = None
    nav_topics: bool = False  # topics from the pages' up links once all are parsed (a crawl, a flat sitemap)
    title_from_pages: bool = False  # the index names no site: the report is titled by the pages' <title>s


@dataclass
class Counters:
    """What the workers did besides analysing; summed into run.json."""

    parsed: int = 0
    not_modified_304: int = 0   # the server answered 304
    same_content: int = 0       # downloaded, but the bytes hash as before
    robots_disallowed: int = 0  # disallowed by robots.txt
    not_documents: int = 0      # crawled links that were not documents (images, archives…)
    gone: int = 0               # known pages now answering 404/410
    budget: str | None = None   # why no new page was started, if a budget ran out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobWorker:
    """Drains the job queue of one run with at most `in_flight` pages under way in this process."""

    def __init__(self, spec: RunSpec, settings: Settings, queue: JobQueue, stages: Stages, agent: PageAgent | None,
                 crawl: Crawl | None, shared: bool = False) -> None:
        self.spec, self.settings, self.queue = spec, settings, queue
        self.stages, self.agent, self.crawl = stages, agent, crawl
        self.shared = shared  # other processes use the queue too
        self._recorder = _Recorder(self._db, queue.finish_many)
        self.name = worker_name()
        self.counters = Counters()
        self.on_discovered: Callable[[], None] | None = None  # told when the crawl queued new pages (progress)
        self.on_skipped: Callable[[Job], None] | None = None  # told of a page that ends with no result

    async def drain(self, emit: Callable[[DocResult], None], in_flight: int, stop: Any,
                    waited_only: bool = False) -> None:
        """Take pages until none is left (or `stop` is set, or a budget runs out); emit each recorded result.
        `waited_only`: only pages that waited for a batch, which finish whatever was spent (their answers are paid
        for); pages a spent budget kept from starting stay for --resume."""
        wake = asyncio.Event()
        claimed: collections.deque[Job] = collections.deque()  # taken a few at a time: one transaction for several
        batch = max(1, min(_CLAIM_BATCH, in_flight // 4))

        async def take() -> Job | None:
            if not claimed:
                claimed.extend(await self._db(self.queue.claim_many, self.spec.run_id, self.name, batch, waited_only))
            return claimed.popleft() if claimed else None

        async def loop() -> None:
            while not stop.is_set():
                spent = self.agent.gateway.budget_reason() if self.agent and not waited_only else None
                if spent:  # pages under way finish; the rest stays pending (a one-shot run records them, at the end)
                    self.counters.budget = spent
                    return
                job = await take()
                if job is None:
                    if not await self._db(self.queue.active, self.spec.run_id, waited_only):
                        return
                    wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wake.wait(), _IDLE_S)
                    continue
                result = await self.one(job)
                wake.set()
                if result is not None:
                    emit(result)
                elif self.on_skipped is not None:
                    self.on_skipped(job)

        renewer = asyncio.create_task(self._renew())
        tasks = [asyncio.create_task(loop()) for _ in range(max(1, in_flight))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in (*tasks, renewer):
                task.cancel()
            await asyncio.gather(*tasks, renewer, return_exceptions=True)
            await self._recorder.written()
            # pages this process held but did not finish go back to the queue for whoever comes next
            await self._db(self.queue.release, self.spec.run_id, self.name)

    async def _db(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One call on the job queue. In one process its transactions take a fraction of a millisecond, less
        than handing them to a thread; when worker processes share the file one may wait for another's
        lock, so it goes to a thread and the loop carries on."""
        if self.shared:
            return await asyncio.to_thread(call, *args, **kwargs)
        return call(*args, **kwargs)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.queue.lease_s / 3)
            await self._db(self.queue.renew, self.spec.run_id, self.name)

    async def one(self, job: Job) -> DocResult | None:
        """Process one claimed page; returns its result once recorded (None when skipped or taken over)."""
        ref = job.ref
        if self.crawl is not None:
            refused = await asyncio.to_thread(self.crawl.refused, ref.url)
            if refused:
                self.counters.robots_disallowed += 1
                return await self._finish(job, JobState.SKIPPED, None, note=refused)
        previous = None
        if self.spec.incremental:
            previous = await self._db(self.queue.previous, self.spec.source, job.key)
            previous = previous if previous is not None and previous.result else None
        reusable = previous is not None and self._reusable(previous)
        timings: dict[str, float] = {}
        kept = await self._db(self.queue.kept_page, self.spec.run_id, job.key) if self.settings.batch_on else None
        if kept is not None:  # it waited for a batch: analysed from the download it was asked from
            fetched = _unkept(kept)
        else:
            clock = time.perf_counter()
            fetched = await self.stages.fetch(ref, _validators(previous) if reusable else None)
            timings["fetch"] = round(time.perf_counter() - clock, 4)
            if fetched.final_url != ref.url and url_key(fetched.final_url) != job.key:
                if not await self._db(self.queue.claim_alias, self.spec.run_id, url_key(fetched.final_url),
                                      fetched.final_url, job.key):  # the redirect lands on a page the run has
                    return await self._finish(job, JobState.SKIPPED, None, note=f"same page as {fetched.final_url}")
            if previous is not None and fetched.status == 304:
                self.counters.not_modified_304 += 1
                return await self._unchanged(job, previous, fetched, timings)
            if not fetched.ok:
                return await self._not_fetched(job, previous, fetched, timings)
            if reusable and previous is not None and content_hash(fetched.content) == previous.content_hash:
                self.counters.same_content += 1
                return await self._unchanged(job, previous, fetched, timings)
        first = kept is None  # a page that waited for a batch was counted, kept and followed when first parsed
        page = await parse_step(fetched, self.stages, self.settings, timings, again=not first)
        if isinstance(page, DocResult):
            return await self._finish(job, JobState.FAILED, page)
        self.counters.parsed += first
        if first and MARKDOWN_OUTPUTS.intersection(self.settings.outputs):  # for pages/ and llms-full.txt
            await self._db(self.queue.save_markdown, self.spec.source, job.key, page.markdown)
        if first and self.crawl is not None:  # queue the links first, so other workers can start on them meanwhile
            await self._add(self.crawl.follow(page.outlinks, job.depth))
        if self.agent is None:  # crawl and parse only (benchmarks/bench_crawl.py measures exactly that)
            return await self._finish(job, JobState.DONE, DocResult(
                url=ref.url, title=page.title, topic=ref.topic, status=DocStatus.COMPLETED, timings=timings,
                text_tokens=page.text_tokens))
        try:
            result = await analyze_page(ref, page, self.agent, self.settings, timings)
        except BatchDeferred:  # its prompts wait for a batch: kept as downloaded, analysed once they are answered
            if first:
                await self._db(self.queue.keep_page, self.spec.run_id, job.key, _kept(fetched))
            return await self._finish(job, JobState.WAITING, None)
        if result.status is DocStatus.FAILED:
            return await self._finish(job, JobState.FAILED, result)
        result = replace(result, tasks=[task.value for task in self.agent.tasks])  # what _reusable checks next time
        change = (Change.CHANGED if previous else Change.ADDED) if self.spec.incremental else None
        note = what_changed(previous, page) if self.spec.incremental else ""
        if previous is not None and not reusable and content_hash(fetched.content) == previous.content_hash:
            why = "--refresh" if self.settings.refresh else "new analyser, model, fields or tasks"
            note = f"same content, analysed again ({why})"
        # the page as tomorrow's nightly run compares it (a one-shot run leaves the page memory alone)
        record = None if self.spec.oneshot else page_record(job.key, fetched, page, result.to_dict(), page.outlinks)
        return await self._finish(job, JobState.DONE, result, change, note, record)

    def _reusable(self, previous: PageRecord) -> bool:
        """A page's last analysis may stand in for a new one unless --refresh or another analyser/model/
        --extract-fields/--tasks."""
        result = previous.result or {}
        return not self.settings.refresh and result.get("provider") == self.settings.provider_name \
            and result.get("model") == self.settings.model_name \
            and list(result.get("fields") or {}) == list(self.settings.extract_fields) \
            and _asked(result) == [task.value for task in self.settings.tasks]

    async def _unchanged(self, job: Job, previous: PageRecord, fetched: Fetched,
                         timings: dict[str, float]) -> DocResult | None:
        """Keep the last analysis (no parse, no LLM call); a crawl still follows the page's last known links."""
        if self.crawl is not None:
            await self._add(self.crawl.follow(previous.links, job.depth))
        stored = DocResult.from_dict(previous.result or {})
        result = replace(stored, url=job.ref.url, topic=job.ref.topic, timings=timings, reused=True)
        validators = fetched.validators or {}
        record = replace(previous, url=job.ref.url, topic=job.ref.topic, result=result.to_dict(),
                         etag=validators.get("ETag", previous.etag),
                         last_modified=validators.get("Last-Modified", previous.last_modified))
        return await self._finish(job, JobState.DONE, result, Change.UNCHANGED, "", record)

    async def _not_fetched(self, job: Job, previous: PageRecord | None, fetched: Fetched,
                           timings: dict[str, float]) -> DocResult | None:
        if previous is not None and self.crawl is not None and fetched.status not in _GONE:
            # down for tonight, not gone: the pages it linked to are still part of the site
            await self._add(self.crawl.follow(previous.links, job.depth))
        if previous is not None and fetched.status in _GONE:
            self.counters.gone += 1
            await self._db(self.queue.mark_removed, self.spec.source, [job.key])
            return await self._finish(job, JobState.SKIPPED, None, Change.REMOVED, f"gone (HTTP {fetched.status})")
        error = fetched.error or "unknown error"
        if self.crawl is not None and job.depth > 0 and error.startswith("unsupported content type"):
            self.counters.not_documents += 1  # a crawled link to something that is not a document
            return await self._finish(job, JobState.SKIPPED, None, note=error)
        return await self._finish(job, JobState.FAILED, failed_result(job.ref, self.settings, "fetch", error,
                                                                      timings=timings))

    async def _finish(self, job: Job, state: JobState, result: DocResult | None, change: Change | None = None,
                      note: str = "", record: PageRecord | None = None) -> DocResult | None:
        done = await self._recorder.record(Outcome(job, state, result.to_dict() if result else None,
                                                   change.value if change else "", note, record, self.spec.source))
        if not done:
            log.info("%s was taken over by another worker after its lease ran out", job.ref.url)
        return result if done else None

    async def _add(self, jobs: list[tuple[str, Any, int]]) -> None:
        if jobs and self.crawl is not None:
            added = await self._db(self.queue.add, self.spec.run_id, jobs, self.crawl.spec.max_pages)
            if added and self.on_discovered is not None:
                self.on_discovered()


def not_analysed(queue: JobQueue, spec: RunSpec, settings: Settings, reason: str) -> list[DocResult]:
    """Record every page still pending as failed "not analysed: <reason>" (a one-shot run whose budget ran
    out, once its workers stopped); returns their results."""
    jobs = queue.claim_many(spec.run_id, worker_name(), queue.total(spec.run_id))
    results = [failed_result(job.ref, settings, "not analysed", reason) for job in jobs]
    done = queue.finish_many([Outcome(job, JobState.FAILED, result.to_dict()) for job, result in zip(jobs, results)])
    return [result for result, ok in zip(results, done) if ok]


class _Recorder:
    """Records finished pages in the job queue a group at a time: the outcomes that arrive while one group is
    written (or, in one process, within one turn of the event loop) share the next transaction. Each page's
    result is emitted only once its group is committed."""

    def __init__(self, db: Callable[..., Any], finish_many: Callable[[list[Outcome]], list[bool]]) -> None:
        self._db, self._finish_many = db, finish_many  # the worker's way to call the queue, and what records
        self._waiting: list[tuple[Outcome, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, outcome: Outcome) -> bool:
        """True once `outcome` is committed; False when its claim was lost to another worker."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((outcome, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        return await future

    async def written(self) -> None:
        """Wait for the group being written (before the worker gives its unfinished jobs back)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            outcomes = [outcome for outcome, _ in group]
            try:
                done = await self._db(self._finish_many, outcomes)
            except BaseException as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                raise
            for (_, future), ok in zip(group, done):
                if not future.done():
                    future.set_result(ok)


def _asked(result: dict[str, Any]) -> list[str]:
    """The analyses a stored result answered; results stored before --tasks existed answered all five."""
    tasks = result.get("tasks")
    return list(tasks) if tasks is not None else [task.value for task in PAGE_TASKS]


def _kept(fetched: Fetched) -> bytes:
    """A download as the job queue keeps it while its page waits for a batch (JSON, the bytes in base64)."""
    data = asdict(fetched)
    data["content"] = base64.b64encode(fetched.content).decode("ascii")
    return json.dumps(data).encode()


def _unkept(kept: bytes) -> Fetched:
    data = json.loads(kept)
    return Fetched(**{**data, "ref": DocRef(**data["ref"]), "content": base64.b64decode(data["content"])})


def _validators(previous: PageRecord | None) -> dict[str, str] | None:
    if previous is None:
        return None
    found = {"ETag": previous.etag, "Last-Modified": previous.last_modified}
    return {name: value for name, value in found.items() if value} or None


@contextlib.contextmanager
def open_worker(settings: Settings, spec: RunSpec, queue: JobQueue, plan: Any, memo: Any, pool: Any = None,
                shared: bool = False) -> Any:
    """A JobWorker with its stages (the caller sets `worker.agent` once its gateway is open); `pool`: a parse
    pool started earlier (Stages); `shared`: worker processes share the queue."""
    crawl = Crawl(spec.crawl, FetchLimits.from_settings(settings)) if spec.crawl else None
    with Stages(settings, plan, memo, redirect_check=crawl.redirect_check if crawl else None,
                robots=crawl.robots if crawl else None, processes=pool) as stages:
        yield JobWorker(spec, settings, queue, stages, None, crawl, shared), stages  # type: ignore[arg-type]
