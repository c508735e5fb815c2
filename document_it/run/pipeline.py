"""The orchestrator: one coroutine per document, bounded in flight, results streamed as they finish."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .. import __version__
from ..analysis.endpoint import check_endpoint
from ..config import LLMKind, Mode, Settings
from ..core.bounded import BoundedPool
from ..core.dispatcher import PLANS, Stages, Where, start_parse_pool
from ..core.shutdown import Shutdown
from ..errors import DocumentItError, Interrupted, LLMFatalError, OutputError, ParseError, WorkerLost
from ..fetch import FetchLimits
from ..models import DocRef, DocResult, DocStatus, Fetched, ParsedDoc
from ..report import ResultStream, write_outputs
from ..sources import discover
from ..work import work_block

if TYPE_CHECKING:  # the LLM stack (LangChain, LangGraph) is imported only once a run has its pages
    from ..analysis.agent import PageAgent
    from ..analysis.gateway import Gateway
    from ..analysis.prompts import TopicInput
    from ..core.resources import ResourceSampler

__all__ = ["run", "analyze_refs", "analyze_document", "parse_step", "analyze_page", "failed_result",
           "topic_inputs", "summarize_run", "plain_synthesis"]

log = logging.getLogger(__name__)

Emit = Callable[[DocResult], None]


def run(settings: Settings) -> dict[str, Any]:
    """Discover, fetch, parse and analyse every page, then write the outputs; returns run.json's content."""
    if settings.resume:
        from .queued import resumed_settings

        settings = resumed_settings(settings)
    index = None if settings.resume else discover(settings.source, FetchLimits.from_settings(settings), settings.limit,
                                                    own=(settings.output_dir, settings.state_dir))
    with _early_parse_pool(settings) as pool:  # its workers boot on the other cores during the imports
        with _imports_without_gc():
            from ..core.resources import ResourceSampler
            from .queued import run_queued, wants_queue  # and with it the LLM stack: LangChain, LangGraph, openai

        queued = wants_queue(settings, index)
        with _llm_endpoint(settings) as live, ResourceSampler() as resources:
            if live.llm is not LLMKind.EXTRACTIVE:
                live = check_endpoint(live)  # the model the server will use (the first it lists, if none was given)
                settings = settings.with_(model=live.model)
            if queued:
                return run_queued(live, index, chosen=settings, resources=resources, pool=pool)
            assert index is not None
            return asyncio.run(_run(live, index.refs, index.title, resources, pool))


@contextlib.contextmanager
def _early_parse_pool(settings: Settings) -> Iterator[BoundedPool | None]:
    """The run's parse pool, started before the heavy imports, in the modes that parse in one (hybrid)."""
    if PLANS[settings.mode].parse is not Where.PROCESSES:
        yield None
        return
    pool = start_parse_pool(settings)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _imports_without_gc() -> Iterator[None]:
    """The command (cli.run_command) starts with the cyclic garbage collector paused: the heavy libraries'
    many new objects made it run over and over, a fifth of the start-up time. Once they are imported, what
    they made is frozen (later collections skip it) and the collector runs. A program that calls run() with
    the collector on is left as it is."""
    starting = not gc.isenabled()
    try:
        yield
    finally:
        if starting:
            gc.freeze()
            gc.enable()


@contextlib.contextmanager
def _llm_endpoint(settings: Settings) -> Iterator[Settings]:
    """For `--llm simulate` without a base URL, start the project's simulator for this run."""
    if settings.llm is not LLMKind.SIMULATE or settings.llm_base_url:
        yield settings
        return
    from ..testing.llm_sim import SimServer

    with SimServer(latency_ms=settings.sim_latency_ms, model=settings.model, max_seconds=24 * 3600) as sim:
        log.info("simulator listening on %s", sim.base_url)
        yield settings.with_(llm_base_url=sim.base_url)


