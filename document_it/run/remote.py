"""`--distributed-llm`: each page's LLM work runs on a Dask worker, under one cluster-wide in-flight cap.

The driver keeps the state: it answers cached pages itself (they never travel), sends the rest as tasks,
and writes the cache entries each task brings back. A worker keeps, per run, one event loop with one
gateway (so the pages it holds share a batcher and a window); every request it sends holds a lease of the
run's `distributed.Semaphore`, whose size is --max-concurrency. Workers hold nothing the run needs later:
a worker that dies has its pages sent again by Dask."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.agent import PageAgent
from ..analysis.context import STORE_NAME as WINDOW_STORE
from ..analysis.gateway import Gateway, build_gateway
from ..analysis.negotiate import STORE_NAME as METHOD_STORE
from ..analysis.prompts import PageAnalysis
from ..config import Settings
from ..errors import DocumentItError, WorkerLost
from ..models import ParsedDoc
from ..core.cache import Memo
from ..core.cluster import Cluster, ClusterLease, InputLost
from ..core.state_file import read_state, write_state

__all__ = ["RemoteRun", "RemoteAgent", "page_agent", "finish_agent", "analyze_on_worker", "close_on_worker"]


@dataclass(frozen=True)
class RemoteRun:
    """What every worker needs to analyse this run's pages: sent to each worker once (scattered)."""

    run_id: str
    settings: Settings  # this worker's share of the rates and budgets
    lease_name: str
    cap: int
    # what earlier runs learned about the server (structured-output method, context window), from the
    # driver's --state-dir: a worker starts from it in a scratch folder of its own and writes nothing back
    learned: dict[str, dict[str, Any]] = field(default_factory=dict)


