"""Time every parallelism mode on the bundled sample against the LLM simulator.

    python benchmarks/bench_modes.py [--latency-ms 400] [--ms-per-token 2] [--limit N] [--modes sync,hybrid]

Pages are served over loopback HTTP and the simulator runs in its own process. For each mode it
prints wall time, speedup over sync, LLM requests, most requests in flight at the server, and the
lower bound the server's own busy time allows (busy seconds / --max-concurrency). Writes
benchmarks/results/bench_modes.json.
"""

from __future__ import annotations

import argparse

from _harness import finish, print_table, run_main, sample_site, sim_stats, simulator

MODES = ("sync", "async", "process", "hybrid")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency-ms", type=float, default=400)
    p.add_argument("--ms-per-token", type=float, default=2.0)
    p.add_argument("--capacity", type=int, default=0, help="simulator slots (0 = unlimited)")
    p.add_argument("--max-concurrency", type=int, default=20)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--modes", default=",".join(MODES))
    args = p.parse_args()
    rows = []
    with sample_site() as site, simulator("--latency-ms", str(args.latency_ms), "--ms-per-token",
                                          str(args.ms_per_token), "--capacity", str(args.capacity)) as base_url:
        for mode in args.modes.split(","):
            sim_stats(base_url, reset=True)
            flags = ["--source", site.url("llms.txt"), "--parallelism-mode", mode, "--llm", "simulate",
                     "--llm-base-url", base_url, "--max-concurrency", str(args.max_concurrency)]
            if args.limit:
                flags += ["--limit", str(args.limit)]
            run, code = run_main(*flags)
            stats = sim_stats(base_url)
            bound = stats["busy_seconds"] / args.max_concurrency
            rows.append({"mode": mode, "exit": code, "wall_s": run["wall_seconds"],
                         "pages": run["documents"]["total"], "failed": run["documents"]["failed"],
                         "prompts": run["llm"]["prompts"], "requests": stats["requests"],
                         "server_max_in_flight": stats["max_in_flight"],
                         "server_busy_s": round(stats["busy_seconds"], 2), "bound_s": round(bound, 2)})
            print(f"  {mode}: {run['wall_seconds']:.2f}s", flush=True)
    sync = next((r["wall_s"] for r in rows if r["mode"] == "sync"), None)
    print(f"\nlatency {args.latency_ms:g} ms + {args.ms_per_token:g} ms/token, cap {args.max_concurrency}\n")
    for r in rows:
        r["speedup_vs_sync"] = round(sync / r["wall_s"], 2) if sync else None
        r["bound_efficiency"] = round(r["bound_s"] / r["wall_s"], 2) if r["wall_s"] else None
    print_table(rows, [("mode", "mode", ""), ("pages", "pages", "d"), ("failed", "failed", "d"),
                       ("wall s", "wall_s", ".2f"), ("vs sync", "speedup_vs_sync", ".2f"),
                       ("prompts", "prompts", "d"), ("requests", "requests", "d"),
                       ("in flight", "server_max_in_flight", "d"),
                       ("busy s", "server_busy_s", ".2f"), ("bound s", "bound_s", ".2f"),
                       ("of bound", "bound_efficiency", ".0%")])
    finish("bench_modes.json", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
