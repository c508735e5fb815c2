"""Modes are data: each mode says where fetch, parse and CPU-bound analysis run."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from concurrent.futures import BrokenExecutor, Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ..config import MARKDOWN_OUTPUTS, Mode, Settings
from ..errors import ParseError, WorkerLost
from ..fetch import FetchLimits, RedirectCheck, fetch
from ..politeness import HostGate, Robots
from ..models import DocRef, Fetched, ParsedDoc
from ..parse import PARSE_VERSION, parse
from .bounded import BoundedPool, ProcessExpired
from .cache import Memo, memo_key

__all__ = ["Where", "Plan", "PLANS", "Stages"]

T = TypeVar("T")


class Where(str, enum.Enum):
    """Where a stage's work runs."""

    INLINE = "inline"          # on the calling thread, one at a time
    THREADS = "threads"        # a thread pool
    PROCESSES = "processes"    # a process pool
    ASYNC = "async"            # concurrent coroutines on the event loop
    CLUSTER = "cluster"        # a Dask distributed cluster's workers (core/cluster.py)


@dataclass(frozen=True)
class Plan:
    """One mode's placement of the stages."""

    fetch: Where
    parse: Where
    analyze: Where

    def docs_in_flight(self, settings: Settings) -> int:
        """How many documents may be between fetch and result at once (bounds memory)."""
        if self.analyze is Where.INLINE:
            return 1
        return settings.max_concurrency + settings.max_workers

    def llm_concurrency(self, settings: Settings) -> int:
        return 1 if self.analyze is Where.INLINE else settings.max_concurrency


PLANS: dict[Mode, Plan] = {
    Mode.SYNC: Plan(fetch=Where.INLINE, parse=Where.INLINE, analyze=Where.INLINE),
    Mode.ASYNC: Plan(fetch=Where.THREADS, parse=Where.THREADS, analyze=Where.ASYNC),
    Mode.PROCESS: Plan(fetch=Where.THREADS, parse=Where.PROCESSES, analyze=Where.PROCESSES),
    Mode.HYBRID: Plan(fetch=Where.THREADS, parse=Where.PROCESSES, analyze=Where.ASYNC),
    Mode.DASK: Plan(fetch=Where.THREADS, parse=Where.CLUSTER, analyze=Where.ASYNC),
}


def _open_cluster(settings: Settings) -> Any:
    from .cluster import open_cluster  # Dask is imported only by the runs that use it

    return open_cluster(settings)


def start_parse_pool(settings: Settings) -> BoundedPool:
    """The process pool that parses pages (and runs the offline analyser), its workers spawning now."""
    pool = BoundedPool(settings.analysis_workers, settings.parse_memory_mb)
    pool.start()
    return pool


