"""One timed run per mode against the simulator, the work the lower bound is made of, and the bound itself:
shared by bench_modes.py and bench_scaling.py."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import ROOT, run_main, sim_stats

from document_it.fetch import FetchLimits, fetch
from document_it.parse import parse
from document_it.sources import discover
from document_it.testing.docsite import page_path, write_docsite
from document_it.testing.sim_profiles import PROFILES, describe

# naive: benchmarks/_naive.py, the obvious approach; dask: on a local Dask cluster the run starts itself;
# dask-llm: dask with --distributed-llm (the LLM requests sent from the workers, one semaphore for the cap);
# hybrid-b1: hybrid with --batch-size 1 (no cross-page batching: the batching on/off comparison);
# hybrid-ns: hybrid with --no-synthesis (per-page answers only, the naive baseline's own job)
MODES = ("sync", "async", "process", "hybrid", "hybrid-b1", "hybrid-ns", "dask", "dask-llm", "naive")
_VARIANT_FLAGS = {"hybrid-b1": ["--batch-size", "1"], "hybrid-ns": ["--no-synthesis"], "dask-llm": ["--distributed-llm"]}
# run.json's `work` figures each row carries (bench_modes.py prints them as req/page, prompt tok/page, text tok/page)
WORK_KEYS = ("requests_per_page", "prompt_tokens_per_page", "text_tokens_per_page")


@dataclass(frozen=True)
class RunConfig:
    """What every run of one table shares."""

    source: str  # the llms.txt URL
    base_url: str  # the simulator's /v1
    max_concurrency: int
    threads: int
    tasks: str = ""  # --tasks for the pipeline and the naive baseline ("" = all five)
    slots: int = 0  # the simulator's sequence slots (0 = unlimited)

    def served_at_once(self, mode: str = "") -> int:
        """How many requests a run of `mode` can have served at once: sync one, the others the cap, never
        more than the server's slots."""
        cap = 1 if mode == "sync" else self.max_concurrency
        return min(cap, self.slots) if self.slots else cap


def sim_flags(profile: str | None, latency_ms: float, ms_per_token: float, capacity: int = 0) -> list[str]:
    """The simulator's flags: a named profile, or the latency, decode time and slots given."""
    if profile:
        return ["--profile", profile]
    return ["--latency-ms", str(latency_ms), "--ms-per-token", str(ms_per_token), "--capacity", str(capacity)]


def sim_slots(profile: str | None, capacity: int = 0) -> int:
    """The simulator's sequence slots (0 = unlimited)."""
    return PROFILES[profile]["capacity"] if profile else capacity


def server_line(profile: str | None, latency_ms: float, ms_per_token: float, capacity: int = 0) -> str:
    """What a table's header says of the server it was measured against."""
    if profile:
        return describe(profile)
    return (f"no profile: latency {latency_ms:g} ms + {ms_per_token:g} ms/token, "
            + (f"{capacity} slots" if capacity else "unlimited slots") + ", no prefill cost")


def generated_site(root: Path, pages: int) -> None:
    """`pages` generated pages and an llms.txt listing them (four sections)."""
    write_docsite(root, pages)
    lines = ["# Skiff manual", "> Generated pages for the mode benchmark.", ""]
    for section in range(4):
        lines += ["", f"## Part {section}", ""]
        lines += [f"- [Topic {n}]({page_path(section, n)})" for n in range(section, pages, 4)]
    (root / "llms.txt").write_text("\n".join(lines) + "\n")


def measure_work(source: str) -> dict[str, float]:
    """Download every page once, one after another, and parse each in this process: the download seconds
    and parse CPU seconds the lower bound divides by threads and cores (no mode's overlap included)."""
    limits = FetchLimits(allow_private=True)
    refs = discover(source, limits).refs
    download = parse_cpu = 0.0
    for ref in refs:
        started = time.perf_counter()
        got = fetch(ref, limits)
        download += time.perf_counter() - started
        cpu = time.process_time()
        parse(got)
        parse_cpu += time.process_time() - cpu
    return {"pages": len(refs), "download_seconds": round(download, 3), "parse_cpu_seconds": round(parse_cpu, 3)}