async def _run(settings: Settings, refs: list[DocRef], title: str, resources: ResourceSampler,
               pool: BoundedPool | None = None) -> dict[str, Any]:
    from ..core.progress import RunProgress

    results: list[DocResult] = []
    gateways: list[Gateway] = []
    clusters: list[Any] = []  # dask mode's cluster (None in the other modes), for run.json
    stream = ResultStream(settings.output_dir / "results.jsonl")
    started = time.perf_counter()
    async with Shutdown(settings.grace_s) as shutdown:
        with RunProgress(len(refs), enabled=not settings.quiet) as progress:
            def emit(result: DocResult) -> None:
                results.append(result)
                stream.write(result)
                progress.advance(result)

            def watch(gateway: Gateway, stages: Stages) -> None:
                gateways.append(gateway)
                clusters.append(stages.cluster)
                progress.watch(gateway, stages)

            try:
                llm, synthesis = await _analyze_all(settings, refs, emit, watch, shutdown, pool)
            except BaseException as exc:
                # stopped at once or aborted: the report and run.json still describe exactly what finished
                stream.close()
                llm = gateways[0].summary() if gateways else {"prompts": 0}
                stopped = shutdown.stopped or isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
                status = "interrupted" if stopped else f"aborted: {exc}"
                summary = summarize_run(settings, results, llm, time.perf_counter() - started, status,
                                        total=len(refs), resources=resources, cluster=clusters[0] if clusters else None)
                with contextlib.suppress(OSError, OutputError):
                    write_outputs(settings.output_dir, results, {}, summary, title)
                if shutdown.signum is not None:
                    raise Interrupted(shutdown.signum) from None
                raise
            finally:
                stream.close()
    status = "interrupted" if shutdown.stopped else "completed"
    summary = summarize_run(settings, results, llm, time.perf_counter() - started, status, total=len(refs),
                            resources=resources, cluster=clusters[0] if clusters else None)
    write_outputs(settings.output_dir, results, synthesis, summary, title)
    if shutdown.signum is not None:
        raise Interrupted(shutdown.signum)
    return summary


