"""Crawl-and-parse throughput: pages/s over a generated loopback documentation site, no analysis.

    python benchmarks/bench_crawl.py [--pages 500] [--sections 10] [--threads 16] [--per-host 16]
                                     [--processes N] [--repeat 1] [--modes hybrid,async] [--server process]

The site (document_it.testing.docsite: a home page, --sections section indexes, --pages content pages, all
within depth 2 of docs/index.html) is written to a temp dir and served by SiteServer on 127.0.0.1 — by default
in a child process of its own, so the server does not share the crawler's GIL (a real site is elsewhere; with
--server thread it runs in this process, which costs the crawler GIL time). Each run starts a queued crawl in a
fresh --state-dir exactly as a real run does (queue.start_run + the crawl's seeds), then times
JobWorker.drain with no agent: claim a page, download it on one of --threads threads (at most --per-host at
once), parse it (hybrid: in a spawn process pool of --processes; async: on threads), queue its links, record
it done. --no-cache is set, so no parse comes from the memo.

Two figures per mode:
  warm  the process pool was started (and each worker imported the parser) before the clock started;
  cold  the clock starts before the executors exist, so process start-up is in it (what a real run pays).
(async has no process pool: its warm and cold runs are the same measurement twice.)
`in flight` (pages the worker keeps under way) is threads + 2 * processes: enough to keep every download
thread busy while each parse process has one page running and one queued (a real run uses
Plan.docs_in_flight = max_concurrency + max_workers, sized for LLM calls this benchmark does not make).
CPU% is the crawler's process tree (this process + its pool workers; the server process excluded) as a
share of ONE core, so 2 cores fully used is 200%; it is measured with psutil when installed.

The run fails (exit 1) unless every page of the site was visited exactly once and completed. Goal: hybrid
warm >= 150 pages/s with 16 threads on 2 cores (the median over --repeat; reported, not enforced). Loopback
numbers on a shared machine are noisy: use --repeat 3 or more before comparing.
Writes benchmarks/results/bench_crawl.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from _harness import print_table, write_json  # also puts the repo root on sys.path

from document_it.testing.docsite import write_docsite
from document_it.testing.site import SiteServer

# Spawned children (the pool's parse workers, the site server) import this file again as __mp_main__, so the
# package is imported only inside functions the parent runs: document_it.run.driver and .loop pull in the
# analysis agent (langgraph, ~4 s of CPU per process), which main.py's children never load either (cli is lazy).

try:
    import psutil
except ImportError:  # CPU% is optional
    psutil = None

GOAL_PAGES_S = 150.0
SERVER_MAX_S = 900  # the site stops by itself after this long even if the benchmark is killed


# ---- the site, served in a process of its own (or a thread of this one) -----------------------------------------

def _serve(root: str, conn: Any) -> None:
    """Child process: serve `root` on loopback until told to stop; report hits and CPU seconds."""
    with SiteServer(root, max_seconds=SERVER_MAX_S) as site:
        conn.send(site.base_url)
        conn.recv()  # "stop" (or EOFError when the parent went away)
        times = os.times()
        conn.send({"hits": site.hits, "cpu_s": times.user + times.system})


@contextmanager
def served(root: Path, where: str) -> Iterator[tuple[str, dict[str, Any], int | None]]:
    """Yield (base URL, stats filled in on exit, server pid or None when in this process)."""
    stats: dict[str, Any] = {}
    if where == "thread":
        with SiteServer(root, max_seconds=SERVER_MAX_S) as site:
            yield site.base_url, stats, None
            stats["hits"] = site.hits
        return
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(str(root), child), daemon=True,
                                                        name="bench-site")
    proc.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the site server did not start")
        yield parent.recv(), stats, proc.pid
    finally:
        try:
            parent.send("stop")
            if parent.poll(10):
                stats.update(parent.recv())
        except (OSError, EOFError):
            pass
        proc.join(10)
        if proc.is_alive():
            proc.terminate()  # only the server this benchmark started, by its handle
            proc.join(5)


# ---- CPU of the crawler's process tree ---------------------------------------------------------------------------

def _cpu_snapshot(exclude: int | None) -> dict[int, float]:
    """user+system seconds of this process and its descendants (not the server's process tree)."""
    if psutil is None:
        return {}
    me = psutil.Process()
    snap: dict[int, float] = {}
    skip: set[int] = set()
    if exclude is not None:
        try:
            server = psutil.Process(exclude)
            skip = {exclude, *(p.pid for p in server.children(recursive=True))}
        except psutil.Error:
            skip = {exclude}
    for proc in [me, *me.children(recursive=True)]:
        if proc.pid in skip:
            continue
        try:
            t = proc.cpu_times()
            snap[proc.pid] = t.user + t.system
        except psutil.Error:
            pass
    return snap


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float | None:
    """CPU seconds spent in between (processes started meanwhile count from zero; ones that ended are lost)."""
    if psutil is None:
        return None
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# ---- one crawl ---------------------------------------------------------------------------------------------------

def _warm(delay: float) -> int:
    """Pool worker: import the parser (what the first real parse would pay) and hold the worker a moment,
    so concurrent warm-up calls land on different processes."""
    import document_it.parse  # noqa: F401

    time.sleep(delay)
    return os.getpid()


async def _warm_pool(stages: Any, processes: int) -> int:
    """Start every pool process and import the parser in each; returns how many distinct workers answered."""
    pids: set[int] = set()
    for _ in range(5):
        pids |= set(await asyncio.gather(*(stages.run_cpu(_warm, 0.2) for _ in range(processes * 2))))
        if len(pids) >= processes:
            break
    return len(pids)


def _settings(args: argparse.Namespace, mode: str, start: str, state: Path) -> Any:
    from document_it.config import Mode, Settings

    expected = args.pages + args.sections + 1
    return Settings(source=start, allow_private=True, max_depth=2, max_pages=expected + 10,
                    max_workers=args.threads, per_host=args.per_host, analysis_workers=args.processes,
                    state_dir=state, output_dir=state / "out", no_cache=True, quiet=True, mode=Mode(mode))


async def _drain(settings: Any, queue: Any, spec: Any, in_flight: int, warm: bool,
                 server_pid: int | None, timeout: float) -> dict[str, Any]:
    from document_it.core.dispatcher import PLANS, Where
    from document_it.run.loop import open_worker

    results: list[Any] = []
    plan = PLANS[settings.mode]
    stop = asyncio.Event()  # never set: the drain ends when the queue is empty
    cold_clock = time.perf_counter()
    cold_cpu = _cpu_snapshot(server_pid)
    with open_worker(settings, spec, queue, plan, None) as (worker, stages):
        pooled = plan.parse is Where.PROCESSES
        warmed = await _warm_pool(stages, settings.analysis_workers) if warm and pooled else None
        cpu0 = _cpu_snapshot(server_pid) if warm else cold_cpu
        clock = time.perf_counter() if warm else cold_clock
        timed_out = False
        try:
            await asyncio.wait_for(worker.drain(results.append, in_flight, stop), timeout)
        except asyncio.TimeoutError:
            timed_out = True
        seconds = time.perf_counter() - clock
        cpu_s = _cpu_delta(cpu0, _cpu_snapshot(server_pid))  # before the pool shuts down
        counters = worker.counters.as_dict()
    return {"results": results, "seconds": seconds, "cpu_s": cpu_s, "timed_out": timed_out,
            "warmed_workers": warmed, "counters": counters}


def crawl_once(args: argparse.Namespace, mode: str, base_url: str, warm: bool, server_pid: int | None,
               expected_paths: set[str]) -> dict[str, Any]:
    from document_it.core.job_queue import JobQueue, JobState
    from document_it.run.crawl import Crawl, CrawlSpec
    from document_it.fetch import FetchLimits
    from document_it.run.loop import RunSpec
    from document_it.models import DocStatus

    expected = len(expected_paths)
    start = f"{base_url}/docs/index.html"
    with tempfile.TemporaryDirectory(prefix="bench-crawl-state-") as tmp:
        settings = _settings(args, mode, start, Path(tmp))
        in_flight = args.threads + 2 * args.processes
        with JobQueue(settings.jobs_path) as queue:
            # what queued._open_run does for a fresh crawl (no index file: the source is the start page)
            crawl = CrawlSpec.from_settings(settings, start)
            info = queue.start_run(start, {"incremental": False, "title": "bench", "limited": False,
                                           "crawl": crawl.to_options()})
            queue.add(info.id, Crawl(crawl, FetchLimits.from_settings(settings)).seeds(), crawl.max_pages)
            spec = RunSpec(info.id, start, False, crawl)
            got = asyncio.run(_drain(settings, queue, spec, in_flight, warm, server_pid, args.timeout))
            counts = queue.counts(info.id)
    results = got["results"]
    paths = [r.url.removeprefix(base_url + "/") for r in results]
    completed = sum(r.status is DocStatus.COMPLETED for r in results)
    problems = []
    if got["timed_out"]:
        problems.append(f"timed out after {args.timeout:g}s")
    if len(results) != expected or completed != expected:
        problems.append(f"{len(results)} results, {completed} completed, expected {expected}")
    if len(set(paths)) != len(paths):
        problems.append(f"{len(paths) - len(set(paths))} pages visited more than once")
    missing, extra = expected_paths - set(paths), set(paths) - expected_paths
    if missing or extra:
        problems.append(f"missing {len(missing)} (e.g. {sorted(missing)[:3]}), "
                        f"unexpected {len(extra)} (e.g. {sorted(extra)[:3]})")
    if counts[JobState.DONE] != expected or sum(counts.values()) != expected:
        problems.append(f"queue says {({s.value: n for s, n in counts.items() if n})}")
    seconds = got["seconds"]
    fetch_ms = [r.timings.get("fetch", 0.0) * 1000 for r in results]
    parse_ms = [r.timings.get("parse", 0.0) * 1000 for r in results]
    return {
        "mode": mode, "start": "warm" if warm else "cold", "pages": len(results), "threads": args.threads,
        "per_host": args.per_host, "processes": args.processes, "in_flight": in_flight,
        "seconds": round(seconds, 3), "pages_s": round(len(results) / seconds, 1) if seconds else None,
        "cpu_pct": round(100 * got["cpu_s"] / seconds) if got["cpu_s"] is not None and seconds else None,
        "fetch_ms_median": round(statistics.median(fetch_ms), 1) if fetch_ms else None,
        "parse_ms_median": round(statistics.median(parse_ms), 1) if parse_ms else None,
        "warmed_workers": got["warmed_workers"], "counters": got["counters"],
        "ok": not problems, "problems": problems,
    }


def _expected_paths(written: list[str]) -> set[str]:
    """The site-relative paths a crawl fetches: section indexes are linked as folders (part-N/)."""
    return {p.removesuffix("index.html") if p.startswith("docs/part-") else p for p in written}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=500, help="content pages (plus section indexes and a home page)")
    p.add_argument("--sections", type=int, default=10)
    p.add_argument("--threads", type=int, default=16, help="download threads (Settings.max_workers)")
    p.add_argument("--per-host", type=int, default=16, help="downloads at once to the one loopback host")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="parse processes (analysis_workers)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--modes", default="hybrid,async", help="hybrid: parse in processes; async: parse on threads")
    p.add_argument("--server", choices=("process", "thread"), default="process",
                   help="serve the site from a child process (default) or a thread of this process")
    p.add_argument("--timeout", type=float, default=120, help="seconds one crawl may take before it counts as failed")
    args = p.parse_args()
    if args.pages < 1 or args.sections < 1 or args.sections > args.pages:
        p.error("need 1 <= --sections <= --pages")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in ("hybrid", "async"):
            p.error(f"--modes takes hybrid and/or async (got {mode!r})")

    rows: list[dict[str, Any]] = []
    server: dict[str, Any] = {}
    print(f"{os.cpu_count()} CPUs; psutil {'yes' if psutil else 'no (no CPU%)'}; server in a {args.server}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-crawl-site-") as site_dir:
        expected_paths = _expected_paths(write_docsite(Path(site_dir), args.pages, args.sections))
        with served(Path(site_dir), args.server) as (base_url, server, server_pid):
            for _ in range(args.repeat):
                for mode in modes:
                    for warm in (False, True):
                        row = crawl_once(args, mode, base_url, warm, server_pid, expected_paths)
                        rows.append(row)
                        state = "ok" if row["ok"] else "FAILED: " + "; ".join(row["problems"])
                        print(f"  {mode} {row['start']}: {row['pages']} pages in {row['seconds']:.2f}s "
                              f"= {row['pages_s']} pages/s ({state})", flush=True)
    print(f"\n{len(expected_paths)} pages ({args.pages} content, {args.sections} sections, home) over loopback; "
          f"server hits {server.get('hits', '?')}"
          + (f", server CPU {server['cpu_s']:.1f}s" if "cpu_s" in server else "") + "\n")
    print_table(rows, [("mode", "mode", ""), ("start", "start", ""), ("pages", "pages", "d"),
                       ("threads", "threads", "d"), ("per host", "per_host", "d"), ("processes", "processes", "d"),
                       ("in flight", "in_flight", "d"), ("seconds", "seconds", ".2f"), ("pages/s", "pages_s", ".1f"),
                       ("CPU%", "cpu_pct", "d"), ("fetch ms p50", "fetch_ms_median", ".1f"),
                       ("parse ms p50", "parse_ms_median", ".1f")])
    hybrid = [r["pages_s"] for r in rows if r["mode"] == "hybrid" and r["start"] == "warm" and r["ok"]]
    goal: dict[str, Any] = {"pages_s": GOAL_PAGES_S, "cpus": os.cpu_count(), "median_hybrid_warm": None,
                            "best_hybrid_warm": None, "met": None}
    if hybrid:
        median = statistics.median(hybrid)
        goal.update(median_hybrid_warm=median, best_hybrid_warm=max(hybrid), met=median >= GOAL_PAGES_S)
        print(f"\ngoal >= {GOAL_PAGES_S:g} pages/s (hybrid, warm, median of {len(hybrid)}): "
              f"{'met' if goal['met'] else 'NOT met'} — {median:.1f} pages/s (best {max(hybrid):.1f}) "
              f"on {os.cpu_count()} CPUs")
    path = write_json("bench_crawl.json", {"params": vars(args), "goal": goal, "server": server, "rows": rows})
    print(f"\nwrote {path.name} in benchmarks/results/")
    failed = [r for r in rows if not r["ok"]]
    if failed:
        print(f"\n{len(failed)} crawl(s) did not visit every page exactly once", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
