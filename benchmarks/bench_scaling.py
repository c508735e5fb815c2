"""How the modes scale: corpus size 25 → 400 pages, and the concurrency cap 1 → 50.

    python benchmarks/bench_scaling.py                 # full sweep, about 15 minutes on 2 cores
    python benchmarks/bench_scaling.py --quick         # small sizes, low latency: a couple of minutes

Each point is one run of the mode against the LLM simulator (own process, per-output-token delay) over
generated pages served on loopback, with its own lower bound T_lb = max(server busy / cap, parse CPU /
cores, download / threads) as in bench_modes.py. `sync` is left out of the size sweep (it would take an
hour at 400 pages; bench_modes.py times it); the naive baseline is in both sweeps. Writes --json (default
benchmarks/results/bench_scaling.json) as {"config", "by_pages": [...], "by_concurrency": [...]} and a
PNG of both curves next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from _harness import ROOT, print_table, simulator
from _plots import scaling_curves
from _runs import (MODES, RunConfig, add_ratios, generated_site, lower_bound, measure_work, run_mode, server_line,
                   sim_flags, sim_slots)

from document_it.testing.sim_profiles import PROFILES
from document_it.testing.site import SiteServer

COLUMNS = [("mode", "mode", ""), ("pages", "pages", "d"), ("cap", "max_concurrency", "d"),
           ("wall s", "wall_seconds", ".2f"), ("pages/s", "pages_per_second", ".2f"),
           ("requests", "llm_requests", "d"), ("T_lb s", "lower_bound_seconds", ".2f"),
           ("efficiency", "efficiency", ".0%"), ("utilisation", "utilisation", ".0%")]


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got {text!r}")
    return values


def _point(modes: list[str], pages: int, cap: int, base_url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every mode once over `pages` generated pages with concurrency `cap`; rows with their own bound."""
    with tempfile.TemporaryDirectory() as tmp:
        generated_site(Path(tmp), pages)
        with SiteServer(Path(tmp), max_seconds=3600) as site:
            cfg = RunConfig(site.url("llms.txt"), base_url, cap, args.threads, args.tasks,
                            sim_slots(args.profile, args.capacity))
            work = measure_work(cfg.source)
            rows = [run_mode(mode, cfg) for mode in modes]
    bound = lower_bound(rows, work, cfg)
    add_ratios(rows, bound["seconds"], cfg)
    for row in rows:
        row.update(max_concurrency=cap, lower_bound_seconds=bound["seconds"])
        print(f"  {row['mode']:7} {pages:4d} pages  cap {cap:3d}  {row['wall_seconds']:7.2f} s  "
              f"efficiency {row['efficiency']:.0%}  utilisation {row['utilisation']:.0%}", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=_ints, default=[25, 50, 100, 200, 400], help="corpus sizes (comma-separated)")
    p.add_argument("--caps", type=_ints, default=[1, 5, 10, 20, 50], help="--max-concurrency values")
    p.add_argument("--cap-pages", type=int, default=100, help="corpus size for the concurrency sweep")
    p.add_argument("--max-concurrency", type=int, default=20, help="the cap for the size sweep")
    p.add_argument("--modes", default="async,hybrid,naive", help="modes of the size sweep")
    p.add_argument("--cap-modes", default="hybrid,naive", help="modes of the concurrency sweep")
    p.add_argument("--latency-ms", type=float, default=400, help="simulated time to first token")
    p.add_argument("--ms-per-token", type=float, default=2.0, help="simulated decode time per output token")
    p.add_argument("--capacity", type=int, default=0, help="simulator slots (0 = unlimited)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="simulate a real server's shape (document_it/testing/sim_profiles.py) instead of the "
                        "latency, decode time and slots above")
    p.add_argument("--tasks", default="summary,key_concepts,code_patterns", help="--tasks for every run")
    p.add_argument("--threads", type=int, default=8, help="download threads (--max-workers)")
    p.add_argument("--quick", action="store_true", help="10/20/40 pages, caps 1/5/20 on 20 pages, 100 ms latency")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_scaling.json",
                   help="where the JSON goes; the PNG is written next to it")
    args = p.parse_args()
    if args.quick:
        args.pages, args.caps, args.cap_pages = [10, 20, 40], [1, 5, 20], 20
        args.latency_ms = min(args.latency_ms, 100)
    modes = [m for m in args.modes.split(",") if m]
    cap_modes = [m for m in args.cap_modes.split(",") if m]
    unknown = sorted(set(modes + cap_modes) - set(MODES))
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    by_pages: list[dict[str, Any]] = []
    by_cap: list[dict[str, Any]] = []
    with simulator(*sim_flags(args.profile, args.latency_ms, args.ms_per_token, args.capacity)) as base_url:
        print(f"size sweep (cap {args.max_concurrency}):")
        for pages in args.pages:
            by_pages += _point(modes, pages, args.max_concurrency, base_url, args)
        print(f"concurrency sweep ({args.cap_pages} pages):")
        for cap in args.caps:
            by_cap += _point(cap_modes, args.cap_pages, cap, base_url, args)
    cores = os.cpu_count() or 1
    header = (f"{args.tasks} · {server_line(args.profile, args.latency_ms, args.ms_per_token, args.capacity)} · "
              f"{args.threads} threads · {cores} cores")
    print(f"\n{header}\n\nby corpus size (cap {args.max_concurrency}):")
    print_table(by_pages, COLUMNS)
    print(f"\nby concurrency cap ({args.cap_pages} pages):")
    print_table(by_cap, COLUMNS)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"config": {**config, "cores": cores}, "by_pages": by_pages,
                                     "by_concurrency": by_cap}, indent=2) + "\n")
    chart = scaling_curves(by_pages, by_cap, header, args.json.with_suffix(".png"))
    for path in (args.json, chart):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
