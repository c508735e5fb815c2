"""Time every parallelism mode on the same pages against the same LLM simulator.

    python benchmarks/bench_modes.py [--pages 200] [--tasks summary,key_concepts,code_patterns] [--repeat 3]
    python benchmarks/bench_modes.py --quick        # a few pages, low latency: well under 3 minutes
    python benchmarks/bench_modes.py --pages 60 --profile hosted   # a real server's shape (sim_profiles.py)

Pages are served over loopback HTTP (the bundled sample, or --pages N generated ones) and the simulator
runs in its own process with a per-output-token delay. For each mode (median of --repeat runs) it prints
wall time, speedup over sync, pages/s, prompts and requests, tokens, the work per page (requests and
prompt tokens per page, and the pages' own text tokens: run.json's `work` block; for the naive row the
simulator's /stats over the pages it parsed), the peak RSS summed over every process of the run and its
mean CPU, its own utilisation (its server busy time / (requests it can have served at once: 1 for sync,
else the cap or the server's slots if fewer) × its wall time)), and the efficiency T_lb / T against the
lower bound shared by every row

    T_lb = max(server busy seconds / concurrency, parse CPU / cores, download time / threads)

(the server's busy time is requests × their real service time, per-token delay included — the least any
run needed; parse CPU and download time are measured once, page after page, before the runs). The
`naive` row is the obvious approach (benchmarks/_naive.py: asyncio.gather + a semaphore over the same
pages and prompts, parsing inline, no batching, cache or topic syntheses), so the table shows what the
pipeline's design buys. Writes --json (default
benchmarks/results/bench_modes.json) as {"config", "work", "lower_bound_seconds", "results": [...]} and a
PNG chart of wall time and speedup per mode next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _harness import ROOT, print_table, sample_site, simulator
from _plots import speedup_bars
from _runs import (MODES, RunConfig, add_ratios, generated_site, lower_bound, measure_work, median_run, run_mode,
                   server_line, sim_flags, sim_slots)

from document_it.testing.sim_profiles import PROFILES
from document_it.testing.site import SiteServer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=0, help="generated pages (0: the bundled 38-page sample)")
    p.add_argument("--latency-ms", type=float, default=400, help="simulated time to first token")
    p.add_argument("--ms-per-token", type=float, default=2.0, help="simulated decode time per output token")
    p.add_argument("--capacity", type=int, default=0, help="simulator slots (0 = unlimited)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="simulate a real server's shape (document_it/testing/sim_profiles.py) instead of the "
                        "latency, per-token and capacity flags")
    p.add_argument("--max-concurrency", type=int, default=20)
    p.add_argument("--threads", type=int, default=8, help="download threads (--max-workers)")
    p.add_argument("--tasks", default="", help="--tasks for every run, e.g. summary,key_concepts,code_patterns "
                                               "(default: all five per page)")
    p.add_argument("--repeat", type=int, default=1, help="runs per mode (sync: one); the median is reported")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--quick", action="store_true", help="12 generated pages, 100 ms latency: a smoke run")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_modes.json",
                   help="where the JSON goes; the PNG chart is written next to it")
    args = p.parse_args()
    if args.quick:
        args.pages, args.latency_ms = args.pages or 12, min(args.latency_ms, 100)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, \
            simulator(*sim_flags(args.profile, args.latency_ms, args.ms_per_token, args.capacity)) as base_url:
        site_cm = sample_site() if not args.pages else SiteServer(Path(tmp), max_seconds=3600)
        if args.pages:
            generated_site(Path(tmp), args.pages)
        with site_cm as site:
            slots = sim_slots(args.profile, args.capacity)
            cfg = RunConfig(site.url("llms.txt"), base_url, args.max_concurrency, args.threads, args.tasks, slots)
            work = measure_work(cfg.source)
            for mode in modes:
                repeats = 1 if mode == "sync" else args.repeat  # serial LLM time: it hardly varies, and is long
                runs = [run_mode(mode, cfg) for _ in range(repeats)]
                rows.append(median_run(runs))
                print(f"  {mode}: {rows[-1]['wall_seconds']:.2f}s", flush=True)
    bound = lower_bound(rows, work, cfg)
    add_ratios(rows, bound["seconds"], cfg)
    cores = os.cpu_count() or 1
    server = server_line(args.profile, args.latency_ms, args.ms_per_token, args.capacity)
    header = (f"{work['pages']} pages · {args.tasks or 'all five tasks'} · {server} · cap {args.max_concurrency} · "
              f"{args.threads} threads · {cores} cores · median of {args.repeat} (sync: 1)")
    print(f"\n{header}")
    print(f"lower bound T_lb = max(LLM {bound['llm']:.2f} s, parse {bound['parse']:.2f} s, "
          f"download {bound['download']:.2f} s) = {bound['seconds']:.2f} s\n")
    print_table(rows, [("mode", "mode", ""), ("pages", "pages", "d"), ("failed", "failed", "d"),
                       ("wall s", "wall_seconds", ".2f"), ("vs sync", "speedup_vs_sync", ".2f"),
                       ("pages/s", "pages_per_second", ".2f"), ("prompts", "prompts", "d"),
                       ("requests", "llm_requests", "d"), ("busy s", "server_busy_seconds", ".1f"),
                       ("tokens", "tokens", ",d"), ("req/page", "requests_per_page", ".2f"),
                       ("prompt tok/page", "prompt_tokens_per_page", ",.0f"),
                       ("text tok/page", "text_tokens_per_page", ",.0f"), ("peak RSS MB", "peak_rss_mb", ".0f"),
                       ("CPU %", "mean_cpu_percent", ".0f"), ("utilisation", "utilisation", ".0%"),
                       ("efficiency", "efficiency", ".0%")])
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {"config": {**config, "cores": cores}, "work": work, "lower_bound_seconds": bound["seconds"],
              "lower_bound_parts": {k: v for k, v in bound.items() if k != "seconds"}, "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    chart = speedup_bars(rows, bound["seconds"], header, args.json.with_suffix(".png"))
    for path in (args.json, chart):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
