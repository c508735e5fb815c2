"""`dask` mode's engine: a Dask distributed cluster behind a `concurrent.futures` executor.

The pipeline only ever sees `Cluster.executor` (stages submit pure functions to it, as to a process pool);
the client, the local cluster it may start, the cluster-wide LLM semaphore and the figures for run.json
live here. Nothing here reads or writes the cache, the job queue or the outputs: that is the driver's."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from ..config import Settings
from ..errors import ConfigError, WorkerLost

__all__ = ["Cluster", "ClusterExecutor", "ClusterLease", "InputLost", "open_cluster", "stage_of"]

log = logging.getLogger(__name__)

_WATCH_S = 1.0  # how often the cluster is asked whether it still has workers


def stage_of(fn: Callable[..., Any]) -> str:
    """The pipeline stage a function submitted to the cluster belongs to."""
    return "parse" if getattr(fn, "__name__", "") == "parse" else "analyze"


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """On a worker: run `fn` and say how long it took there."""
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


class ClusterExecutor(cf.Executor):
    """`client.get_executor()` with what a pipeline stage needs on top: each task's time on its worker,
    counted per stage, and the engine's own failures (a worker killed too often, a lost connection) turned
    into the page's failure instead of an unknown exception."""

    def __init__(self, client: Any) -> None:
        self._inner = client.get_executor(pure=False)  # every call is its own task, even with equal inputs
        self._lock = threading.Lock()
        self.worker_s: dict[str, float] = {}  # stage -> seconds spent on workers
        self.wait_s: dict[str, float] = {}  # stage -> seconds the driver waited for those tasks
        self.tasks: dict[str, int] = {}
        self.pending: dict[str, int] = {}  # stage -> tasks submitted and not finished (the back-pressure)
        self.max_pending: dict[str, int] = {}
        self.lost = 0
        self._open: dict[cf.Future, cf.Future] = {}  # handed out and not yet resolved -> the cluster's
        self.dead: str | None = None  # why nothing can run now (no worker left); new tasks fail at once

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        stage, sent = stage_of(fn), time.perf_counter()
        outer: cf.Future = cf.Future()
        if self.dead:
            outer.set_exception(WorkerLost(self.dead))
            return outer
        try:
            inner = self._inner.submit(_timed, fn, *args, **kwargs)
        except Exception as exc:  # the client is closed: the scheduler went away
            outer.set_exception(WorkerLost(f"the Dask cluster is gone ({_reason(exc)})"))
            return outer
        with self._lock:
            self.pending[stage] = self.pending.get(stage, 0) + 1
            self.max_pending[stage] = max(self.max_pending.get(stage, 0), self.pending[stage])
            self._open[outer] = inner

        def landed(done: cf.Future) -> None:
            with self._lock:
                self.pending[stage] -= 1
                if self._open.pop(outer, None) is None:
                    return  # cancelled by the caller, or failed by fail_open
            if done.cancelled():  # by the cluster: an input of it was lost, or the client closed
                with self._lock:
                    self.lost += 1
                _settle(outer, InputLost("the Dask cluster cancelled this task (its input or the scheduler was lost)"))
                return
            exc = done.exception()
            with self._lock:
                self.wait_s[stage] = self.wait_s.get(stage, 0.0) + time.perf_counter() - sent
                if exc is None:
                    value, seconds = done.result()
                    self.worker_s[stage] = self.worker_s.get(stage, 0.0) + seconds
                    self.tasks[stage] = self.tasks.get(stage, 0) + 1
                elif _engine_failure(exc):
                    self.lost += 1
            try:
                if exc is None:
                    outer.set_result(value)
                else:
                    outer.set_exception(WorkerLost(f"the Dask cluster lost this task ({type(exc).__name__}: "
                                                   f"{str(exc)[:200]})") if _engine_failure(exc) else exc)
            except cf.InvalidStateError:
                pass  # cancelled meanwhile

        inner.add_done_callback(landed)
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        return outer

    def fail_open(self, reason: str) -> int:
        """Fail every task still out with `reason` (the cluster has no worker left) and cancel it on the
        cluster, so it does not run when a worker comes back; how many there were."""
        with self._lock:
            doomed, self._open = list(self._open.items()), {}
            self.lost += len(doomed)
        for outer, inner in doomed:
            _settle(outer, WorkerLost(reason))
            inner.cancel()
        return len(doomed)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        try:
            self._inner.shutdown(wait=wait and not cancel_futures)
        except Exception as exc:  # the client closed first (the scheduler went away)
            log.info("dask: executor shutdown: %s", _reason(exc))


class InputLost(WorkerLost):
    """The cluster cancelled a task: an input it held (e.g. the run's shared settings) or the scheduler was
    lost. Sharing the input again and resending can help, unlike a task whose workers kept dying."""


