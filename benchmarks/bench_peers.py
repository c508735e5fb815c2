"""The project against its peers, on the same real pages and the same simulated server, in one run.

    python benchmarks/bench_peers.py [--pages 60] [--profile hosted] [--max-concurrency 20] [--repeat 1]
                                     [--docs /usr/share/doc/python3.11/html] [--crawl4ai-venv DIR]

Two jobs over --pages real documentation pages (Debian's Python docs, `library/` pages of 8-40 kB by
default, or of --sizes, copied to a temp folder and served on 127.0.0.1 with an llms.txt listing them):
- **one extraction a page** (key concepts, one schema): Crawl4AI's HTTP-only crawler with its
  LLMExtractionStrategy (benchmarks/_crawl4ai_peer.py, run in its own virtualenv, made with pip from the
  registry on first use: crawl4ai pinned below), the naive gather loop, and `main.py --tasks key_concepts`;
- **four prompts a page** (summary, key concepts, implementation details, code patterns): the naive
  `asyncio.gather` loop (benchmarks/_naive.py), LangChain's `abatch(max_concurrency=C)`
  (benchmarks/_abatch.py), and `main.py --tasks ...` (one reading per page, hybrid mode).

The project runs each job twice: with `--no-synthesis`, the peers' own job (per-page answers only), which
the goals compare; and as it runs by default, with a synthesis of the topic once its last page is done.

Every row starts a fresh process against one simulator (--profile, its own process). Per row: the tool's own
wall time (from its start to its end, imports excluded), the whole command's time, the requests and prompt
tokens the server received, and utilisation (server busy / (cap × wall)). Goals (issue 25): the project's
extraction in at most half of Crawl4AI's wall time; its four prompts a page in at most 0.8 × the faster of
gather and abatch. Writes benchmarks/results/bench_peers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import ROOT, finish, print_table, run_main, sim_stats, simulator
from _runs import median_run

from document_it.analysis.schemas import KeyConcepts
from document_it.testing.site import SiteServer
from document_it.testing.sim_profiles import PROFILES, describe

CRAWL4AI = "crawl4ai==0.9.5"
EXTRACT = "key_concepts"
FOUR = "summary,key_concepts,implementation_details,code_patterns"
CRAWL4AI_ROW = "Crawl4AI (HTTP crawler + LLMExtractionStrategy)"
GATHER, ABATCH = "gather (naive)", "LangChain abatch"
INSTRUCTION = ("Extract the key concepts this documentation page explains: for each, its name as the page "
               "names it, one sentence explaining it, and its importance from 1 to 10.")


def _kb_range(text: str) -> tuple[int, int]:
    """--sizes: "8-40" (kB, both ends included) or "any"."""
    if text == "any":
        return 0, 1 << 40
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in kB (like 8-40) or 'any', got {text!r}") from None
    return low * 1000, high * 1000


def _pick_pages(docs: Path, count: int, root: Path, sizes: tuple[int, int]) -> list[str]:
    """The first `count` pages of docs/library within `sizes` bytes (by name), copied under `root`; their
    paths."""
    low, high = sizes
    chosen = [p for p in sorted((docs / "library").glob("*.html")) if low <= p.stat().st_size <= high][:count]
    if len(chosen) < count:
        raise SystemExit(f"only {len(chosen)} pages of that size in {docs / 'library'}; ask for fewer (--pages)")
    (root / "library").mkdir(parents=True)
    for page in chosen:
        shutil.copyfile(page, root / "library" / page.name)
    return [f"library/{page.name}" for page in chosen]


def _crawl4ai_python(venv: Path) -> Path:
    """Crawl4AI's own virtualenv (made on first use: it must not share the project's pins)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"  installing {CRAWL4AI} into {venv} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", CRAWL4AI], check=True)
    return python


def _timed(cmd: list[str], timeout: float = 1800, env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """Run a peer script (it prints one JSON line); its output and the whole command's seconds."""
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{Path(cmd[1]).name} failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), elapsed


