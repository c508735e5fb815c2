"""Cold run, then the same command again: the warm run should ask the LLM nothing.

    python benchmarks/bench_cache.py [--latency-ms 300] [--modes hybrid,process]

Both runs share one --state-dir (the diskcache memo); the simulator runs in its own process. Prints
wall time (run.json) and the whole command's time, LLM requests at the server, and the speedup.
Writes benchmarks/results/bench_cache.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, finish, print_table, sample_site, sim_stats, simulator


def _timed(flags: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "main.py", "--quiet", *flags], cwd=ROOT, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    out = Path(flags[flags.index("--output-dir") + 1])
    return json.loads((out / "run.json").read_text()), elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency-ms", type=float, default=300)
    p.add_argument("--ms-per-token", type=float, default=2.0)
    p.add_argument("--modes", default="hybrid,process")
    args = p.parse_args()
    rows = []
    with sample_site() as site, simulator("--latency-ms", str(args.latency_ms),
                                          "--ms-per-token", str(args.ms_per_token)) as base_url:
        for mode in args.modes.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                common = ["--source", site.url("llms.txt"), "--parallelism-mode", mode, "--llm", "simulate",
                          "--llm-base-url", base_url, "--state-dir", f"{tmp}/state"]
                sim_stats(base_url, reset=True)
                cold, cold_cmd = _timed([*common, "--output-dir", f"{tmp}/cold"])
                cold_requests = sim_stats(base_url)["requests"]
                sim_stats(base_url, reset=True)
                warm, warm_cmd = _timed([*common, "--output-dir", f"{tmp}/warm"])
                warm_requests = sim_stats(base_url)["requests"]
            rows.append({"mode": mode, "pages": cold["documents"]["total"], "cold_s": cold["wall_seconds"],
                         "warm_s": warm["wall_seconds"], "cold_cmd_s": round(cold_cmd, 2),
                         "warm_cmd_s": round(warm_cmd, 2), "cold_requests": cold_requests,
                         "warm_requests": warm_requests,
                         "speedup": round(cold["wall_seconds"] / max(warm["wall_seconds"], 1e-3), 1),
                         "speedup_cmd": round(cold_cmd / warm_cmd, 1)})
            print(f"  {mode}: cold {cold['wall_seconds']:.2f}s, warm {warm['wall_seconds']:.2f}s", flush=True)
    print(f"\nlatency {args.latency_ms:g} ms + {args.ms_per_token:g} ms/token\n")
    print_table(rows, [("mode", "mode", ""), ("pages", "pages", "d"), ("cold s", "cold_s", ".2f"),
                       ("warm s", "warm_s", ".2f"), ("speedup", "speedup", ".1f"), ("cmd cold s", "cold_cmd_s", ".2f"),
                       ("cmd warm s", "warm_cmd_s", ".2f"), ("cmd speedup", "speedup_cmd", ".1f"),
                       ("requests cold", "cold_requests", "d"), ("requests warm", "warm_requests", "d")])
    finish("bench_cache.json", args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
