"""The parse pool: started on demand before any page (its workers boot while the run imports the LLM stack),
and its workers run below the run's own process, so parsing never delays the event loop's requests."""

from __future__ import annotations

import os
import time

from document_it.core.bounded import WORKER_NICENESS, BoundedPool

from _procs import alive, children


def test_start_spawns_the_workers_before_any_task() -> None:
    before = children(os.getpid())
    pool = BoundedPool(2, None)
    try:
        assert not children(os.getpid()) - before  # made, not started
        pool.start()
        deadline = time.monotonic() + 60
        while len(_workers(before)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_workers(before)) >= 2  # up and waiting for the first page
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _workers(before: set[int]) -> set[int]:
    return {pid for pid in children(os.getpid()) - before if alive(pid)}


def test_workers_run_below_the_run_s_own_priority() -> None:
    pool = BoundedPool(1, None)
    try:
        pool.start()
        assert pool.submit(os.nice, 0).result(timeout=60) == os.nice(0) + WORKER_NICENESS
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

