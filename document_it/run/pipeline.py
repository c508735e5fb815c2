"""A run from the command line's settings: find the pages, start the parse pool and the LLM endpoint, then
drive the one loop over the run's job queue (run/driver.py)."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import Any, Iterator

from ..analysis.endpoint import check_endpoint
from ..config import LLMKind, Settings
from ..core.bounded import BoundedPool
from ..core.dispatcher import PLANS, Where, start_parse_pool
from ..fetch import FetchLimits
from ..sources import discover

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(settings: Settings) -> dict[str, Any]:
    """Discover, fetch, parse and analyse every page, then write the outputs; returns run.json's content."""
    if settings.resume:
        from .options import resumed_settings

        settings = resumed_settings(settings)
    index = None if settings.resume else discover(settings.source, FetchLimits.from_settings(settings), settings.limit,
                                                    own=(settings.output_dir, settings.state_dir))
    with _early_parse_pool(settings) as pool:  # its workers boot on the other cores during the imports
        with _imports_without_gc():
            from ..core.resources import ResourceSampler
            from .driver import drive, is_oneshot  # and with it the LLM stack: LangChain, LangGraph, openai

        is_oneshot(settings, index)  # --no-queue with a crawl: an error before any server is asked
        with _llm_endpoint(settings) as live, ResourceSampler() as resources:
            if live.llm is not LLMKind.EXTRACTIVE:
                live = check_endpoint(live)  # the model the server will use (the first it lists, if none was given)
                settings = settings.with_(model=live.model)
            return drive(live, index, chosen=settings, resources=resources, pool=pool)


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
