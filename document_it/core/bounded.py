"""A process pool whose workers are bounded: each task may have a deadline, each worker a memory cap.

Built on pebble, which does what the standard pool cannot: a task past its deadline has its worker
stopped and replaced, and a worker that dies takes only its own task with it, so the pool goes on.
"""

from __future__ import annotations

import multiprocessing
import os
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

__all__ = ["BoundedPool", "ProcessExpired", "limit_memory", "spawn_context", "ignore_interrupts"]

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
        extra = int(memory_mb * 1024 * 1024) if memory_mb else 0
        self._pool = ProcessPool(workers, initializer=_start_worker, initargs=(extra,), context=spawn_context())

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """No deadline (what `loop.run_in_executor` calls)."""
        return self._pool.schedule(fn, args, kwargs)

    def within(self, seconds: float | None, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(*args)`; past `seconds` its worker is stopped and the future raises TimeoutError."""
        return self._pool.schedule(_guarded, (fn, *args), timeout=seconds)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self._pool.stop()  # running tasks are abandoned with their workers
        else:
            self._pool.close()
        if wait:
            self._pool.join()


def _guarded(fn: Callable[..., T], *args: Any) -> T:
    """In the worker: a MemoryError travels back plain (lxml's carries its error log, which cannot be pickled)."""
    try:
        return fn(*args)
    except MemoryError:
        raise MemoryError("out of memory") from None


def _start_worker(extra_bytes: int) -> None:
    ignore_interrupts()
    from .. import parse  # noqa: F401  - loaded before the cap is set, so the cap is all the page's own
    limit_memory(extra_bytes)


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
