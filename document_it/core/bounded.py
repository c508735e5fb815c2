"""A process pool whose workers are bounded: each task may have a deadline, each worker a memory cap.

Built on pebble, which does what the standard pool cannot: a task past its deadline has its worker
stopped and replaced, and a worker that dies takes only its own task with it, so the pool goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
from concurrent.futures import Executor, Future
from typing import Any, Callable, TypeVar

from pebble import ProcessExpired, ProcessPool

try:  # POSIX only; elsewhere the deadline still holds, the memory cap does not
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = ["BoundedPool", "ProcessExpired", "limit_memory", "spawn_context", "ignore_interrupts", "WORKER_NICENESS"]

WORKER_NICENESS = 5  # how far below the run's own process a parse worker runs

T = TypeVar("T")
_ORPHAN_CHECK_S = 1.0


def spawn_context() -> multiprocessing.context.BaseContext:
    """Fresh interpreters for workers: forking a process that runs threads is unsafe."""
    return multiprocessing.get_context("spawn")


def ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C reaches the whole process group, but stopping is the parent's decision;
    and a worker whose parent was killed outright (kill -9) exits instead of idling on as an orphan."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_ORPHAN_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


class BoundedPool(Executor):
    """`workers` spawned processes; `memory_mb` is what each may use beyond what it needs at rest."""

    def __init__(self, workers: int, memory_mb: float | None) -> None:
        self._workers, self._extra = workers, int(memory_mb * 1024 * 1024) if memory_mb else 0
        self._closed = False
        self._pool = self._new_pool()

    def start(self) -> None:
        """Spawn the workers now, not at the first page: they boot on the other cores while the run gets ready."""
        self._schedule(_ready, (), {}, None)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """No deadline (what `loop.run_in_executor` calls)."""
        return self._schedule(_guarded, (fn, *args), kwargs, None)

    def within(self, seconds: float | None, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(*args)`; past `seconds` its worker is stopped and the future raises TimeoutError."""
        return self._schedule(_guarded, (fn, *args), {}, seconds)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            self._pool.stop()  # running tasks are abandoned with their workers
        else:
            self._pool.close()
        if wait:
            self._pool.join()

    def _new_pool(self) -> ProcessPool:
        return ProcessPool(self._workers, initializer=_start_worker, initargs=(self._extra,), context=spawn_context())

    def _schedule(self, fn: Callable[..., T], args: tuple, kwargs: dict, timeout: float | None) -> Future[T]:
        try:
            return self._pool.schedule(fn, args, kwargs, timeout=timeout)
        except RuntimeError:  # pebble marks a pool whose workers all failed as broken for good: start afresh
            if self._closed:
                raise
            self._pool.stop()
            self._pool = self._new_pool()
            return self._pool.schedule(fn, args, kwargs, timeout=timeout)


def _guarded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """In the worker: an exception travels back as itself when it can, else as a plain one with its type and
    message (lxml's carry their error log, which cannot be pickled, and that would break the pool)."""
    try:
        return fn(*args, **kwargs)
    except MemoryError:
        raise MemoryError("out of memory") from None
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise


def _ready() -> None:
    """A task that does nothing: scheduling it starts the pool's workers."""


def _start_worker(extra_bytes: int) -> None:
    ignore_interrupts()
    _yield_to_the_run()
    from .. import parse  # noqa: F401  - loaded before the cap is set, so the cap is all the page's own
    limit_memory(extra_bytes)


def _yield_to_the_run() -> None:
    """A parse worker runs a little below the run's own process, whose event loop sends the LLM requests: a
    core busy parsing never delays a request, and the workers boot in the gaps of the run's start-up."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not allowed here: run at the same priority
        pass


def limit_memory(extra_bytes: int) -> None:
    """Cap this process's address space at what it maps now plus `extra_bytes` (Linux; else a no-op)."""
    if not extra_bytes or resource is None or not hasattr(resource, "RLIMIT_AS"):
        return
    try:
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = mapped + extra_bytes
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft == resource.RLIM_INFINITY or wanted < soft:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