def run_mode(mode: str, cfg: RunConfig) -> dict[str, Any]:
    """One run of `mode` (python main.py, or the naive baseline) with the simulator's counters reset."""
    sim_stats(cfg.base_url, reset=True)
    if mode == "naive":
        return _naive(cfg)
    engine = mode.split("-")[0]
    flags = ["--source", cfg.source, "--parallelism-mode", engine, "--llm", "openai", "--llm-base-url", cfg.base_url,
             "--max-concurrency", str(cfg.max_concurrency), "--no-cache", "--max-workers", str(cfg.threads),
             *_VARIANT_FLAGS.get(mode, [])]
    if cfg.tasks:
        flags += ["--tasks", cfg.tasks]
    run, code = run_main(*flags)
    stats = sim_stats(cfg.base_url)
    resources = run.get("resources") or {}
    llm = run["llm"]
    work = run.get("work") or {}
    return {"mode": mode, "exit": code, "wall_seconds": run["wall_seconds"], "pages": run["documents"]["total"],
            "failed": run["documents"]["failed"], "prompts": llm["prompts"], "llm_requests": stats["requests"],
            "tokens": llm.get("tokens_in", 0) + llm.get("tokens_out", 0),
            "server_busy_seconds": round(stats["busy_seconds"], 2), "server_max_in_flight": stats["max_in_flight"],
            "batches": (llm.get("batching") or {}).get("batches", 0),
            "peak_rss_mb": resources.get("peak_rss_mb"), "mean_cpu_percent": resources.get("mean_cpu_percent"),
            **{key: work.get(key) for key in WORK_KEYS}}


def _naive(cfg: RunConfig) -> dict[str, Any]:
    """The baseline: asyncio.gather + a semaphore over the same pages and prompts, parsing inline."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "_naive.py"), cfg.source, cfg.base_url,
           "--max-concurrency", str(cfg.max_concurrency)] + (["--tasks", cfg.tasks] if cfg.tasks else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"naive baseline failed: {done.stderr.strip()[-500:]}")
    out = json.loads(done.stdout)
    stats = sim_stats(cfg.base_url)
    return {"mode": "naive", "exit": 0, "wall_seconds": out["wall_seconds"], "pages": out["pages"],
            "failed": 0, "failed_prompts": out["failed_prompts"], "prompts": out["prompts"],
            "llm_requests": stats["requests"], "tokens": None, "batches": 0,
            "server_busy_seconds": round(stats["busy_seconds"], 2), "server_max_in_flight": stats["max_in_flight"],
            "peak_rss_mb": None, "mean_cpu_percent": None,
            **naive_work(stats["attempts"], stats["prompt_tokens"], out.get("text_tokens"), out["pages"])}


def naive_work(requests: int, prompt_tokens: int, text_tokens: int | None, pages: int) -> dict[str, Any]:
    """The naive row's per-page work as run.json's `work` block gives it for the others: the requests and
    prompt tokens the simulator received (its /stats), the text tokens of the pages the baseline parsed."""
    per = (lambda amount, digits: round(amount / pages, digits) if pages and amount is not None else None)
    return {"requests_per_page": per(requests, 2), "prompt_tokens_per_page": per(prompt_tokens, 0),
            "text_tokens_per_page": per(text_tokens, 0)}


def median_run(runs: list[dict[str, Any]],
               keys: tuple[str, ...] = ("wall_seconds", "server_busy_seconds", "peak_rss_mb", "mean_cpu_percent"),
               ) -> dict[str, Any]:
    """The run with the median wall time, with every timing of `keys` replaced by its median over the repeats."""
    ordered = sorted(runs, key=lambda r: r["wall_seconds"])
    row = dict(ordered[len(ordered) // 2])
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = round(statistics.median(values), 2) if values else None
    row["repeats"] = len(runs)
    return row


def lower_bound(rows: list[dict[str, Any]], work: dict[str, float], cfg: RunConfig) -> dict[str, float]:
    """T_lb = max(server busy / concurrency, parse CPU / cores, download / threads).

    The LLM part is the least server busy time any of the runs needed (requests × their real service time,
    per-token decode included), over the concurrency cap (or the server's slots, if fewer): no schedule of
    those requests finishes sooner."""
    cores = os.cpu_count() or 1
    parts = {"llm": min(r["server_busy_seconds"] for r in rows) / cfg.served_at_once(),
             "parse": work["parse_cpu_seconds"] / cores, "download": work["download_seconds"] / cfg.threads}
    return {"seconds": round(max(parts.values()), 3), **{k: round(v, 3) for k, v in parts.items()}}


def add_ratios(rows: list[dict[str, Any]], bound: float, cfg: RunConfig | None = None) -> None:
    """Speedup over the sync row (if any), pages/s, efficiency T_lb / T and, given `cfg`, each row's own
    utilisation: its server busy time / (requests it can have served at once × its wall time)."""
    sync = next((r for r in rows if r["mode"] == "sync"), None)
    for r in rows:
        r["speedup_vs_sync"] = round(sync["wall_seconds"] / r["wall_seconds"], 2) if sync else None
        r["pages_per_second"] = round(r["pages"] / r["wall_seconds"], 2)
        r["efficiency"] = round(bound / r["wall_seconds"], 3)
        if cfg is not None:
            r["utilisation"] = round(r["server_busy_seconds"] / (cfg.served_at_once(r["mode"]) * r["wall_seconds"]), 3)
