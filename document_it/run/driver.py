"""Every run drives the one loop (run/loop.py) over a job queue: one-shot runs, crawls, crash-resume and
nightly incremental runs alike.

The queue (--state-dir/jobs.sqlite; a temporary one with --no-queue) is the run's memory: every page is a
job, every finished page's result is stored with it, and results.jsonl, report.md and run.json are written
from it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from ..analysis.gateway import Gateway, build_gateway
from ..analysis.strategy import resolve_strategy
from ..config import MARKDOWN_OUTPUTS, Mode, Settings
from ..core.bounded import BoundedPool
from ..core.dispatcher import PLANS
from ..core.job_queue import JobQueue, JobState, RunInfo
from ..core.progress import RunProgress
from .remote import finish_agent, page_agent
from ..core.resources import ResourceSampler
from ..core.runlock import RunLock, StateDirBusy
from ..core.shutdown import Shutdown
from .crawl import Crawl, CrawlSpec, NewJob
from ..errors import ConfigError, Interrupted, OutputError, SourceError
from ..fetch import USER_AGENT, FetchLimits
from .batch_rounds import BatchRounds
from .incremental import changes_block, render_changes
from .loop import JobWorker, RunSpec, not_analysed, open_worker
from .options import stored_options
from ..models import DocResult, DocStatus
from ..core.cache import open_memo
from .summary import summarize_run
from .site_shape import flat_topics, home_title, placed, topic_order
from .topics import NoSynthesis, early_syntheses, syntheses
from ..navigation import pages_site_name
from ..report import ResultStream, atomic_write_text, write_outputs
from ..scope import url_key
from ..sources import LlmsIndex

__all__ = ["drive", "is_oneshot", "RETRY_FAILED"]

log = logging.getLogger(__name__)

RETRY_FAILED = 3  # --resume retries a failed page until it has been tried this many times


def is_oneshot(settings: Settings, index: LlmsIndex | None) -> bool:
    """A new run over a known list of pages, neither --incremental nor --enable-queue: when a budget runs out
    its remaining pages are recorded as not analysed (a crawl, a nightly run or --enable-queue leaves them
    pending for --resume). A crawl needs the state dir's queue: --no-queue with one is an error."""
    crawl = index is not None and index.crawl_from is not None
    if settings.enable_queue is False and crawl:
        raise ConfigError("crawling a site needs the job queue: drop --no-queue")
    return not (settings.enable_queue or settings.resume or settings.incremental or crawl or settings.batch_on)


def drive(settings: Settings, index: LlmsIndex | None, chosen: Settings | None = None,
          resources: ResourceSampler | None = None, pool: BoundedPool | None = None) -> dict[str, Any]:
    """Start (from `index`) or resume the run in --state-dir; returns run.json's content.

    `chosen` is what the user asked for (before e.g. a simulator was started for the run): what --resume
    restores."""
    oneshot = is_oneshot(settings, index)
    with _job_database(settings, oneshot) as database, JobQueue(database) as queue:
        spec, settings, title, resumed = _open_run(queue, settings, index, chosen or settings, oneshot, database)
        return asyncio.run(_run(settings, spec, queue, title, resumed, resources, pool))


@contextlib.contextmanager
def _job_database(settings: Settings, oneshot: bool) -> Iterator[Path]:
    """The state dir's jobs.sqlite, locked for this run (a killed run can be resumed); with --no-queue, or for
    a one-shot run that would get in another run's way, a temporary database."""
    with contextlib.ExitStack() as stack:
        if settings.enable_queue is not False and _hold_state_dir(stack, settings, oneshot):
            yield settings.jobs_path
        else:
            yield stack.enter_context(_temporary_database(settings))


