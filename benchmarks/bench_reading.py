"""Count the LLM work a page costs: requests and prompt tokens per page, against the page's own text.

    python benchmarks/bench_reading.py [--docs DIR] [--pages 60] [--strategies] [--checkout DIR]
    python benchmarks/bench_reading.py --quick      # 8 sample pages, low latency: a smoke run
    python benchmarks/bench_reading.py --only "default · fit" --only rpm   # some rows only

The pages (default: the Python 3.11 docs in /usr/share/doc/python3.11/html, else the bundled sample) are
served over loopback HTTP; the pipeline samples them with its own --limit N. The LLM simulator runs in
its own process from this repo (latency + decode per output token + prefill per prompt token), with
--context-tokens set to the row's window, which it announces on /v1/models and the pipeline reads.
main.py comes from --checkout (default: this repo), so the same benchmark measures an older worktree.

Rows: 1 task (key_concepts), 4 tasks and all five, each at a window of 8192 and 32768, on the sampled
pages ("mixed") and on those of them that fit the smaller window ("fit": an llms.txt of just those
pages, each under the topic the sample gave it); then the RPM pair at the largest window (the servers that
limit requests a minute are hosted APIs, with large windows): --rpm-pages pages, --tasks
summary,key_concepts, simulator and pipeline at --rpm, batching at default vs --batch-size 1. --strategies
adds --task-strategy combined|separate rows when main.py has that flag, and the pair on a run of 3 pages
(every request of it has a slot at once: where separate requests can pay). Every timed run is taken under
`flock /tmp/bench.lock`.

A page's own text tokens: sum(chunk.tokens) of document_it.parse over the page (the estimate the pipeline
uses), or run.json's work.text_tokens when the run reports it. A page fits a window W when its text
tokens + OVERHEAD (default 1,500: instructions, schema and answer room) <= W.

Targets checked (issue 23):
 (a) "fit" rows at default flags: requests/page <= 1.2 (topic syntheses included) and prompt tokens
     <= 1.3 x the pages' text tokens;
 (b) RPM pair: batching cuts requests >= 3x and wall time >= 2x against --batch-size 1.
Writes --json (default benchmarks/results/bench_reading.json) with config, pages, rows and targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import ROOT, print_table, sim_stats, simulator

from document_it.fetch import FetchLimits, fetch
from document_it.models import DocRef
from document_it.parse import parse
from document_it.sources import PAGE_SUFFIXES, discover
from document_it.testing.site import SiteServer

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
SAMPLE = ROOT / "document_it" / "data" / "sample"
TASK_SETS = {"1 task": "key_concepts",
             "4 tasks": "summary,key_concepts,implementation_details,code_patterns",
             "default": ""}  # "": no --tasks, all five
RPM_TASKS = "summary,key_concepts"
LOCK = "/tmp/bench.lock"
MAX_S = 7200  # simulator and site lifetime: a run may wait long for the lock


@dataclass(frozen=True)
class Row:
    """One timed run: which pages, which window, which flags."""

    scenario: str
    pages: str  # "mixed" (sampled with --limit) or "fit" (the sampled pages that fit the smallest window)
    window: int
    tasks: str = ""
    flags: tuple[str, ...] = ()
    sim_flags: tuple[str, ...] = ()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=Path, default=PYTHON_DOCS if PYTHON_DOCS.is_dir() else SAMPLE,
                   help="folder of pages to serve (an llms.txt in it is the source, else a URL list of its pages)")
    p.add_argument("--pages", type=int, default=60, help="--limit for the task rows")
    p.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose main.py is measured")
    p.add_argument("--latency-ms", type=float, default=300)
    p.add_argument("--ms-per-token", type=float, default=3.0, help="simulated decode time per output token")
    p.add_argument("--prefill-ms-per-token", type=float, default=0.05, help="simulated time per prompt token")
    p.add_argument("--windows", default="8192,32768", help="server context windows, one row set each")
    p.add_argument("--overhead", type=int, default=1500, help="tokens beside the page's text a request needs")
    p.add_argument("--rpm", type=float, default=120, help="limit of the RPM pair (simulator and --rpm)")
    p.add_argument("--rpm-pages", type=int, default=24)
    p.add_argument("--strategies", action="store_true", help="add --task-strategy combined|separate rows")
    p.add_argument("--skip-fit", action="store_true", help="no 'fit' rows")
    p.add_argument("--quick", action="store_true", help="8 sample pages, 50 ms latency: a smoke run")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only the rows whose label ('default · fit · 8192', 'rpm batched · mixed · 32768') "
                        "holds TEXT; repeat for several (e.g. --only 'default · fit' --only rpm)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_reading.json")
    args = p.parse_args()
    if args.quick:
        args.docs, args.pages, args.rpm_pages = SAMPLE, min(args.pages, 8), min(args.rpm_pages, 8)
        args.latency_ms, args.ms_per_token = min(args.latency_ms, 50), min(args.ms_per_token, 0.5)
    args.checkout = args.checkout.resolve()
    windows = [int(w) for w in args.windows.split(",") if w]
    strategy_flag = "--task-strategy" in _help(args.checkout)
    if args.strategies and not strategy_flag:
        print(f"note: {args.checkout}/main.py has no --task-strategy; --strategies adds no rows")
    base_sim = ("--latency-ms", str(args.latency_ms), "--ms-per-token", str(args.ms_per_token),
                "--prefill-ms-per-token", str(args.prefill_ms_per_token))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, SiteServer(args.docs, max_seconds=MAX_S) as site:
        source = _source(args.docs, site, Path(tmp))
        texts = _TextTokens()
        refs = discover(source, FetchLimits(allow_private=True), limit=args.pages).refs
        sampled = [ref.url for ref in refs]
        fit_refs = [ref for ref in refs if texts.of(ref.url) + args.overhead <= min(windows)]
        fit_urls = [ref.url for ref in fit_refs]
        fit_source = _index(fit_refs, Path(tmp, "fit-llms.txt"))
        plan = _plan(windows, args, strategy_flag and args.strategies, bool(fit_urls) and not args.skip_fit)
        if args.only:
            plan = [row for row in plan if any(text in f"{row.scenario} · {row.pages} · {row.window}"
                                               for text in args.only)]
        for row in plan:
            src, limit = (str(fit_source), None) if row.pages == "fit" else (source, _pages_of(row, args))
            result = _timed(row, src, limit, base_sim, args, texts)
            rows.append(result)
            print(f"  {row.scenario} · {row.pages} · {row.window}: {result['wall_seconds']:.1f}s, "
                  f"{result['sim_requests']} requests", flush=True)
        page_table = {u: texts.of(u) for u in sampled}
    targets = _targets(rows)
    _print(rows, targets, args, windows, len(sampled), len(fit_urls))
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    # the commit names what was measured; a checkout's own path would name only this machine
    config["checkout"] = "." if args.checkout == ROOT.resolve() else "another checkout (see commit)"
    written, root = args.json.resolve(), ROOT.resolve()  # named within the checkout: a machine's path says nothing
    config["json"] = str(written.relative_to(root)) if written.is_relative_to(root) else written.name
    config.update(cores=os.cpu_count(), task_strategy_flag=strategy_flag, commit=_commit(args.checkout),
                  fit_rule=f"text_tokens + {args.overhead} <= window")
    out = {"config": config, "pages": page_table, "fit_pages": fit_urls, "rows": rows, "targets": targets}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


def _plan(windows: list[int], args: argparse.Namespace, strategies: bool, fit_rows: bool) -> list[Row]:
    """Every row to run, in order."""
    plan = []
    for pages in ("mixed", "fit") if fit_rows else ("mixed",):
        for name, tasks in TASK_SETS.items():
            for window in windows:
                plan.append(Row(name, pages, window, tasks))
                if strategies:
                    plan += [Row(name, pages, window, tasks, ("--task-strategy", s)) for s in ("combined", "separate")]
    if strategies:  # a run of a few pages: every request of it has a slot at once, where separate requests pay
        plan += [Row("tiny (3 pages)", "mixed", max(windows), "", ("--task-strategy", s))
                 for s in ("combined", "separate")]
    # the servers that limit requests a minute are hosted APIs, whose windows are large: the largest row window
    rpm = ("--rpm", f"{args.rpm:g}")
    plan.append(Row("rpm batched", "mixed", max(windows), RPM_TASKS, rpm, rpm))
    plan.append(Row("rpm batch 1", "mixed", max(windows), RPM_TASKS, (*rpm, "--batch-size", "1"), rpm))
    return plan


TINY_PAGES = 3


def _pages_of(row: Row, args: argparse.Namespace) -> int:
    if row.scenario.startswith("tiny"):
        return TINY_PAGES
    return args.rpm_pages if row.scenario.startswith("rpm") else args.pages


def _timed(row: Row, source: str, limit: int | None, base_sim: tuple[str, ...], args: argparse.Namespace,
           texts: "_TextTokens") -> dict[str, Any]:
    """Run one row against a fresh simulator (its own window and RPM bucket); return its measures."""
    sim_args = (*base_sim, "--context-tokens", str(row.window), *row.sim_flags)
    with simulator(*sim_args, max_seconds=MAX_S) as base_url:
        flags = ["--source", source, "--llm", "openai", "--llm-base-url", base_url, "--no-cache", *row.flags]
        flags += ["--limit", str(limit)] if limit else []
        flags += ["--tasks", row.tasks] if row.tasks else []
        started = time.perf_counter()
        run, urls, code, stderr = _run_main(args.checkout, flags)
        elapsed = time.perf_counter() - started
        stats = sim_stats(base_url)
    return _measures(row, run, urls, code, stderr, stats, texts, args.overhead, elapsed)


def _measures(row: Row, run: dict[str, Any], urls: list[str], code: int, stderr: str, stats: dict[str, Any],
              texts: "_TextTokens", overhead: int, elapsed: float) -> dict[str, Any]:
    """The row's numbers: what the server saw, what run.json says, and the pages' own tokens."""
    llm = run.get("llm") or {}
    docs = run.get("documents") or {}
    pages = len(urls) or docs.get("total", 0)
    mine = sum(texts.of(u) for u in urls)
    work = run.get("work") or {}
    text = work.get("text_tokens") or mine
    fits = sum(texts.of(u) + overhead <= row.window for u in urls)
    per = (lambda n: round(n / pages, 2) if pages else None)
    return {"scenario": row.scenario, "pages_set": row.pages, "window": row.window, "tasks": row.tasks or "(all five)",
            "flags": " ".join(row.flags), "exit": code, "stderr_tail": stderr[-300:] if code else "",
            "wall_seconds": run.get("wall_seconds"), "process_seconds": round(elapsed, 2),
            "pages": pages, "completed": docs.get("completed"), "failed": docs.get("failed"),
            "fit": fits, "not_fit": pages - fits,
            "sim_requests": stats["requests"], "sim_attempts": stats["attempts"],
            "sim_rate_limited": stats["rate_limited"], "sim_errors": stats["errors"],
            "run_requests": llm.get("requests"), "run_prompts": llm.get("prompts"),
            "syntheses": (llm.get("by_task") or {}).get("topic_synthesis"),  # requests led by a synthesis (run.json by_task)
            "by_task": llm.get("by_task"),
            "batches": (llm.get("batching") or {}).get("batches"),
            "window_used": (llm.get("context") or {}).get("tokens"),
            "sim_prompt_tokens": stats["prompt_tokens"], "sim_completion_tokens": stats["completion_tokens"],
            "server_busy_seconds": round(stats["busy_seconds"], 2),
            "text_tokens": text, "text_tokens_parsed": mine, "text_tokens_run": work.get("text_tokens"),
            "requests_per_page": per(stats["requests"]), "prompt_tokens_per_page": per(stats["prompt_tokens"]),
            "text_tokens_per_page": per(text),
            "prompt_text_ratio": round(stats["prompt_tokens"] / text, 2) if text else None,
            "work": work or None}


def _run_main(checkout: Path, flags: list[str]) -> tuple[dict[str, Any], list[str], int, str]:
    """`python main.py` of `checkout` under the bench lock, into a temp dir: (run.json, page URLs, exit, stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["flock", LOCK, sys.executable, "main.py", "--quiet", "--allow-private", "--output-dir",
               f"{tmp}/out", "--state-dir", f"{tmp}/state", *flags]
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PYTHONPATH")}
        done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=MAX_S)
        out = Path(tmp, "out")
        if not (out / "run.json").exists():
            raise RuntimeError(f"run failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        results = out / "results.jsonl"
        lines = results.read_text().splitlines() if results.exists() else []
        urls = [json.loads(line)["url"] for line in lines if line.strip()]
        return json.loads((out / "run.json").read_text()), urls, done.returncode, done.stderr


class _TextTokens:
    """A page's own text tokens, parsed once per URL: sum(chunk.tokens), as the pipeline estimates them."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._limits = FetchLimits(allow_private=True)

    def of(self, url: str) -> int:
        if url not in self._seen:
            got = fetch(DocRef(url), self._limits)
            self._seen[url] = sum(c.tokens for c in parse(got).chunks) if got.ok else 0
        return self._seen[url]


def _source(docs: Path, site: SiteServer, tmp: Path) -> str:
    """The served folder's llms.txt, else a URL list of its pages (folders starting with '_' left out:
    Sphinx's _sources, _static, _images)."""
    if (docs / "llms.txt").is_file():
        return site.url("llms.txt")
    root = docs.resolve()
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES
                   and not any(part.startswith("_") for part in p.relative_to(root).parts[:-1]))
    listing = tmp / "urls.txt"
    listing.write_text("".join(f"{site.url(page)}\n" for page in pages))
    return str(listing)