class RemoteAgent:
    """Looks like a PageAgent to the pipeline; analyses on the cluster what the driver's cache lacks."""

    def __init__(self, gateway: Gateway, cluster: Cluster, settings: Settings) -> None:
        from .processes import budget_share

        self.gateway = gateway  # the driver's: cache, budgets, fallbacks, topic syntheses
        self.local = PageAgent(gateway, settings.sub_model)
        self.tasks = self.local.tasks
        self._cluster = cluster
        run_id = uuid.uuid4().hex
        learned = {name: read_state(settings.state_dir / name) for name in (METHOD_STORE, WINDOW_STORE)}
        workers = cluster.workers
        # each worker's own window is its share of the cap, so its batcher sees a backlog when its share is
        # busy (not only once it holds the whole cap); the semaphore keeps the sum, whoever sends
        share = budget_share(settings, workers).with_(max_concurrency=max(1, -(-settings.max_concurrency // workers)))
        self.run = RemoteRun(run_id, share, f"document-it-llm-{run_id}", settings.max_concurrency, learned)
        # the driver's own requests (topic syntheses, --extract-fields) count against the same cap
        gateway.limiter.lease = cluster.lease(self.run.lease_name, self.run.cap)
        self._shared = cluster.share(self.run)
        self._resharing = asyncio.Lock()
        self._unshareable: Any = None

    def remembered(self, page: ParsedDoc) -> PageAnalysis | None:
        return self.local.remembered(page)

    async def analyze(self, page: ParsedDoc) -> PageAnalysis:
        """`page`'s analysis: from the driver's cache, else from a worker (whose cache writes land here)."""
        stored = self.local.remembered(page)
        if stored is not None:
            return stored
        shared = self._shared
        try:
            reply = await self._send(shared, page)
        except InputLost:
            if self._cluster.executor.dead:
                raise
            # the workers holding the shared settings are gone: share them again (once), send the page again
            reply = await self._send(await self._reshare(shared), page)
        for namespace, key, value in reply["memo"]:
            self.gateway.memo.set(namespace, key, value)
        if reply["fell_back"]:
            self.gateway.fell_back[page.url] = reply["fell_back"]
        return PageAnalysis.model_validate(reply["analysis"])

    async def _send(self, shared: Any, page: ParsedDoc) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cluster.executor, analyze_on_worker, shared, page)

    async def _reshare(self, lost: Any) -> Any:
        """A new handle for the run's settings in place of `lost`; the first page to find it lost shares
        them again, the others use that one (or fail at once when sharing them again failed)."""
        async with self._resharing:
            if self._shared is lost:
                if self._unshareable is lost:
                    raise WorkerLost("the Dask cluster lost this run's settings and could not take them again")
                try:
                    self._shared = await asyncio.to_thread(self._cluster.share, self.run)
                except WorkerLost:
                    self._unshareable = lost
                    raise
            return self._shared

    async def aclose(self) -> None:
        """Collect every worker's request figures into the driver's gateway and free the workers' loops."""
        try:
            exports = await asyncio.wait_for(asyncio.to_thread(
                self._cluster.run_on_workers, close_on_worker, self.run.run_id), _CLOSE_S)
        except asyncio.TimeoutError:
            exports = {}  # a worker that does not answer keeps its figures; the run still ends
        for exported in exports.values():
            if isinstance(exported, dict):
                self.gateway.absorb(exported)


# -- on a worker ---------------------------------------------------------------------------------

_RUNTIMES: dict[str, "_Runtime"] = {}
_CLOSED: set[str] = set()  # runs whose runtime was closed here: a task arriving late must not open another
_LOCK = threading.Lock()
_CLOSE_S = 30.0  # how long the driver waits for the workers to hand in their figures


def analyze_on_worker(run: RemoteRun, page: ParsedDoc) -> dict[str, Any]:
    """A Dask task: `page` analysed by this worker's gateway for `run`. It leaves the worker's thread pool
    while it waits on the LLM (secede), so one worker holds many pages, not one per thread."""
    from distributed import secede

    with _LOCK:
        if run.run_id in _CLOSED:
            raise WorkerLost("this run has ended")
        runtime = _RUNTIMES.get(run.run_id)
        if runtime is None:
            runtime = _RUNTIMES[run.run_id] = _Runtime(run)  # in a task thread: the semaphore binds here
    secede()
    return asyncio.run_coroutine_threadsafe(runtime.analyze(page), runtime.loop).result()


async def close_on_worker(run_id: str) -> dict[str, Any] | None:
    """Out of band on every worker at the end: this run's gateway figures, and its loop stopped."""
    with _LOCK:
        runtime = _RUNTIMES.pop(run_id, None)
        _CLOSED.add(run_id)
    if runtime is None:
        return None
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(runtime.close(), runtime.loop))


class _Notes(Memo):
    """A worker's cache: reads nothing (the driver looked before sending), records writes for the driver."""

    def __init__(self) -> None:
        super().__init__(None)
        self._new: list[tuple[str, str, Any]] = []

    def set(self, namespace: str, key: str, value: Any) -> None:
        self._new.append((namespace, key, value))

    def drain(self) -> list[tuple[str, str, Any]]:
        new, self._new = self._new, []
        return new


class _Runtime:
    """One run's event loop, gateway and agent in one worker process."""

    def __init__(self, run: RemoteRun) -> None:
        from distributed import Semaphore

        semaphore = Semaphore(max_leases=run.cap, name=run.lease_name)
        semaphore.scheduler  # bind to this worker's scheduler connection and loop now, in the task's thread
        self.lease = ClusterLease(semaphore, run.cap + 2)
        self.memo = _Notes()
        self.scratch = Path(tempfile.mkdtemp(prefix="document-it-worker-"))  # never the driver's --state-dir
        for name, data in run.learned.items():
            write_state(self.scratch / name, data)
        settings = run.settings.with_(state_dir=self.scratch)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name=f"llm-{run.run_id[:8]}", daemon=True).start()
        self.gateway: Gateway = asyncio.run_coroutine_threadsafe(self._open(settings), self.loop).result()
        self.agent = PageAgent(self.gateway, settings.sub_model)

    async def _open(self, settings: Settings) -> Gateway:
        gateway = build_gateway(settings, _inline, memo=self.memo)
        gateway.limiter.lease = self.lease
        return gateway

    async def analyze(self, page: ParsedDoc) -> dict[str, Any]:
        spent = self.gateway.budget_reason()
        if spent:
            raise DocumentItError(spent)
        analysis = await self.agent.analyze(page)
        return {"analysis": analysis.model_dump(), "fell_back": self.gateway.fell_back.get(page.url, []),
                "memo": self.memo.drain()}

    async def close(self) -> dict[str, Any]:
        """Cancel what is still under way (its tasks end: the driver stopped or no longer wants them), then
        hand in the figures and free the loop, the HTTP client and the scratch folder."""
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        exported = self.gateway.export()
        await self.gateway.__aexit__(None, None, None)
        self.lease.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.loop.call_soon(self.loop.stop)
        return exported


async def _inline(fn: Any, *args: Any) -> Any:
    """The offline fallback's CPU work, on the worker itself."""
    return fn(*args)


def page_agent(gateway: Gateway, settings: Settings, stages: Any) -> PageAgent | RemoteAgent:
    """The agent a run's pages go to: on the cluster with --distributed-llm (and an LLM), else here."""
    cluster = getattr(stages, "cluster", None)
    if settings.distributed_llm and cluster is not None and gateway.provider.is_llm:
        return RemoteAgent(gateway, cluster, settings)
    return PageAgent(gateway, settings.sub_model)


async def finish_agent(agent: PageAgent | RemoteAgent) -> None:
    """Once no page is left: a remote agent's worker figures folded into the driver's gateway."""
    if isinstance(agent, RemoteAgent):
        await agent.aclose()