def _row(job: str, tool: str, base_url: str, wall: float, command: float, pages: int, failed: int,
         cap: int) -> dict[str, Any]:
    stats = sim_stats(base_url)
    busy = stats["busy_seconds"]
    return {"job": job, "tool": tool, "wall_seconds": round(wall, 2), "command_seconds": round(command, 2),
            "pages": pages, "failed": failed, "requests": stats["requests"],
            "prompt_tokens": stats["prompt_tokens"], "requests_per_page": round(stats["requests"] / pages, 2),
            "prompt_tokens_per_page": round(stats["prompt_tokens"] / pages),
            "server_busy_seconds": round(busy, 2), "utilisation": round(busy / (cap * wall), 3)}


OURS = "document-it (hybrid)"
PAGES_ONLY = "document-it (hybrid, --no-synthesis)"


def _project(job: str, tasks: str, source: str, base_url: str, cap: int, pages_only: bool) -> dict[str, Any]:
    """main.py on the job: as it runs by default (a synthesis of the topic after its pages), or, with
    --no-synthesis, the peers' own job of per-page answers only."""
    sim_stats(base_url, reset=True)
    started = time.perf_counter()
    run, _ = run_main("--source", source, "--parallelism-mode", "hybrid", "--llm", "openai", "--llm-base-url",
                      base_url, "--max-concurrency", str(cap), "--no-cache", "--tasks", tasks,
                      *(["--no-synthesis"] if pages_only else []))
    command = time.perf_counter() - started
    return _row(job, PAGES_ONLY if pages_only else OURS, base_url, run["wall_seconds"], command,
                run["documents"]["total"], run["documents"]["failed"], cap)


def _script(job: str, tool: str, script: str, tasks: str, source: str, base_url: str, cap: int) -> dict[str, Any]:
    sim_stats(base_url, reset=True)
    out, command = _timed([sys.executable, str(ROOT / "benchmarks" / script), source, base_url,
                           "--max-concurrency", str(cap), "--tasks", tasks])
    return _row(job, tool, base_url, out["wall_seconds"], command, out["pages"], out["failed_prompts"], cap)


def _crawl4ai(python: Path, urls: list[str], base_url: str, cap: int, tmp: Path) -> dict[str, Any]:
    (tmp / "urls.txt").write_text("\n".join(urls) + "\n")
    (tmp / "schema.json").write_text(json.dumps(KeyConcepts.model_json_schema()))
    sim_stats(base_url, reset=True)
    out, command = _timed([str(python), str(ROOT / "benchmarks" / "_crawl4ai_peer.py"), "--urls-file",
                           str(tmp / "urls.txt"), "--base-url", base_url, "--model", "gpt-4o-mini",
                           "--max-concurrency", str(cap), "--schema-file", str(tmp / "schema.json"),
                           "--instruction", INSTRUCTION],
                          env={"CRAWL4_AI_BASE_DIRECTORY": str(tmp / "crawl4ai-home")})  # its logs stay in tmp
    return _row("one extraction a page", CRAWL4AI_ROW, base_url,
                out["wall_seconds"], command, out["pages"], out["failed"], cap)