def _index(refs: list[DocRef], path: Path) -> Path:
    """An llms.txt listing `refs` under their topics, so the 'fit' pages keep the topics the sample gave them."""
    topics: dict[str, list[str]] = {}
    for ref in refs:
        topics.setdefault(ref.topic or "(root)", []).append(ref.url)
    lines = ["# Pages that fit", "> The sampled pages that fit the smallest window.", ""]
    for topic, urls in topics.items():
        lines += ["", f"## {topic}", ""] + [f"- [{url.rsplit('/', 1)[-1]}]({url})" for url in urls]
    path.write_text("\n".join(lines) + "\n")
    return path


def _targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 23's targets: (a) on the 'fit' rows at default flags, (b) on the RPM pair."""
    fit = [r for r in rows if r["pages_set"] == "fit" and not r["flags"]]
    checks = [{"row": f"{r['scenario']} @ {r['window']}", "requests_per_page": r["requests_per_page"],
               "prompt_text_ratio": r["prompt_text_ratio"],
               "pass": bool(r["requests_per_page"] is not None and r["requests_per_page"] <= 1.2
                            and r["prompt_text_ratio"] is not None and r["prompt_text_ratio"] <= 1.3)}
              for r in fit]
    a = {"rule": "fit rows, default flags: requests/page <= 1.2 and prompt/text <= 1.3", "rows": checks,
         "pass": bool(checks) and all(c["pass"] for c in checks)}
    batched = next((r for r in rows if r["scenario"] == "rpm batched"), None)
    single = next((r for r in rows if r["scenario"] == "rpm batch 1"), None)
    b: dict[str, Any] = {"rule": "RPM pair: batch-1 / batched >= 3 for requests and >= 2 for wall time"}
    if batched and single and batched["sim_requests"] and batched["wall_seconds"]:
        b["requests_cut"] = round(single["sim_requests"] / batched["sim_requests"], 2)
        b["wall_cut"] = round(single["wall_seconds"] / batched["wall_seconds"], 2)
        b["pass"] = b["requests_cut"] >= 3 and b["wall_cut"] >= 2
    return {"a": a, "b": b}


