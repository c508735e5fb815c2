"""How close the gateway gets to a server's rate limit, told the limit or not.

    python benchmarks/bench_ratelimit.py [--rpm 240] [--latency-ms 400] [--limit N]

The simulator (own process) enforces --rpm as a continuously refilled bucket and answers 429 with
Retry-After. Scenarios: the client is told the limit (--rpm); the client is not told but the server
announces it in x-ratelimit-* headers; the client is not told and the server announces nothing (only
Retry-After on 429, so the AIMD window and the shared pause must find it). Throughput counts the
server's successful replies per second over the run's wall time. Writes benchmarks/results/bench_ratelimit.json.
"""

from __future__ import annotations

import argparse

from _harness import finish, print_table, run_main, sample_site, sim_stats, simulator


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rpm", type=float, default=240)
    p.add_argument("--latency-ms", type=float, default=400)
    p.add_argument("--ms-per-token", type=float, default=2.0)
    p.add_argument("--limit", type=int, default=None, help="pages from the sample (default: all)")
    p.add_argument("--mode", default="hybrid")
    args = p.parse_args()
    scenarios = [("told --rpm", True, []), ("not told, headers", False, []),
                 ("not told, no headers", False, ["--hide-limits"])]
    rows = []
    with sample_site() as site:
        for name, told, sim_flags in scenarios:
            with simulator("--latency-ms", str(args.latency_ms), "--ms-per-token", str(args.ms_per_token),
                           "--rpm", str(args.rpm), *sim_flags) as base_url:
                flags = ["--source", site.url("llms.txt"), "--parallelism-mode", args.mode, "--llm", "simulate",
                         "--llm-base-url", base_url]
                flags += ["--rpm", str(args.rpm)] if told else []
                flags += ["--limit", str(args.limit)] if args.limit else []
                run, code = run_main(*flags)
                stats = sim_stats(base_url)
            achieved = stats["ok"] / run["wall_seconds"] * 60
            rows.append({"scenario": name, "exit": code, "pages": run["documents"]["total"],
                         "failed_pages": run["documents"]["failed"], "wall_s": run["wall_seconds"],
                         "ok": stats["ok"], "attempts": stats["attempts"], "429s": stats["rate_limited"],
                         "share_429": round(stats["rate_limited"] / max(1, stats["attempts"]), 4),
                         "achieved_rpm": round(achieved, 1), "of_limit": round(achieved / args.rpm, 3),
                         "window_cuts": run["llm"]["window"]["cuts"], "learned_rpm": run["llm"]["learned_rpm"]})
            print(f"  {name}: {achieved:.0f} rpm", flush=True)
    print(f"\nserver limit {args.rpm:g} RPM, latency {args.latency_ms:g} ms + {args.ms_per_token:g} ms/token\n")
    print_table(rows, [("scenario", "scenario", ""), ("pages", "pages", "d"), ("failed", "failed_pages", "d"),
                       ("wall s", "wall_s", ".1f"), ("ok", "ok", "d"), ("attempts", "attempts", "d"),
                       ("429s", "429s", "d"), ("429 %", "share_429", ".1%"), ("rpm", "achieved_rpm", ".0f"),
                       ("of limit", "of_limit", ".0%")])
    finish("bench_ratelimit.json", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
