"""Time every parallelism mode on the same pages against the same LLM simulator.

    python benchmarks/bench_modes.py [--pages 38] [--latency-ms 400] [--max-concurrency 20] [--repeat 1]
    python benchmarks/bench_modes.py --quick        # a few pages, low latency: well under 3 minutes

Pages are served over loopback HTTP (the bundled sample, or --pages N generated ones) and the simulator
runs in its own process with a per-output-token delay. For each mode (median of --repeat runs) it prints
wall time, speedup over sync, pages/s, prompts and requests, tokens, the peak RSS summed over every
process of the run and its mean CPU, and the efficiency T_lb / T against the lower bound

    T_lb = max(server busy seconds / concurrency, parse CPU / cores, download time / threads)

(the server's own busy time is requests × their real service time, per-token delay included; parse and
download totals come from the sync run, where nothing overlaps). The `naive` row is the obvious approach
(benchmarks/_naive.py: asyncio.gather + a semaphore over the same pages and prompts, parsing inline, no
batching, cache or topic syntheses), so the table shows what the pipeline's design buys. Writes --json (default
benchmarks/results/bench_modes.json) as {"config", "lower_bound_seconds", "results": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _harness import ROOT, print_table, run_main, sample_site, sim_stats, simulator

from document_it.testing.docsite import page_path, write_docsite
from document_it.testing.site import SiteServer

MODES = ("sync", "async", "process", "hybrid", "naive")  # naive: benchmarks/_naive.py, the obvious approach


def _generated_site(root: Path, pages: int) -> None:
    """`pages` generated pages and an llms.txt listing them (four sections)."""
    write_docsite(root, pages)
    lines = ["# Skiff manual", "> Generated pages for the mode benchmark.", ""]
    for section in range(4):
        lines += ["", f"## Part {section}", ""]
        lines += [f"- [Topic {n}]({page_path(section, n)})" for n in range(section, pages, 4)]
    (root / "llms.txt").write_text("\n".join(lines) + "\n")


def _naive(source: str, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The baseline: asyncio.gather + a semaphore over the same pages and prompts, parsing inline."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "_naive.py"), source, base_url,
                           "--max-concurrency", str(args.max_concurrency)], capture_output=True, text=True,
                          timeout=3600, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"naive baseline failed: {done.stderr.strip()[-500:]}")
    out = json.loads(done.stdout)
    stats = sim_stats(base_url)
    return {"mode": "naive", "exit": 0, "wall_seconds": out["wall_seconds"], "pages": out["pages"],
            "failed": 0, "failed_prompts": out["failed_prompts"], "prompts": out["prompts"],
            "llm_requests": stats["requests"], "tokens": None,
            "server_busy_seconds": round(stats["busy_seconds"], 2), "server_max_in_flight": stats["max_in_flight"],
            "fetch_seconds": None, "parse_seconds": None, "peak_rss_mb": None, "mean_cpu_percent": None}


def _one(mode: str, source: str, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    sim_stats(base_url, reset=True)
    if mode == "naive":
        return _naive(source, base_url, args)
    flags = ["--source", source, "--parallelism-mode", mode, "--llm", "openai", "--llm-base-url", base_url,
             "--max-concurrency", str(args.max_concurrency), "--no-cache", "--max-workers", str(args.threads)]
    run, code = run_main(*flags)
    stats = sim_stats(base_url)
    resources = run.get("resources") or {}
    llm = run["llm"]
    return {"mode": mode, "exit": code, "wall_seconds": run["wall_seconds"], "pages": run["documents"]["total"],
            "failed": run["documents"]["failed"], "prompts": llm["prompts"], "llm_requests": stats["requests"],
            "tokens": llm.get("tokens_in", 0) + llm.get("tokens_out", 0),
            "server_busy_seconds": round(stats["busy_seconds"], 2), "server_max_in_flight": stats["max_in_flight"],
            "fetch_seconds": run["stages"]["fetch"], "parse_seconds": run["stages"]["parse"],
            "peak_rss_mb": resources.get("peak_rss_mb"), "mean_cpu_percent": resources.get("mean_cpu_percent")}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time, with every timing replaced by its median over the repeats."""
    ordered = sorted(runs, key=lambda r: r["wall_seconds"])
    row = dict(ordered[len(ordered) // 2])
    for key in ("wall_seconds", "server_busy_seconds", "peak_rss_mb", "mean_cpu_percent"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = round(statistics.median(values), 2) if values else None
    row["repeats"] = len(runs)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=0, help="generated pages (0: the bundled 38-page sample)")
    p.add_argument("--latency-ms", type=float, default=400)
    p.add_argument("--ms-per-token", type=float, default=2.0)
    p.add_argument("--capacity", type=int, default=0, help="simulator slots (0 = unlimited)")
    p.add_argument("--max-concurrency", type=int, default=20)
    p.add_argument("--threads", type=int, default=8, help="download threads (--max-workers)")
    p.add_argument("--repeat", type=int, default=1, help="runs per mode; the median is reported")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--quick", action="store_true", help="12 generated pages, 100 ms latency: a smoke run")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_modes.json")
    args = p.parse_args()
    if args.quick:
        args.pages, args.latency_ms = args.pages or 12, min(args.latency_ms, 100)
    modes = [m for m in args.modes.split(",") if m]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            simulator("--latency-ms", str(args.latency_ms), "--ms-per-token", str(args.ms_per_token),
                      "--capacity", str(args.capacity)) as base_url:
        site_cm = sample_site() if not args.pages else SiteServer(Path(tmp), max_seconds=3600)
        if args.pages:
            _generated_site(Path(tmp), args.pages)
        with site_cm as site:
            for mode in modes:
                runs = [_one(mode, site.url("llms.txt"), base_url, args) for _ in range(args.repeat)]
                rows.append(_median(runs))
                print(f"  {mode}: {rows[-1]['wall_seconds']:.2f}s", flush=True)
    sync = next((r for r in rows if r["mode"] == "sync"), None)
    cores = os.cpu_count() or 1
    ours = [r for r in rows if r["mode"] != "naive"] or rows
    bound_llm = min(r["server_busy_seconds"] for r in ours) / args.max_concurrency
    bound_parse = (sync["parse_seconds"] if sync else min(r["parse_seconds"] or 0 for r in ours)) / cores
    bound_fetch = (sync["fetch_seconds"] if sync else min(r["fetch_seconds"] or 0 for r in ours)) / args.threads
    lower = max(bound_llm, bound_parse, bound_fetch)
    for r in rows:
        r["speedup_vs_sync"] = round(sync["wall_seconds"] / r["wall_seconds"], 2) if sync else None
        r["pages_per_second"] = round(r["pages"] / r["wall_seconds"], 2)
        r["efficiency"] = round(lower / r["wall_seconds"], 3)
    print(f"\n{rows[0]['pages']} pages · latency {args.latency_ms:g} ms + {args.ms_per_token:g} ms/token · "
          f"cap {args.max_concurrency} · {args.threads} threads · {cores} cores · median of {args.repeat}")
    print(f"lower bound T_lb = max(LLM {bound_llm:.2f} s, parse {bound_parse:.2f} s, download {bound_fetch:.2f} s)"
          f" = {lower:.2f} s\n")
    print_table(rows, [("mode", "mode", ""), ("pages", "pages", "d"), ("failed", "failed", "d"),
                       ("wall s", "wall_seconds", ".2f"), ("vs sync", "speedup_vs_sync", ".2f"),
                       ("pages/s", "pages_per_second", ".2f"), ("prompts", "prompts", "d"),
                       ("requests", "llm_requests", "d"), ("tokens", "tokens", ",d"),
                       ("peak RSS MB", "peak_rss_mb", ".0f"), ("CPU %", "mean_cpu_percent", ".0f"),
                       ("efficiency", "efficiency", ".0%")])
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {"config": {**config, "cores": cores}, "lower_bound_seconds": round(lower, 3),
              "lower_bound_parts": {"llm": round(bound_llm, 3), "parse": round(bound_parse, 3),
                                    "download": round(bound_fetch, 3)}, "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    shown = args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json
    print(f"\nwrote {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