def _print(rows: list[dict[str, Any]], targets: dict[str, Any], args: argparse.Namespace, windows: list[int],
           sampled: int, fit: int) -> None:
    print(f"\n{args.docs} · {sampled} sampled pages ({fit} fit {min(windows)}: text + {args.overhead} <= window) · "
          f"latency {args.latency_ms:g} ms + {args.ms_per_token:g} ms/out token + {args.prefill_ms_per_token:g} "
          f"ms/prompt token · main.py of {args.checkout} ({_commit(args.checkout)[:8]})\n")
    print_table(rows, [("scenario", "scenario", ""), ("pages", "pages_set", ""), ("window", "window", "d"),
                       ("flags", "flags", ""), ("n", "pages", "d"), ("done", "completed", "d"),
                       ("fit", "fit", "d"), ("not", "not_fit", "d"), ("wall s", "wall_seconds", ".1f"),
                       ("req sim", "sim_requests", "d"), ("req run", "run_requests", "d"),
                       ("syn req", "syntheses", "d"), ("batches", "batches", "d"), ("429", "sim_rate_limited", "d"), ("req/page", "requests_per_page", ".2f"),
                       ("prompt/page", "prompt_tokens_per_page", ",.0f"), ("text/page", "text_tokens_per_page", ",.0f"),
                       ("prompt/text", "prompt_text_ratio", ".2f")])
    a, b = targets["a"], targets["b"]
    print(f"\n(a) {'PASS' if a['pass'] else 'FAIL'}: {a['rule']}")
    for c in a["rows"]:
        print(f"    {c['row']}: {c['requests_per_page']} req/page, prompt/text {c['prompt_text_ratio']} "
              f"{'pass' if c['pass'] else 'fail'}")
    if "pass" in b:
        print(f"(b) {'PASS' if b['pass'] else 'FAIL'}: requests cut {b['requests_cut']}x, wall cut {b['wall_cut']}x "
              f"({b['rule']})")


def _help(checkout: Path) -> str:
    done = subprocess.run([sys.executable, "main.py", "--help"], cwd=checkout, capture_output=True, text=True,
                          timeout=60)
    return done.stdout


def _commit(checkout: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True)
    return done.stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