def _hold_state_dir(stack: contextlib.ExitStack, settings: Settings, oneshot: bool) -> bool:
    """Lock the state dir for this run. A one-shot run that finds another run holding it, or an unfinished
    crawl or nightly run in it, goes without (False): that run stays resumable."""
    lock = RunLock(settings.state_dir)
    try:
        lock.__enter__()
    except StateDirBusy as exc:
        if not oneshot:
            raise
        log.warning("%s; this one-shot run keeps its jobs in a temporary database (it cannot be resumed)", exc)
        return False
    if oneshot and settings.jobs_path.exists():
        with JobQueue(settings.jobs_path) as queue:
            other = queue.unfinished_run()
        if other is not None and not other.options.get("oneshot"):
            lock.__exit__(None, None, None)
            log.warning("%s holds an unfinished run over %s (--resume continues it); this one-shot run keeps its "
                        "jobs in a temporary database (it cannot be resumed)", settings.jobs_path, other.source)
            return False
    stack.push(lock.__exit__)
    return True


@contextlib.contextmanager
def _temporary_database(settings: Settings) -> Iterator[Path]:
    """In memory, or a file the worker processes of process mode share, removed after the run."""
    if settings.mode is not Mode.PROCESS:
        yield Path(":memory:")
        return
    with tempfile.TemporaryDirectory(prefix="document-it-jobs-") as folder:
        yield Path(folder) / "jobs.sqlite"


def _open_run(queue: JobQueue, settings: Settings, index: LlmsIndex | None, chosen: Settings, oneshot: bool,
              database: Path) -> tuple[RunSpec, Settings, str, bool]:
    if settings.resume:
        info = queue.unfinished_run()
        if info is None:
            raise ConfigError(f"nothing to resume in {settings.state_dir}: no run was interrupted there")
        queue.finish_run(info.id, "running")
        held, retried = queue.release(info.id), queue.retry_failed(info.id, RETRY_FAILED)
        if not settings.batch_on:  # resumed without the Batch API: pages that waited for batches are asked live
            held += queue.wake(info.id)
        log.info("resuming run %d: %d pages were under way, %d failed pages will be retried", info.id, held, retried)
        return _spec(info, database), _resolved(settings, None), info.options.get("title", ""), True
    assert index is not None
    crawl = CrawlSpec.from_settings(settings, index.crawl_from) if index.crawl_from else None
    if crawl is not None and settings.limit:
        crawl = CrawlSpec(**{**crawl.to_options(), "max_pages": min(crawl.max_pages, settings.limit)})
    seeds = _seeds(crawl, settings) if crawl else []
    stale = queue.unfinished_run()
    if stale is not None:
        out = "" if not queue.open_batches() else " (its batches are collected by this run)" if settings.batch_on \
            else " (its batches are not collected: run with --batch-api to collect them)"
        log.warning("starting a new run; the unfinished run over %s is dropped (--resume would have continued it)%s",
                    stale.source, out)
        queue.finish_run(stale.id, "aborted")
    options = {"incremental": settings.incremental, "title": index.title, "limited": bool(settings.limit),
               "crawl": crawl.to_options() if crawl else None, "oneshot": oneshot,
               "nav_topics": crawl is not None or (not index.sectioned and flat_topics(index.refs)),
               "title_from_pages": not index.named,
               "topic_order": list(dict.fromkeys(ref.topic for ref in index.refs)),  # the site's own order
               "settings": stored_options(chosen)}
    info = queue.start_run(settings.source, options)
    if settings.batch_on:
        queue.reset_tries()  # --batch-api strict counts each run's tries
    if crawl is not None:
        queue.add(info.id, seeds, crawl.max_pages)
    else:
        queue.add(info.id, [(url_key(ref.url), ref, 0) for ref in index.refs])
    return _spec(info, database), _resolved(settings, len(index.refs) if oneshot else None), index.title, False


def _resolved(settings: Settings, pages: int | None) -> Settings:
    """--task-strategy auto decided for this run from its pages; crawls, nightly and resumed runs, whose
    count is not known up front, are combined."""
    return settings.with_(task_strategy=resolve_strategy(settings, pages))