def _settle(future: cf.Future, exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except cf.InvalidStateError:
        pass  # cancelled meanwhile


def _engine_failure(exc: BaseException) -> bool:
    """True for Dask's own errors (KilledWorker, a closed comm, a cancelled future), not a task's."""
    module = type(exc).__module__ or ""
    return module.startswith("distributed") or isinstance(exc, (asyncio.CancelledError, cf.CancelledError))


class ClusterLease:
    """A `distributed.Semaphore` as the gateway's lease (RateLimiter.lease): one lease per LLM request,
    however many processes on however many machines send them. Works from any thread and event loop."""

    def __init__(self, semaphore: Any, threads: int) -> None:
        self._semaphore = semaphore
        self._acquiring = ThreadPoolExecutor(threads, thread_name_prefix="lease")  # acquire() blocks its thread
        # releases never queue behind acquires that wait for them (that would wait forever)
        self._releasing = ThreadPoolExecutor(2, thread_name_prefix="lease-release")

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        acquired = loop.run_in_executor(self._acquiring, self._semaphore.acquire)
        try:
            await asyncio.shield(acquired)
        except asyncio.CancelledError:  # the lease still arrives: give it back when it does
            acquired.add_done_callback(lambda f: None if f.cancelled() or f.exception() else self._release())
            raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        try:
            self._releasing.submit(self._semaphore.release)
        except RuntimeError:  # closed: the semaphore's leases expire with it
            pass

    def close(self, remove: bool = False) -> None:
        """Stop taking leases (queued releases still go out); `remove` drops the semaphore at the scheduler."""
        self._acquiring.shutdown(wait=False, cancel_futures=True)
        self._releasing.shutdown(wait=remove)
        try:
            if remove:
                self._semaphore.close()
            elif getattr(self._semaphore, "refresh_callback", None) is not None:
                self._semaphore.refresh_callback.stop()
        except Exception as exc:  # the scheduler is gone
            log.info("dask: closing the LLM semaphore: %s", _reason(exc))


class Cluster:
    """One run's connection to Dask: the executor, the local cluster if this run started it, and figures."""

    def __init__(self, client: Any, local: Any | None, quiet: bool, patience: float = 10.0) -> None:
        self.client, self.local = client, local
        self.executor = ClusterExecutor(client)
        info = client.scheduler_info()
        workers = info.get("workers", {})
        self.address = info.get("address") or client.scheduler.address
        self.first_workers = set(workers)  # replaced by those that answer the version check
        self.workers_lost: int | None = None
        self.threads = sum(w.get("nthreads", 0) for w in workers.values())
        port = (info.get("services") or {}).get("dashboard")
        # a local cluster's dashboard shows something only with bokeh installed (it is optional)
        self.dashboard = client.dashboard_link if port and (local is None or _has_bokeh()) else None
        self._leases: list[ClusterLease] = []
        self.workers_at_end: int | None = None
        self._closing = threading.Event()
        self._patience = patience
        threading.Thread(target=self._watch_workers, name="dask-watch", daemon=True).start()
        if not quiet:
            where = "started a local Dask cluster (no --dask-scheduler)" if local else f"connected to {self.address}"
            print(f"document-it: dask: {where}: {len(workers)} workers, {self.threads} threads"
                  + (f"; dashboard {self.dashboard}" if self.dashboard else ""), file=sys.stderr)

    def _watch_workers(self) -> None:
        """A cluster left with no worker would hold the run's pages forever: after `patience` seconds
        without one, the pages out on it fail with the reason and the run ends."""
        alone_since: float | None = None
        while not self._closing.wait(_WATCH_S):
            try:
                count = len(self.client.scheduler_info().get("workers", {}))
            except Exception:  # the scheduler itself is gone
                count = 0
            if count:
                alone_since, self.executor.dead = None, None
                continue
            alone_since = alone_since or time.monotonic()
            if time.monotonic() - alone_since >= self._patience:
                reason = f"the Dask cluster has had no worker for {self._patience:g}s"
                if not self.executor.dead:
                    log.warning("dask: %s: pages sent to it fail until a worker joins", reason)
                self.executor.dead = reason
                self.executor.fail_open(reason)

    @property
    def workers(self) -> int:
        """Workers connected now (at least one, so shares never divide by zero)."""
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def share(self, value: Any) -> Any:
        """`value` sent once to every worker (a future tasks can take as an argument), not once per task.
        Workers that join later fetch it from one that has it; if every holder is lost, share it again."""
        try:
            return self.client.scatter(value, broadcast=True, hash=False, timeout=self._patience)
        except Exception as exc:  # no worker to hold it
            raise WorkerLost(f"the Dask cluster could not take this run's settings ({_reason(exc)})") from None

    def lease(self, name: str, cap: int) -> ClusterLease:
        """This process's side of the cluster-wide semaphore `name` with `cap` leases."""
        from distributed import Semaphore

        semaphore = Semaphore(max_leases=cap, name=name, scheduler_rpc=self.client.scheduler, loop=self.client.loop)
        lease = ClusterLease(semaphore, cap + 2)
        self._leases.append(lease)
        return lease

    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """`fn(*args)` on every worker now connected (out of band, not a task); worker address -> result."""
        try:
            return self.client.run(fn, *args, on_error="return")
        except Exception as exc:  # the cluster is going away: nothing to collect
            log.warning("dask: could not reach the workers at the end of the run: %s", exc)
            return {}

    def summary(self, stages: dict[str, float]) -> dict[str, Any]:
        """run.json's `cluster` block; `stages` are the per-page stage times the driver measured."""
        remote = {stage: round(seconds, 3) for stage, seconds in self.executor.worker_s.items()}
        driver = {stage: round(max(0.0, stages.get(stage, 0.0) - self.executor.wait_s.get(stage, 0.0)), 3)
                  for stage in ("fetch", "parse", "analyze")}
        return {"address": self.address, "local": self.local is not None, "workers": len(self.first_workers),
                "workers_at_end": self.workers_at_end, "workers_lost": self.workers_lost, "threads": self.threads,
                "dashboard": self.dashboard,
                "tasks": dict(self.executor.tasks), "tasks_lost": self.executor.lost,
                "max_pending": dict(self.executor.max_pending),
                "seconds": {"workers": remote, "driver": driver}}

    def close(self) -> None:
        """Every step on its own: a scheduler that went away must not stop the local cluster's shutdown."""
        self._closing.set()
        try:
            now = set(self.client.scheduler_info().get("workers", {}))
            self.workers_at_end, self.workers_lost = len(now), len(self.first_workers - now)
        except Exception:  # the cluster went away first
            self.workers_at_end = None
        for lease in self._leases:
            lease.close(remove=True)
        self.executor.shutdown(wait=False, cancel_futures=True)
        try:
            self.client.close(timeout=10)
        except Exception as exc:
            log.info("dask: closing the client: %s", _reason(exc))
        finally:
            if self.local is not None:
                self.local.close(timeout=10)  # the worker processes this run started


def open_cluster(settings: Settings) -> Cluster:
    """Connect to --dask-scheduler, or start a LocalCluster of --analysis-workers worker processes.

    An unreachable scheduler is a ConfigError (one line, exit 2) within the connect timeout."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--parallelism-mode dask needs Dask distributed: pip install 'dask[distributed]'") from None
    # Dask's own chatter (every key it cancels, a closed comm's traceback at exit) is not the user's business;
    # set after the import, which installs Dask's logging configuration
    quiet_level = logging.WARNING if logging.getLogger().level and logging.getLogger().level <= logging.INFO \
        else logging.ERROR
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(quiet_level)
    if settings.dask_scheduler:
        try:
            client = Client(settings.dask_scheduler, timeout=settings.dask_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {settings.dask_scheduler} within "
                              f"{settings.dask_timeout:g}s ({_reason(exc)}); is `dask scheduler` running there?"
                              ) from None
        cluster = Cluster(client, None, settings.quiet, settings.dask_timeout)
        _check_workers(cluster, settings)
        return cluster
    local = LocalCluster(n_workers=settings.analysis_workers, threads_per_worker=1, processes=True,
                         dashboard_address=":0", silence_logs=quiet_level)
    try:
        return Cluster(Client(local, set_as_default=False), local, settings.quiet, settings.dask_timeout)
    except BaseException:
        local.close()
        raise


def _check_workers(cluster: Cluster, settings: Settings) -> None:
    """Fail early when the cluster has no worker, or its workers cannot run document-it's code."""
    deadline = time.monotonic() + settings.dask_timeout
    while not cluster.client.scheduler_info().get("workers") and time.monotonic() < deadline:
        time.sleep(0.2)  # a scheduler started a moment ago: its workers are still joining
    try:  # the scheduler unpickles every task, so it must import document-it too
        on_scheduler = cluster.client.run_on_scheduler(_worker_version)
    except Exception as exc:
        on_scheduler = exc
    from .. import __version__

    if on_scheduler != __version__:
        cluster.close()
        found = _reason(on_scheduler) if isinstance(on_scheduler, BaseException) else f"it has {on_scheduler}"
        raise ConfigError(f"the Dask scheduler at {settings.dask_scheduler} cannot load document-it {__version__} "
                          f"({found}): start it with the same document-it on PYTHONPATH (docs/distributed.md)")
    versions = cluster.run_on_workers(_worker_version)
    if not versions:
        cluster.close()
        raise ConfigError(f"the Dask scheduler at {settings.dask_scheduler} has no workers: start some with "
                          f"`dask worker {settings.dask_scheduler}` (docs/distributed.md)")
    broken = {address: value for address, value in versions.items() if value != __version__}
    if broken:
        address, value = next(iter(broken.items()))
        cluster.close()
        raise ConfigError(f"the Dask worker at {address} cannot run document-it {__version__} "
                          f"({_reason(value) if isinstance(value, BaseException) else f'it has {value}'}): install "
                          "the same document-it and requirements on every worker (docs/distributed.md)")
    cluster.first_workers = set(versions)


def _worker_version() -> str:
    from .. import __version__

    return __version__


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401  (the dashboard needs it; it is optional)
    except ImportError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
