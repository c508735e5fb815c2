"""The orchestrator: one coroutine per document, bounded in flight, results streamed as they finish."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..analysis.endpoint import check_endpoint
from ..config import LLMKind, Mode, Settings
from ..core.bounded import BoundedPool
from ..core.dispatcher import PLANS, Stages, Where, start_parse_pool
from ..core.shutdown import Shutdown
from ..errors import Interrupted, OutputError, ParseError
from ..fetch import FetchLimits
from ..models import DocRef, DocResult, DocStatus
from ..report import ResultStream, write_outputs
from ..sources import discover
from .steps import Emit, analyze_refs
from .summary import plain_synthesis, summarize_run, topic_inputs

if TYPE_CHECKING:  # the LLM stack (LangChain, LangGraph) is imported only once a run has its pages
    from ..analysis.gateway import Gateway
    from ..core.resources import ResourceSampler

__all__ = ["run"]

log = logging.getLogger(__name__)


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