def _seeds(spec: CrawlSpec, settings: Settings) -> list[NewJob]:
    """The crawl's first jobs; a start page robots.txt forbids is an error, not an empty run."""
    crawl = Crawl(spec, FetchLimits.from_settings(settings))
    refused = crawl.refused(spec.start)
    if refused:
        raise SourceError(f"cannot crawl from {spec.start}: {refused} (user agent {USER_AGENT})")
    return crawl.seeds()


def _spec(info: RunInfo, database: Path) -> RunSpec:
    crawl = info.options.get("crawl")
    return RunSpec(info.id, info.source, bool(info.options.get("incremental")),
                   CrawlSpec.from_options(crawl) if crawl else None, bool(info.options.get("oneshot")), database,
                   bool(info.options.get("nav_topics")), bool(info.options.get("title_from_pages")))


async def _run(settings: Settings, spec: RunSpec, queue: JobQueue, title: str, resumed: bool,
               resources: ResourceSampler | None, pool: BoundedPool | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    out = settings.output_dir
    # results.jsonl starts as what the queue already holds (a resumed run's finished pages), then grows
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                     for r in queue.results(spec.run_id)))
    stream = ResultStream(out / "results.jsonl", append=True)
    llm: dict[str, Any] = {"prompts": 0}
    synthesis: dict[str, Any] = {}
    counters: dict[str, Any] = {}
    # a resumed run's results (run.json `work`), not those it had before; a new run's are all the queue holds
    made: list[DocResult] | None = [] if resumed else None
    status = "completed"
    async with Shutdown(settings.grace_s) as shutdown:
        total = _pages(queue, spec)
        with RunProgress(total, enabled=not settings.quiet, done=total - _open_jobs(queue, spec),
                         failed=queue.counts(spec.run_id)[JobState.FAILED],
                         growing=spec.crawl is not None) as progress:
            def emit(result: DocResult) -> None:
                if made is not None:
                    made.append(result)
                stream.write(result)
                # a crawl's total grows as it finds pages (counted in the queue); other runs know theirs
                progress.advance(result, total=_pages(queue, spec) if spec.crawl is not None else None)

            try:
                llm, synthesis, counters = await _execute(settings, spec, queue, emit, progress, shutdown, pool)
                if spec.oneshot and counters.get("budget") and not shutdown.stopped:
                    for result in not_analysed(queue, spec, settings, counters.pop("budget")):
                        emit(result)
            except BaseException as exc:
                status = "interrupted" if shutdown.stopped or isinstance(
                    exc, (KeyboardInterrupt, asyncio.CancelledError)) else f"aborted: {exc}"
                if shutdown.signum is None:
                    raise
                # the grace period ran out (or a second signal came): pages under way were cancelled and
                # went back to the queue; what finished is written below and Interrupted is raised
            finally:
                stream.close()
                if status == "completed" and shutdown.stopped:
                    status = "interrupted"
                if status == "completed" and counters.get("budget"):
                    status = f"stopped: {counters['budget']}"
                if status == "completed" and counters.get("batches_left"):  # the rest waits for batches
                    status = f"waiting for batches: {counters['batches_left']}"
                if status == "completed" and _open_jobs(queue, spec):  # e.g. worker processes died
                    queue.release(spec.run_id)
                    status = "aborted: the workers stopped before every page was done"
                summary = _finish(settings, spec, queue, title, resumed, status, llm, synthesis, counters,
                                  time.perf_counter() - started, resources, made)
    if shutdown.signum is not None:
        raise Interrupted(shutdown.signum, resumable=spec.database == settings.jobs_path)
    return summary


def _pages(queue: JobQueue, spec: RunSpec) -> int:
    """Jobs that are (or will be) pages of the report: all but the skipped ones."""
    counts = queue.counts(spec.run_id)
    return sum(counts.values()) - counts[JobState.SKIPPED]