def _verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's two goals, from the table: the project on the peers' job (per-page answers, no synthesis),
    and as it runs by default."""
    def wall(job: str, tool: str) -> float | None:
        return next((r["wall_seconds"] for r in rows if r["job"] == job and r["tool"] == tool), None)
    lines = []
    four = "four prompts a page"
    theirs = {"one extraction a page": ("Crawl4AI's", [wall("one extraction a page", CRAWL4AI_ROW)], 0.5),
              four: ("the faster peer's", [wall(four, GATHER), wall(four, ABATCH)], 0.8)}
    for job, (whose, walls, goal) in theirs.items():
        peer = min((w for w in walls if w), default=None)
        for tool in (PAGES_ONLY, OURS):
            ours = wall(job, tool)
            if ours and peer:
                lines.append(f"{job}: {tool} {ours:.2f} s against {whose} {peer:.2f} s = {ours / peer:.2f} × "
                             f"(goal ≤ {goal} ×)")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=60)
    p.add_argument("--sizes", type=_kb_range, default="8-40",
                   help="which library/ pages: MIN-MAX in kB (default 8-40), or 'any' for the first pages by name")
    p.add_argument("--profile", choices=sorted(PROFILES), default="hosted")
    p.add_argument("--max-concurrency", type=int, default=20)
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median is kept")
    p.add_argument("--docs", type=Path, default=Path("/usr/share/doc/python3.11/html"),
                   help="an HTML documentation folder with a library/ subfolder (Debian's python3.11-doc)")
    p.add_argument("--crawl4ai-venv", type=Path, default=Path(tempfile.gettempdir()) / "document-it-crawl4ai",
                   help="Crawl4AI's own virtualenv (made with pip on first use)")
    p.add_argument("--jobs", default="extract,four", help="extract, four, or both (comma-separated)")
    p.add_argument("--no-crawl4ai", action="store_true", help="leave out the Crawl4AI row")
    args = p.parse_args()
    if not (args.docs / "library").is_dir():
        p.error(f"{args.docs} has no library/ folder: install python3.11-doc or pass --docs")
    jobs = set(args.jobs.split(","))
    cap = args.max_concurrency
    python = None if args.no_crawl4ai or "extract" not in jobs else _crawl4ai_python(args.crawl4ai_venv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name, simulator("--profile", args.profile) as base_url:
        tmp = Path(tmp_name)
        paths = _pick_pages(args.docs, args.pages, tmp / "site", args.sizes)
        lines = ["# Python library reference", "> A sample of the Python 3.11 library reference.", "",
                 "## Library", ""] + [f"- [{Path(path).stem}]({path})" for path in paths]
        (tmp / "site" / "llms.txt").write_text("\n".join(lines) + "\n")
        with SiteServer(tmp / "site", max_seconds=3600) as site:
            source = site.url("llms.txt")
            plan = []
            if "extract" in jobs:
                job = "one extraction a page"
                if python is not None:
                    plan.append(lambda: _crawl4ai(python, [site.url(path) for path in paths], base_url, cap, tmp))
                plan.append(lambda: _script(job, GATHER, "_naive.py", EXTRACT, source, base_url, cap))
                plan.append(lambda: _project(job, EXTRACT, source, base_url, cap, pages_only=True))
                plan.append(lambda: _project(job, EXTRACT, source, base_url, cap, pages_only=False))
            if "four" in jobs:
                job4 = "four prompts a page"
                plan.append(lambda: _script(job4, GATHER, "_naive.py", FOUR, source, base_url, cap))
                plan.append(lambda: _script(job4, ABATCH, "_abatch.py", FOUR, source, base_url, cap))
                plan.append(lambda: _project(job4, FOUR, source, base_url, cap, pages_only=True))
                plan.append(lambda: _project(job4, FOUR, source, base_url, cap, pages_only=False))
            for make in plan:
                row = median_run([make() for _ in range(args.repeat)], keys=("wall_seconds", "command_seconds"))
                rows.append(row)
                print(f"  {row['job']}: {row['tool']}: {row['wall_seconds']:.2f} s, {row['requests']} requests",
                      flush=True)
    print(f"\n{args.pages} pages of the Python 3.11 library reference · {describe(args.profile)} · cap {cap} · "
          f"median of {args.repeat}\n")
    print_table(rows, [("job", "job", ""), ("tool", "tool", ""), ("wall s", "wall_seconds", ".2f"),
                       ("command s", "command_seconds", ".2f"), ("failed", "failed", "d"),
                       ("requests", "requests", "d"), ("req/page", "requests_per_page", ".2f"),
                       ("prompt tok/page", "prompt_tokens_per_page", "d"), ("server busy s", "server_busy_seconds", ".1f"),
                       ("utilisation", "utilisation", ".0%")])
    print()
    for line in _verdicts(rows):
        print(line)
    finish("bench_peers.json", argparse.Namespace(**{**vars(args), "docs": str(args.docs),
                                                     "crawl4ai_venv": str(args.crawl4ai_venv)}), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