async def _analyze_all(settings: Settings, refs: list[DocRef], emit: Emit, watch: Callable[[Gateway, Stages], None],
                       shutdown: Shutdown, pool: BoundedPool | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..analysis.agent import synthesize_topics
    from ..analysis.gateway import build_gateway
    from ..core.cache import open_memo
    from .remote import finish_agent, page_agent

    from ..analysis.strategy import resolve_strategy

    settings = settings.with_(task_strategy=resolve_strategy(settings, len(refs)))  # auto: decided per run
    plan = PLANS[settings.mode]
    if settings.mode is Mode.PROCESS:
        from .processes import run_process_mode

        results: list[DocResult] = []

        def keep(result: DocResult) -> None:
            results.append(result)
            emit(result)

        memo = open_memo(settings)
        async with build_gateway(settings, memo=memo) as gateway:
            pending = refs
            if memo.stats()["entries"] and gateway.provider.is_llm and not settings.extract_fields:
                # pages the cache already answers need no worker process at all
                with Stages(settings, PLANS[Mode.ASYNC], memo) as stages:
                    pending = await _answer_from_memo(refs, stages, gateway, settings, keep)
            exports = await run_process_mode(settings, pending, keep, shutdown) if pending else []
            # the workers held the whole cap while they ran, so the synthesis waits for them
            for exported in exports:
                gateway.absorb(exported)
            synthesis = {} if shutdown.stopped else await synthesize_topics(gateway, topic_inputs(results))
        return gateway.summary(), plain_synthesis(synthesis)
    memo = open_memo(settings)
    with Stages(settings, plan, memo, processes=pool) as stages:
        async with build_gateway(settings, stages.run_cpu, plan.llm_concurrency(settings), memo) as gateway:
            watch(gateway, stages)
            topics = _TopicSynthesis(gateway, refs)

            def keep_local(result: DocResult) -> None:
                emit(result)
                topics.page_done(result)

            agent = page_agent(gateway, settings, stages)
            try:
                await analyze_refs(refs, agent, stages, settings, keep_local, plan.docs_in_flight(settings),
                                   shutdown.stopping)
            except BaseException:
                topics.cancel()
                raise
            finally:
                await finish_agent(agent)
            if shutdown.stopped:
                topics.cancel()
            synthesis = {} if shutdown.stopped else await topics.results()
    return gateway.summary(), plain_synthesis(synthesis)


async def _answer_from_memo(refs: list[DocRef], stages: Stages, gateway: Gateway, settings: Settings,
                            emit: Emit) -> list[DocRef]:
    """Emit the pages whose whole analysis is cached; return the others, in order."""
    from ..analysis.agent import PageAgent

    async def one(ref: DocRef) -> DocRef | None:
        fetched = await stages.fetch(ref)
        if not fetched.ok:
            return ref  # the worker fetches again and records the failure
        try:
            page = await stages.parse(fetched)
        except ParseError:
            return ref
        stored = agent.remembered(page)
        if stored is None:
            return ref
        emit(DocResult(url=ref.url, title=page.title, topic=ref.topic, status=DocStatus.COMPLETED,
                       provider=settings.provider_name, model=settings.model_name, analysis=stored.model_dump(),
                       tasks=[task.value for task in agent.tasks], text_tokens=page.text_tokens, reused=True))
        return None

    agent = PageAgent(gateway, settings.sub_model)

    limit = asyncio.Semaphore(PLANS[Mode.ASYNC].docs_in_flight(settings))

    async def bounded(ref: DocRef) -> DocRef | None:
        async with limit:
            return await one(ref)

    return [ref for ref in await asyncio.gather(*(bounded(r) for r in refs)) if ref is not None]


class _TopicSynthesis:
    """Starts a topic's synthesis as soon as its last page is done, so it overlaps the other pages. Under a
    request limit (--rpm, or one the server announced) every synthesis waits for the last page instead: then
    they leave together and share requests, which are what the limit makes scarce."""

    def __init__(self, gateway: Gateway, refs: list[DocRef]) -> None:
        self._gateway = gateway
        self._left: dict[str, int] = {}
        for ref in refs:
            self._left[ref.topic] = self._left.get(ref.topic, 0) + 1
        self._done: dict[str, list[DocResult]] = {}
        self._ready: list[str] = []  # topics whose pages are all done, synthesis not started
        self._tasks: list[asyncio.Task[dict[str, Any]]] = []

    def page_done(self, result: DocResult) -> None:
        self._done.setdefault(result.topic, []).append(result)
        self._left[result.topic] -= 1
        if self._left[result.topic] == 0:
            self._ready.append(result.topic)
        if self._ready and (self._gateway.limiter.request_pace() is None or not any(self._left.values())):
            self._start()

    def _start(self) -> None:
        from ..analysis.agent import synthesize_topics

        inputs = [found for topic in self._ready for found in topic_inputs(self._done[topic])]
        self._ready.clear()
        if inputs:
            self._tasks.append(asyncio.get_running_loop().create_task(synthesize_topics(self._gateway, inputs)))

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def results(self) -> dict[str, Any]:
        self._start()  # topics still held (a page never reported)
        merged: dict[str, Any] = {}
        for part in await asyncio.gather(*self._tasks):
            merged.update(part)
        return merged


async def analyze_refs(refs: list[DocRef], agent: PageAgent, stages: Stages, settings: Settings,
                       emit: Emit, in_flight: int, stop: asyncio.Event | Any | None = None) -> None:
    """Analyse every ref with at most `in_flight` documents under way; emit each result as it lands.

    Once `stop` is set (an asyncio or multiprocessing Event) no new page starts."""
    pending = iter(refs)

    async def worker() -> None:
        for ref in pending:  # one shared iterator: each ref is taken by exactly one worker
            if stop is not None and stop.is_set():
                return
            spent = agent.gateway.budget_reason()
            if spent:  # pages already under way finish; no new one starts
                emit(_not_started(ref, settings, spent))
                continue
            emit(await analyze_document(ref, stages, agent, settings))

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, min(in_flight, len(refs))))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def analyze_document(ref: DocRef, stages: Stages, agent: PageAgent, settings: Settings) -> DocResult:
    """Fetch, parse and analyse one page; any failure is recorded on its result (a fatal LLM error stops the run)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    fetched = await stages.fetch(ref)
    timings["fetch"] = _lap(clock)
    if not fetched.ok:
        return failed_result(ref, settings, "fetch", fetched.error or "unknown error", timings=timings)
    page = await parse_step(fetched, stages, settings, timings)
    if isinstance(page, DocResult):
        return page
    return await analyze_page(ref, page, agent, settings, timings)


async def parse_step(fetched: Fetched, stages: Stages, settings: Settings,
                     timings: dict[str, float]) -> ParsedDoc | DocResult:
    """The parsed page, or the failed result saying why it could not be parsed."""
    clock = time.perf_counter()
    try:
        return await stages.parse(fetched)
    except (ParseError, WorkerLost) as exc:
        return failed_result(fetched.ref, settings, "parse", str(exc), timings=timings)
    except Exception as exc:  # a bug or an unexpected library error on one page: record it, keep the run going
        log.exception("unexpected error parsing %s", fetched.ref.url)
        return failed_result(fetched.ref, settings, "parse", f"unexpected {type(exc).__name__}: {exc}",
                             timings=timings)
    finally:
        timings["parse"] = _lap(clock)


async def analyze_page(ref: DocRef, page: ParsedDoc, agent: PageAgent, settings: Settings,
                       timings: dict[str, float]) -> DocResult:
    """Run the agent over one parsed page; failures land on the result (a fatal LLM error stops the run)."""
    clock = time.perf_counter()
    try:
        stored = agent.remembered(page)  # looked up here, so the result can say it made no request
        analysis = stored if stored is not None else await agent.analyze(page)
    except LLMFatalError:
        raise
    except DocumentItError as exc:
        return failed_result(ref, settings, "analyze", str(exc), page.title, timings, page.text_tokens)
    except Exception as exc:  # a bug or an unexpected library error: record it, keep the run going
        log.exception("unexpected error analysing %s", ref.url)
        return failed_result(ref, settings, "analyze", f"unexpected {type(exc).__name__}: {exc}", page.title, timings,
                             page.text_tokens)
    finally:
        timings["analyze"] = _lap(clock)
    fields = None
    if settings.extract_fields:
        from ..analysis.fields import extract_fields

        clock = time.perf_counter()
        fields = await extract_fields(page, agent.gateway, settings.extract_fields, settings.model)
        timings["fields"] = _lap(clock)
    return DocResult(url=ref.url, title=page.title, topic=ref.topic, status=DocStatus.COMPLETED,
                     provider=settings.provider_name, model=settings.model_name,
                     analysis=analysis.model_dump(), timings=timings, tasks=[task.value for task in agent.tasks],
                     fallback_tasks=agent.gateway.fell_back.get(page.url, []), fields=fields,
                     text_tokens=page.text_tokens, reused=stored is not None)


def failed_result(ref: DocRef, settings: Settings, stage: str, reason: str, title: str = "",
                  timings: dict[str, float] | None = None, text_tokens: int = 0) -> DocResult:
    """A page that did not make it, and at which stage (`text_tokens`: its text's, once parsed)."""
    return DocResult(url=ref.url, title=title or ref.title, topic=ref.topic, status=DocStatus.FAILED,
                     error=f"{stage}: {reason}", provider=settings.provider_name,
                     model=settings.model_name, timings=timings or {}, text_tokens=text_tokens)


def _not_started(ref: DocRef, settings: Settings, reason: str) -> DocResult:
    return failed_result(ref, settings, "not analysed", reason)


def _lap(start: float) -> float:
    return round(time.perf_counter() - start, 4)


def topic_inputs(results: list[DocResult]) -> list[TopicInput]:
    from ..analysis.prompts import TopicInput

    topics: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
    for result in sorted(results, key=lambda r: r.url):
        if result.status is DocStatus.COMPLETED and result.analysis:
            concepts = tuple(c["name"] for c in result.analysis["key_concepts"][:5])
            topics.setdefault(result.topic or "(no topic)", []).append(
                (result.title, result.analysis["summary"], concepts))
    return [TopicInput(topic, tuple(pages)) for topic, pages in topics.items()]


def plain_synthesis(synthesis: dict[str, Any]) -> dict[str, Any]:
    return {topic: value if isinstance(value, str) else value.model_dump() for topic, value in synthesis.items()}


def summarize_run(settings: Settings, results: list[DocResult], llm: dict[str, Any], wall: float,
                  status: str = "completed", total: int | None = None,
                  resources: ResourceSampler | None = None, cluster: Any = None,
                  this_run: list[DocResult] | None = None) -> dict[str, Any]:
    """run.json's content. `this_run`: the results this invocation made (default: all of `results`; a resumed
    queued run's `results` also holds the pages finished before)."""
    from ..analysis.extractive import LABEL as EXTRACTIVE_LABEL

    completed = sum(r.status is DocStatus.COMPLETED for r in results)
    stages = {name: round(sum(r.timings.get(name, 0.0) for r in results), 3)
              for name in ("fetch", "parse", "analyze")}
    # inside analyze, summed over LLM requests: waiting for a slot (batcher queue, window, limits), on the wire
    stages["queue_wait"] = round(llm.get("slot_wait_s", 0.0) + (llm.get("batching") or {}).get("queue_wait_s", 0.0), 3)
    stages["llm_wait"] = round(llm.get("on_wire_s", 0.0), 3)
    return {
        "version": __version__,
        "status": status,
        "mode": settings.mode.value,
        "source": settings.source,
        "provider": settings.provider_name,
        "provider_label": EXTRACTIVE_LABEL if settings.llm is LLMKind.EXTRACTIVE else settings.provider_name,
        "model": settings.model_name,
        "wall_seconds": round(wall, 3),
        "documents": {"total": len(results), "completed": completed, "failed": len(results) - completed,
                      "not_reached": (total or len(results)) - len(results)},
        "failed_urls": sorted(r.url for r in results if r.status is DocStatus.FAILED),
        "failures": {r.url: r.error or "unknown error" for r in sorted(results, key=lambda r: r.url)
                     if r.status is DocStatus.FAILED},
        "llm": llm,
        "work": work_block(results if this_run is None else this_run, llm, settings.llm is not LLMKind.EXTRACTIVE),
        "stages": stages,
        "resources": resources.summary() if resources is not None else None,
        "cluster": cluster.summary(stages) if cluster is not None else None,
        "settings": {
            "max_workers": settings.max_workers,
            "analysis_workers": settings.analysis_workers,
            "max_concurrency": settings.max_concurrency,
            "batch_size": settings.batch_size,
            "structured_output": settings.structured_output.value,
            "rpm": settings.rpm, "tpm": settings.tpm, "retries": settings.retries,
            "max_wait": settings.max_wait, "fallback": settings.fallback.value,
            "max_cost": settings.max_cost, "max_tokens": settings.max_tokens,
            "sub_model": settings.sub_model, "chunk_tokens": settings.chunk_tokens,
            "extract_fields": list(settings.extract_fields),
            "tasks": [task.value for task in settings.tasks],
            "task_strategy": settings.task_strategy.value,
        },
    }