class Stages:
    """The executors one run (or one worker process) uses; a context manager that shuts them down."""

    def __init__(self, settings: Settings, plan: Plan, memo: Memo | None = None,
                 redirect_check: RedirectCheck | None = None, robots: Robots | None = None,
                 processes: BoundedPool | None = None) -> None:
        """`processes`: a parse pool started earlier (pipeline.run starts it before importing the LLM stack, so
        its workers boot meanwhile); its starter shuts it down. Without it, the plan's own pool is made here."""
        self.plan = plan
        self.memo = memo or Memo(None)
        self.limits = FetchLimits.from_settings(settings)
        self.gate = HostGate(settings.per_host, settings.delay, robots, share=settings.host_share)
        self.redirect_check = redirect_check
        self.chunk_tokens = settings.chunk_tokens
        self.markdown = bool(MARKDOWN_OUTPUTS.intersection(settings.outputs))  # pages/ or llms-full.txt wanted
        self.parse_timeout = settings.parse_timeout
        self._parse_memory_mb = settings.parse_memory_mb
        self.observer: Callable[[str], None] | None = None  # told "downloaded" / "parsed" (the progress bars)
        self._threads = ThreadPoolExecutor(settings.max_workers, thread_name_prefix="fetch") \
            if plan.fetch is Where.THREADS else None
        self.cluster = _open_cluster(settings) if plan.parse is Where.CLUSTER else None
        self._own_processes = processes is None
        self._processes: Executor | None = processes if plan.parse is Where.PROCESSES and processes else (
            start_parse_pool(settings) if plan.parse is Where.PROCESSES
            else (self.cluster.executor if self.cluster else None))

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._threads:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self.cluster:
            self.cluster.close()
        elif self._processes and self._own_processes:
            self._processes.shutdown(wait=True, cancel_futures=True)

    async def fetch(self, ref: DocRef, validators: dict[str, str] | None = None) -> Fetched:
        """Download one page where the plan says fetching runs (conditionally, given validators)."""
        fetched = await self._run(self.plan.fetch, self._threads, fetch, ref, self.limits, validators,
                                  self.redirect_check, self.gate.slot)
        if fetched.ok and self.observer is not None:
            self.observer("downloaded")
        return fetched

    async def parse(self, fetched: Fetched, again: bool = False) -> ParsedDoc:
        """Parse one page where the plan says parsing runs, unless the same bytes were parsed before; `again`: a
        page this run parsed already (it waited for a batch), not counted twice on the progress bars."""
        ref = fetched.ref
        key = memo_key(PARSE_VERSION, ref.url, ref.title, ref.topic, fetched.final_url, fetched.content_type,
                       fetched.encoding, self.chunk_tokens, self.markdown, hashlib.sha256(fetched.content).hexdigest())
        cached = self.memo.get("parse", key)
        if isinstance(cached, ParsedDoc):
            if not again:
                self._parsed()
            return cached
        page = await self._bounded_parse(fetched)
        self.memo.set("parse", key, page)
        if not again:
            self._parsed()
        return page

    async def _bounded_parse(self, fetched: Fetched) -> ParsedDoc:
        """Parse within --parse-timeout (a worker process past it is stopped; a thread past it finishes in
        the background) and, in a process pool, within --parse-memory-mb; a page beyond either fails with
        the reason, the pool goes on. Inline (sync) and on a Dask cluster (which bounds its own workers'
        memory) there is no clock over the parse."""
        seconds = self.parse_timeout
        try:
            if isinstance(self._processes, BoundedPool):
                return await asyncio.wrap_future(self._processes.within(seconds, parse, fetched, self.chunk_tokens,
                                                                         self.markdown))
            if self.plan.parse is Where.THREADS:
                return await _from_start(seconds, parse, fetched, self.chunk_tokens, self.markdown)
            return await self._run(self.plan.parse, self._processes, parse, fetched, self.chunk_tokens, self.markdown)
        except TimeoutError:
            raise ParseError(f"took longer than {seconds:g} s to parse (--parse-timeout)") from None
        except MemoryError:
            cap = self._parse_memory_mb if isinstance(self._processes, BoundedPool) else None
            raise ParseError("needs more memory to parse than " +
                             (f"the cap allows (--parse-memory-mb {cap:g})" if cap else "is free")) from None
        except BrokenExecutor as exc:
            raise ParseError(f"the parse workers could not start or all stopped ({exc})") from None
        except ProcessExpired as exc:
            raise ParseError(f"the parse worker stopped (exit code {exc.exitcode}) while parsing this page; "
                             f"it may have needed more memory than the machine or --parse-memory-mb allows") from None
        except (ParseError, WorkerLost):
            raise
        except Exception as exc:
            if self.cluster is None or not _raised_by_dask(exc):
                raise
            # distributed's executor can fail with its own errors when the cluster loses its workers mid-task
            raise WorkerLost(f"the Dask cluster lost this page's parse ({type(exc).__name__}: {exc})") from None

    def _parsed(self) -> None:
        if self.observer is not None:
            self.observer("parsed")

    async def run_cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """CPU-bound analysis work (the offline analyser) beside parsing."""
        try:
            return await self._run(self.plan.parse, self._processes, fn, *args)
        except ProcessExpired as exc:
            raise WorkerLost(f"the worker process running the offline analysis stopped (exit code {exc.exitcode})") \
                from None

    @staticmethod
    async def _run(where: Where, executor: Executor | None, fn: Callable[..., T], *args: Any) -> T:
        if where is Where.INLINE:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


def _raised_by_dask(exc: BaseException) -> bool:
    """True when `exc` was raised inside Dask's own code (not by the parse it ran)."""
    tb = exc.__traceback__
    while tb is not None:
        if "/distributed/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


async def _from_start(seconds: float, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on the default thread pool, given `seconds` from when a thread takes it up (time spent
    waiting for a free thread is not the page's); past them TimeoutError, and the thread finishes unseen."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()

    def timed() -> T:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for this any more
            loop.call_soon_threadsafe(lambda: started.done() or started.set_result(None))
        return fn(*args)

    work = loop.run_in_executor(None, timed)
    await asyncio.wait([started, work], return_when=asyncio.FIRST_COMPLETED)
    return await asyncio.wait_for(work, seconds)
