"""Memory stays flat while pages stream through hybrid mode.

    python benchmarks/bench_memory.py [--pages 1000,5000] [--mode hybrid]

Writes N generated Markdown pages (distinct text, four folders) into a temp folder, runs
`python main.py --source <folder>` on them with the offline analyser, and reads the peak RSS summed over
the main process and every worker (psutil, sampled twice a second: run.json's `resources`). Goal: peak
under 500 MB, and the largest run at most 1.2 × the smallest. Writes benchmarks/results/bench_memory.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _harness import finish, print_table, run_main

_PAGE = """# Topic {n} of the manual

Topic {n} covers scheduling for the {noun} pool. You must pin the version in production, and you should
configure retries before starting workers. Use the CLI to inspect jobs of kind {n}.

## Options

Set `retries_{n}` to control how often a failed {noun} job is tried again. The default backs off
exponentially, up to {cap} seconds between attempts.

```bash
ferry inspect --job job-{n} --pool {noun}
```

Read [the next topic](page-{next:05d}.md) next.
"""
_NOUNS = ("message", "task", "event", "record", "batch", "stream")
GOAL_MB, GOAL_GROWTH = 500.0, 1.2


def write_pages(root: Path, count: int) -> None:
    for n in range(count):
        folder = root / f"part-{n % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        text = _PAGE.format(n=n, noun=_NOUNS[n % len(_NOUNS)], cap=30 + n % 90, next=(n + 1) % count)
        (folder / f"page-{n:05d}.md").write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", default="1000,5000", help="comma-separated corpus sizes")
    parser.add_argument("--mode", default="hybrid", choices=["sync", "async", "process", "hybrid"])
    args = parser.parse_args()
    sizes = [int(n) for n in args.pages.split(",")]
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            write_pages(Path(tmp) / "pages", size)
            started = time.perf_counter()
            run, code = run_main("--source", f"{tmp}/pages", "--parallelism-mode", args.mode, "--no-cache",
                                 "--llm", "extractive", timeout=3600)
            seconds = time.perf_counter() - started
        resources = run["resources"]
        rows.append({"pages": size, "completed": run["documents"]["completed"], "exit": code,
                     "seconds": round(seconds, 1), "pages_s": round(size / seconds, 1),
                     "peak_rss_mb": resources["peak_rss_mb"], "processes": resources["peak_processes"],
                     "mean_cpu": resources["mean_cpu_percent"]})
        print(f"  {size} pages: {seconds:.1f} s, peak {resources['peak_rss_mb']:.0f} MB", flush=True)
    print_table(rows, [("pages", "pages", "d"), ("completed", "completed", "d"), ("seconds", "seconds", ".1f"),
                       ("pages/s", "pages_s", ".1f"), ("peak RSS MB (all processes)", "peak_rss_mb", ".0f"),
                       ("processes", "processes", "d"), ("mean CPU %", "mean_cpu", ".0f")])
    peak = max(row["peak_rss_mb"] for row in rows)
    growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    met = peak < GOAL_MB and growth <= GOAL_GROWTH and all(r["completed"] == r["pages"] for r in rows)
    print(f"\ngoal: peak < {GOAL_MB:.0f} MB and {sizes[-1]} pages ≤ {GOAL_GROWTH} × {sizes[0]} pages: "
          f"{'met' if met else 'NOT met'} (peak {peak:.0f} MB, growth {growth:.2f}×)")
    finish("bench_memory.json", argparse.Namespace(**vars(args), goal_mb=GOAL_MB, goal_growth=GOAL_GROWTH,
                                              peak_mb=peak, growth=round(growth, 3), met=met), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
