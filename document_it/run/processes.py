"""`process` mode: N worker processes run the same loop (run/loop.py) on the same job queue, each with its
share of the limits; the parent carries their results to the run's outputs."""

from __future__ import annotations

import asyncio
import queue
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.managers import SyncManager
from typing import Any, Callable

from ..config import Mode, Settings
from ..models import DocResult
from ..core.bounded import ignore_interrupts, spawn_context
from ..core.dispatcher import PLANS
from ..core.shutdown import Shutdown

__all__ = ["run_queue_workers", "run_queue_shard", "worker_share", "budget_share", "worker_count"]

_POLL_S = 0.2


def worker_count(settings: Settings, pages: int | None) -> int:
    """Never more workers than pages (when known up front), nor than LLM slots (each worker needs one)."""
    known = settings.analysis_workers if pages is None else pages
    return max(1, min(settings.analysis_workers, settings.max_concurrency, known))


def worker_share(settings: Settings, workers: int) -> Settings:
    """One worker's part of the limits: LLM cap, download threads, per-host slots, rates and budgets."""
    return budget_share(settings, workers).with_(
        max_concurrency=max(1, settings.max_concurrency // workers),
        max_workers=max(1, settings.max_workers // workers),
        per_host=max(1, settings.per_host // workers), delay=settings.delay * workers, host_share=workers)


def budget_share(settings: Settings, workers: int) -> Settings:
    """One worker's part of the request and token rates and of the cost and token budgets."""
    return settings.with_(
        rpm=settings.rpm / workers, tpm=settings.tpm / workers,
        max_cost=None if settings.max_cost is None else settings.max_cost / workers,
        max_tokens=None if settings.max_tokens is None else settings.max_tokens // workers)


def run_queue_shard(settings: Settings, spec: Any, results: Any, stop: Any) -> dict[str, Any]:
    """In a worker process: take pages from the run's job queue until none is left; return figures."""
    return asyncio.run(_queue_shard(settings, spec, results, stop))


async def _queue_shard(settings: Settings, spec: Any, results: Any, stop: Any) -> dict[str, Any]:
    from ..analysis.agent import PageAgent
    from ..analysis.gateway import build_gateway
    from .loop import open_worker
    from ..core.cache import open_memo
    from ..core.job_queue import JobQueue

    plan = PLANS[Mode.ASYNC]
    memo = open_memo(settings)
    with JobQueue(spec.database or settings.jobs_path) as queue, open_worker(settings, spec, queue, plan, memo, shared=True) as (worker, stages):
        async with build_gateway(settings, stages.run_cpu, memo=memo) as gateway:
            worker.agent = PageAgent(gateway, settings.sub_model)
            await worker.drain(lambda r: results.put(r.to_dict()), plan.docs_in_flight(settings), stop)
    return {"gateway": gateway.export(), "counters": worker.counters.as_dict()}


async def run_queue_workers(settings: Settings, spec: Any, emit: Callable[[DocResult], None], shutdown: Shutdown,
                            pages: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Drain a run over `--analysis-workers` processes that all claim from the same job queue (`pages`: how
    many are waiting, when the run knows)."""
    workers = worker_count(settings, pages)
    share = worker_share(settings, workers)
    loop = asyncio.get_running_loop()
    context = spawn_context()
    with _manager(context) as manager, ProcessPoolExecutor(workers, mp_context=context,
                                                           initializer=ignore_interrupts) as pool:
        results, stop = manager.Queue(), manager.Event()
        futures = [loop.run_in_executor(pool, run_queue_shard, share, spec, results, stop) for _ in range(workers)]
        try:
            while True:
                if shutdown.stopped and not stop.is_set():
                    stop.set()
                try:
                    emit(DocResult.from_dict(await asyncio.to_thread(results.get, True, _POLL_S)))
                except queue.Empty:
                    _raise_fatal(futures)
                    if all(f.done() for f in futures) and results.empty():
                        break
        except BaseException:
            _stop_workers(pool)
            raise
        outputs = await _outputs(futures)  # a dead worker's pages stay in the queue (released at the end)
    counters: dict[str, Any] = {}
    for output in outputs:
        for name, value in output["counters"].items():
            if isinstance(value, int):
                counters[name] = counters.get(name, 0) + value
            elif value:
                counters[name] = value
    return [output["gateway"] for output in outputs], counters


def _raise_fatal(futures: list[asyncio.Future[Any]]) -> None:
    """A worker's error that stops the run (a refused key, an LLM that serves nothing usable), at once."""
    for future in futures:
        if future.done() and not future.cancelled():
            error = future.exception()
            if error is not None and not isinstance(error, BrokenProcessPool):
                _retrieve(futures)
                raise error


async def _outputs(futures: list[asyncio.Future[Any]]) -> list[dict[str, Any]]:
    """What the workers returned; a worker that died returns nothing, a worker's error is raised (once)."""
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, BrokenProcessPool):
            raise outcome
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]


def _retrieve(futures: list[asyncio.Future[Any]]) -> None:
    """Mark every future's outcome as seen, so those left behind are not logged as never retrieved."""
    for future in futures:
        future.add_done_callback(lambda f: f.cancelled() or f.exception())


def _manager(context: Any) -> SyncManager:
    """The process that carries results back; it ignores Ctrl-C (the parent decides) and dies with its parent."""
    manager = SyncManager(ctx=context)
    manager.start(ignore_interrupts)
    return manager


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate this run's own worker processes (the executor has no public way before Python 3.14)."""
    for process in list(getattr(pool, "_processes", {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