def _open_jobs(queue: JobQueue, spec: RunSpec) -> int:
    counts = queue.counts(spec.run_id)
    return counts[JobState.PENDING] + counts[JobState.IN_PROGRESS] + counts[JobState.WAITING]


async def _execute(settings: Settings, spec: RunSpec, queue: JobQueue, emit: Any, progress: RunProgress,
                   shutdown: Shutdown, pool: BoundedPool | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Drain the queue here (or over worker processes in process mode), with the topic syntheses."""
    memo = open_memo(settings)
    if settings.mode is Mode.PROCESS:
        from .processes import run_queue_workers

        async with build_gateway(settings, memo=memo) as gateway:
            pages = None if spec.crawl is not None else await asyncio.to_thread(_open_jobs, queue, spec)
            exports, counters = await run_queue_workers(settings, spec, emit, shutdown, pages) if pages != 0 else ([], {})
            for exported in exports:
                gateway.absorb(exported)
            # the workers held the whole cap while they ran, so the syntheses wait for them
            synthesis = {} if shutdown.stopped or settings.no_synthesis else await syntheses(gateway, queue, spec, {})
        return gateway.summary(), synthesis, counters
    plan = PLANS[settings.mode]
    with open_worker(settings, spec, queue, plan, memo, pool) as (worker, stages):
        async with build_gateway(settings, stages.run_cpu, plan.llm_concurrency(settings), memo) as gateway:
            progress.watch(gateway, stages)
            rounds = BatchRounds(settings, spec, queue, gateway, progress, shutdown.stopping) \
                if settings.batch_on else None
            try:
                llm, synthesis, counters = await _analysed(settings, spec, queue, emit, progress, shutdown, worker,
                                                           gateway, plan, rounds)
            finally:
                if rounds is not None:
                    await rounds.aclose()
            if rounds is not None:
                llm["batch_api"] = rounds.summary(llm)
                counters["batches_left"] = rounds.left
    return llm, synthesis, {**counters, "cluster": stages.cluster}


async def _analysed(settings: Settings, spec: RunSpec, queue: JobQueue, emit: Any, progress: RunProgress,
                    shutdown: Shutdown, worker: JobWorker, gateway: Gateway, plan: Any,
                    rounds: BatchRounds | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Drain the queue in this process (again after each batch round), then the topic syntheses."""
    stages = worker.stages
    # with batches, the syntheses wait for every page (their prompts go in the last round)
    topics = NoSynthesis() if settings.no_synthesis or rounds else await early_syntheses(gateway, queue, spec)

    def keep(result: DocResult) -> None:
        emit(result)
        topics.page_done(result)

    worker.on_discovered = lambda: progress.discovered(_pages(queue, spec))
    worker.on_skipped = lambda job: topics.page_skipped(job.ref.topic)
    worker.agent = agent = page_agent(gateway, settings, stages)
    try:
        if rounds is not None:
            await rounds.start()
        await worker.drain(keep, plan.docs_in_flight(settings), shutdown.stopping)
        while rounds is not None and not shutdown.stopped and await rounds.after():
            await worker.drain(keep, plan.docs_in_flight(settings), shutdown.stopping, waited_only=True)
    except BaseException:
        topics.cancel()
        raise
    finally:
        await finish_agent(agent)
    if shutdown.stopped or settings.no_synthesis or (rounds is not None and rounds.left):
        topics.cancel()
        synthesis = {}
    else:
        synthesis = await syntheses(gateway, queue, spec, await topics.results(), rounds)
    return gateway.summary(), synthesis, worker.counters.as_dict()


def _finish(settings: Settings, spec: RunSpec, queue: JobQueue, title: str, resumed: bool, status: str,
            llm: dict[str, Any], synthesis: dict[str, Any], counters: dict[str, Any], wall: float,
            resources: ResourceSampler | None = None, made: list[DocResult] | None = None) -> dict[str, Any]:
    """Write the outputs from the queue (every page once) and close the run."""
    complete = status == "completed"
    if spec.incremental and complete:
        _mark_removed(queue, spec)
    results = placed(spec, [DocResult.from_dict(r) for r in queue.results(spec.run_id)])
    if spec.title_from_pages:  # a sitemap, a URL list or a crawl names no site: its pages' <title>s may,
        title = pages_site_name(results) or home_title(spec, results) or title  # or a crawl's start page
    counts = queue.counts(spec.run_id)
    summary = summarize_run(settings, results, llm, wall, status, resources=resources, cluster=counters.get("cluster"),
                            total=len(results) + _open_jobs(queue, spec),
                            this_run=made)
    summary["output_dir"] = str(settings.output_dir)
    found = {url: i for i, url in enumerate(queue.urls(spec.run_id))}
    results.sort(key=lambda r: found.get(r.url, len(found)))  # the site's reading order, for the report
    summary["topic_order"] = topic_order(queue, spec, results)
    if spec.database == settings.jobs_path:  # --no-queue's temporary database is gone after the run
        summary["queue"] = {"run_id": spec.run_id, "resumed": resumed,
                            "jobs": {state.value: n for state, n in counts.items()}}
    if not spec.oneshot:  # pages a crawl or a nightly run skipped were not parsed
        summary["stages"]["pages_parsed"] = counters.get("parsed", 0)
    if spec.crawl is not None:
        summary["crawl"] = {**spec.crawl.to_options(), "pages_found": queue.total(spec.run_id),
                            "robots_disallowed": counters.get("robots_disallowed", 0),
                            "not_documents": counters.get("not_documents", 0)}
    changes = queue.changes(spec.run_id)
    if spec.incremental:
        summary["changes"] = {**changes_block(changes), "not_modified_304": counters.get("not_modified_304", 0),
                              "same_content": counters.get("same_content", 0)}
    with contextlib.suppress(OSError, OutputError) if not complete else contextlib.nullcontext():
        # a run stopping while pages wait for batches (left to them, stopped, aborted) leaves the last finished
        # run's report, llms.txt and changes.md in place
        outputs = () if counts[JobState.WAITING] else settings.outputs
        write_outputs(settings.output_dir, results, synthesis, summary, title, outputs,
                      _markdown(queue, spec, settings, results) if outputs else {})
        if spec.incremental and outputs == settings.outputs:  # not while pages wait for batches
            atomic_write_text(settings.output_dir / "changes.md", render_changes(title, changes, complete))
    # an aborted run (e.g. a rejected API key) stays resumable, like an interrupted one
    queue.finish_run(spec.run_id, "completed" if complete else "interrupted")
    if complete:
        queue.prune(keep_runs=3)
    return summary


def _markdown(queue: JobQueue, spec: RunSpec, settings: Settings, results: list[DocResult]) -> dict[str, str]:
    """url -> the clean Markdown kept for each completed page, when pages/ or llms-full.txt is written."""
    if not MARKDOWN_OUTPUTS.intersection(settings.outputs):
        return {}
    keys = {url_key(r.url): r.url for r in results if r.status is DocStatus.COMPLETED}
    return {keys[key]: text for key, text in queue.markdown(spec.source, keys).items()}


def _mark_removed(queue: JobQueue, spec: RunSpec) -> None:
    """Pages the last runs knew that this complete run never reached are gone from the source."""
    options = queue.run(spec.run_id).options
    if options.get("limited") or (spec.crawl and queue.total(spec.run_id) >= spec.crawl.max_pages):
        log.info("not marking unseen pages as removed: this run was cut short by --limit / --max-pages")
        return
    seen = queue.keys(spec.run_id)
    gone = {key: url for key, url in queue.known(spec.source).items() if key not in seen}
    if gone:
        queue.mark_removed(spec.source, gone)
        queue.add_removed(spec.run_id, [(key, url, "no longer listed or linked") for key, url in gone.items()])
