"""What the provider's Batch API saves (--batch-api, issue 28): the same pages analysed live and through batches,
counting the work (requests and prompt tokens per page, against the pages' own text) and the cost at each price.

    python benchmarks/bench_batch.py [--source DIR|URL] [--limit 60] [--llm-base-url URL] [--profile hosted]

The source defaults to Debian's python3.11 `library/` docs when installed, else the bundled sample. Without
--llm-base-url a simulator is started in its own process (its Batch API answers after short delays); with
one, any server that serves /v1/files and /v1/batches is measured (its key from OPENAI_API_KEY). Each run has
its own state dir, so nothing is answered from a cache. Writes benchmarks/results/bench_batch.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _harness import SAMPLE, finish, print_table, run_main, sim_stats, simulator

PYTHON_LIBRARY = Path("/usr/share/doc/python3.11/html/library")


def _row(label: str, run: dict[str, Any], exit_code: int, stats: dict[str, Any] | None) -> dict[str, Any]:
    llm, work = run["llm"], run["work"]
    batch = llm.get("batch_api") or {}
    cost = batch.get("run_cost_usd") if batch else llm.get("cost_usd")
    urls = [n for url, n in (stats or {}).get("urls", {}).items()]
    return {"run": label, "exit": exit_code, "pages": run["documents"]["completed"],
            "requests": work["requests"], "requests_per_page": work["requests_per_page"],
            "prompt_tokens_per_page": work["prompt_tokens_per_page"], "text_tokens_per_page": work["text_tokens_per_page"],
            "batch_share": batch.get("share_of_requests"), "rounds": batch.get("rounds"),
            "cost_usd": cost, "cost_if_live_usd": batch.get("run_cost_if_live_usd", llm.get("cost_usd")),
            "most_sends_of_a_page": max(urls) if urls else None, "wall_seconds": run["wall_seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = PYTHON_LIBRARY if PYTHON_LIBRARY.is_dir() else SAMPLE / "llms.txt"
    p.add_argument("--source", default=str(default), help="pages to analyse (default: %(default)s)")
    p.add_argument("--limit", type=int, default=60, help="pages (default: %(default)s)")
    p.add_argument("--llm-base-url", default=None, help="a server with the Batch API (default: a simulator)")
    p.add_argument("--model", default="gpt-4o-mini", help="the model, for its price (default: %(default)s)")
    p.add_argument("--profile", default="hosted", help="the simulator's profile (default: %(default)s)")
    args = p.parse_args()

    def measure(base_url: str, simulated: bool) -> list[dict[str, Any]]:
        rows = []
        for label, extra in (("live", ()), ("--batch-api", ("--batch-api",))):
            if simulated:
                sim_stats(base_url, reset=True)
            run, code = run_main("--source", args.source, "--limit", str(args.limit), "--llm", "openai",
                                 "--llm-base-url", base_url, "--model", args.model, *extra)
            rows.append(_row(label, run, code, sim_stats(base_url) if simulated else None))
        return rows

    if args.llm_base_url:
        rows = measure(args.llm_base_url, simulated=False)
    else:
        with simulator("--profile", args.profile, "--model", args.model) as base_url:
            rows = measure(base_url, simulated=True)
    print(f"{args.limit} pages of {args.source}, {args.model}\n")
    print_table(rows, [("run", "run", ""), ("pages", "pages", "d"), ("requests", "requests", "d"),
                       ("req/page", "requests_per_page", ".2f"), ("prompt tok/page", "prompt_tokens_per_page", "d"),
                       ("text tok/page", "text_tokens_per_page", "d"), ("batch share", "batch_share", ".0%"),
                       ("rounds", "rounds", "d"), ("cost $", "cost_usd", ".4f"),
                       ("same work live $", "cost_if_live_usd", ".4f"), ("most sends/page", "most_sends_of_a_page", "d"),
                       ("wall s", "wall_seconds", ".1f")])
    finish("bench_batch.json", args, rows)


if __name__ == "__main__":
    main()
