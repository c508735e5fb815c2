"""Opt-in: the command at default flags against a real one-slot llama.cpp server, on real documentation pages.

    eval "$(scripts/llama-server --build-only)"      # sets DOCUMENT_IT_LLAMA_PYTHON and DOCUMENT_IT_LLAMA_MODEL
    python benchmarks/bench_real_server.py [--docs /usr/share/doc/python3.11/html] [--pages 8] [--time-limit 600]

Starts llama-cpp-python's OpenAI server (SmolLM2-135M-Instruct, n_ctx 4096, one slot: it answers one request
at a time) on a free 127.0.0.1 port, waits until /v1/models answers, then runs `python main.py` at its default
flags on --pages pages sampled from --docs (--limit). A run still going after --time-limit seconds is stopped
(Ctrl-C, then a second one) and the row says how many pages it finished. The server is stopped by its PID at
the end, even on error. The table gives pages analysed, wall time, LLM requests (as the server got them,
retries included) and prompt tokens per page analysed, and the page text per page in tokens (the run's own
figure over the pages it analysed, and over all pages sampled: what one reading costs); the server's log gives
its HTTP statuses and llama.cpp's timings (prefill and decode speed). Without the two variables, or without
the docs folder, it prints why and exits 0. Writes benchmarks/results/bench_real_server.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from _harness import ROOT, finish, print_table

from document_it.testing.serving import wait_until_serving

DEFAULT_DOCS = Path("/usr/share/doc/python3.11/html")
ENV_PYTHON, ENV_MODEL = "DOCUMENT_IT_LLAMA_PYTHON", "DOCUMENT_IT_LLAMA_MODEL"
N_CTX = 4096
_STATUS = re.compile(r'"(?:POST|GET) (\S+) HTTP/[\d.]+" (\d{3})')
_PERF = re.compile(r"llama_perf_context_print:\s+(prompt eval|eval|total) time =\s+([\d.]+) ms /\s+(\d+)")


def _skip_reason(docs: Path) -> str | None:
    """Why this benchmark cannot run here, or None."""
    if not (os.environ.get(ENV_PYTHON) and os.environ.get(ENV_MODEL)):
        return (f"set {ENV_PYTHON} and {ENV_MODEL} (scripts/llama-server --build-only prints them) "
                "to run against a real llama.cpp server")
    if not docs.is_dir():
        return f"no documentation folder at {docs} (--docs DIR)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def llama_server(log: Path, start_timeout_s: float = 180) -> Iterator[str]:
    """Start the llama.cpp server on a free loopback port, its log to `log`; yield its base URL; stop it by PID."""
    python, model = os.environ[ENV_PYTHON], os.environ[ENV_MODEL]
    if not Path(model).is_file():
        raise SystemExit(f"bench_real_server: {ENV_MODEL}={model} is not a file")
    port = _free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", model, "--n_ctx", str(N_CTX),
           "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        server = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        if not wait_until_serving(f"{base}/models", server, start_timeout_s):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"bench_real_server: the llama.cpp server did not start: {' | '.join(tail)}")
        yield base
    finally:
        server.terminate()  # only the process started here, by its handle
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _env() -> dict[str, str]:
    """This environment without a key or DOCUMENT_IT_* settings that would change what is measured."""
    return {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not k.startswith("DOCUMENT_IT_")}


def _stop(run: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (pages under way get a few seconds, then what finished is written), a second one, then kill."""
    for signum, wait_s in ((signal.SIGINT, 45), (signal.SIGINT, 15), (signal.SIGKILL, 15)):
        if run.poll() is not None:
            return
        run.send_signal(signum)
        try:
            run.wait(wait_s)
        except subprocess.TimeoutExpired:
            pass


def _timed_run(base: str, docs: Path, pages: int, limit_s: float, out: Path, state: Path,
               stderr: Path) -> tuple[float, int | None, bool]:
    """Run main.py at default flags; return (wall seconds, exit code, whether the time limit stopped it)."""
    cmd = [sys.executable, "main.py", "--quiet", "--allow-private", "--source", str(docs), "--limit", str(pages),
           "--llm-base-url", base, "--output-dir", str(out), "--state-dir", str(state)]
    with stderr.open("wb") as sink:
        start = time.perf_counter()
        run = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=sink)
        try:
            code: int | None = run.wait(limit_s)
            stopped = False
        except subprocess.TimeoutExpired:
            stopped = True
            _stop(run)
            code = run.poll()
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    return time.perf_counter() - start, code, stopped


def _results(out: Path) -> list[dict[str, Any]]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # a line cut by the kill
    return rows


def _analysed(result: dict[str, Any]) -> bool:
    """Completed, with a summary that says something."""
    summary = (result.get("analysis") or {}).get("summary")
    return result.get("status") == "completed" and isinstance(summary, str) and bool(summary.strip())


def _text_tokens(docs: Path, pages: int) -> float | None:
    """Mean tokens of page text over the pages --limit samples (one reading of each page)."""
    sys.path.insert(0, str(ROOT))
    from document_it.models import Fetched
    from document_it.parse import parse
    from document_it.sources import discover

    counts = []
    for ref in discover(str(docs), limit=pages).refs:
        path = Path(urllib.request.url2pathname(ref.url.removeprefix("file://")))
        counts.append(parse(Fetched(ref=ref, final_url=ref.url, content=path.read_bytes(),
                                    content_type="text/html")).tokens)
    return sum(counts) / len(counts) if counts else None


def _server_log(log: Path) -> dict[str, Any]:
    """HTTP statuses of chat requests and llama.cpp's summed timings, from the server's own log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    statuses = Counter(code for path, code in _STATUS.findall(text) if path.endswith("/chat/completions"))
    sums: dict[str, list[float]] = {"prompt eval": [0.0, 0], "eval": [0.0, 0], "total": [0.0, 0]}
    for kind, ms, count in _PERF.findall(text):
        sums[kind][0] += float(ms)
        sums[kind][1] += int(count)
    prompt_tokens = sums["total"][1] - sums["eval"][1]
    # llama-cpp-python's own 'prompt eval' line often reads ~0 ms: take total minus decode (sampling included)
    prefill_s = (sums["total"][0] - sums["eval"][0]) / 1000
    errors = Counter(line.strip()[:160] for line in text.splitlines()
                     if re.match(r"\s*(\w+(Error|Exception)|Exception)\b", line))
    return {
        "chat_statuses": dict(sorted(statuses.items())),
        "generations": int(len(_PERF.findall(text)) / 3),
        "prompt_tokens_evaluated": prompt_tokens,
        "completion_tokens": sums["eval"][1],
        "busy_s": round(sums["total"][0] / 1000, 1),
        "prefill_tok_s": round(prompt_tokens / prefill_s, 1) if prefill_s > 0 else None,
        "decode_tok_s": round(sums["eval"][1] / (sums["eval"][0] / 1000), 1) if sums["eval"][0] else None,
        "completion_tokens_each": [int(n) for kind, _, n in _PERF.findall(text) if kind == "eval"],
        "errors": dict(errors.most_common(5)),
    }


def _per_page(total: float | None, pages: int) -> float | None:
    return round(total / pages, 1) if total is not None and pages else None


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One run against a fresh server: the row of the table."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        out, state, server_log, run_err = tmp / "out", tmp / "state", tmp / "server.log", tmp / "run.stderr"
        with llama_server(args.server_log or server_log) as base:
            print(f"  llama.cpp server up at {base}; running {args.pages} pages of {args.docs} "
                  f"(limit {args.time_limit:.0f} s) ...", flush=True)
            wall, code, stopped = _timed_run(base, args.docs, args.pages, args.time_limit, out, state, run_err)
        results = _results(out)
        run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
        llm, work = run.get("llm") or {}, run.get("work") or {}
        done = sum(1 for r in results if _analysed(r))
        requests, tokens_in = llm.get("attempts"), llm.get("tokens_in")  # requests the server got, retries too
        row: dict[str, Any] = {
            "case": f"{args.pages} pages, default flags" + (" (stopped)" if stopped else ""),
            "pages": args.pages,
            "analysed": done,
            "failed": sum(1 for r in results if r.get("status") == "failed"),
            "analysed_of": f"{done}/{args.pages}",
            "wall_s": round(wall, 1),
            "stopped_at_limit": stopped,
            "exit_code": code,
            "run_status": run.get("status"),
            "llm_requests": work.get("requests", requests),
            "llm_logical_requests": llm.get("requests"),  # before retries
            "llm_by_status": llm.get("by_status"),
            "llm_by_task": llm.get("by_task"),
            "tokens_in": tokens_in,
            "tokens_out": llm.get("tokens_out"),
            "structured_output": llm.get("structured_output"),
            "context": llm.get("context"),
            # per page: the run's own `work` figures when it has them, else totals over pages analysed
            # (a stopped run's totals include requests for pages still under way)
            "requests_per_page": work.get("requests_per_page", _per_page(requests, done)),
            "prompt_tokens_per_page": work.get("prompt_tokens_per_page", _per_page(tokens_in, done)),
            "text_tokens_per_page": work.get("text_tokens_per_page"),  # the run's own, over the pages it did
            "sample_text_tokens_per_page": _per_page(_text_tokens(args.docs, args.pages), 1),  # all pages sampled
            "per_page_from": "run.json work" if work else "llm totals / pages analysed",
            "failures": run.get("failures"),
            "server": _server_log(args.server_log or server_log),
            "run_stderr_tail": run_err.read_text(errors="replace").strip().splitlines()[-5:],
        }
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="a folder of documentation pages")
    p.add_argument("--pages", type=int, default=8, help="pages sampled from it (--limit)")
    p.add_argument("--time-limit", type=float, default=600, help="seconds before the run is stopped")
    p.add_argument("--out", default="bench_real_server.json", help="file name under benchmarks/results/")
    p.add_argument("--server-log", type=Path, help="keep the llama.cpp server's log here (default: thrown away)")
    args = p.parse_args()
    reason = _skip_reason(args.docs)
    if reason:
        print(f"bench_real_server: skipped: {reason}")
        return 0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    load_before = os.getloadavg()
    row = measure(args)
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count()}
    server = row["server"]
    print(f"\ncode at {commit or '?'}; server: n_ctx {N_CTX}, one slot; load average {load['before'][0]} → "
          f"{load['after'][0]} on {load['cpus']} CPUs\n")
    print_table([row], [("case", "case", ""), ("analysed", "analysed_of", ""), ("wall s", "wall_s", ".1f"),
                        ("LLM requests", "llm_requests", "d"), ("requests/page", "requests_per_page", ".1f"),
                        ("prompt tok/page", "prompt_tokens_per_page", ".0f"),
                        ("page text tok/page", "text_tokens_per_page", ".0f"),
                        ("sampled text tok/page", "sample_text_tokens_per_page", ".0f")])
    print(f"\nserver: chat statuses {server['chat_statuses']}, {server['generations']} generations, "
          f"busy {server['busy_s']} s, prefill {server['prefill_tok_s']} tok/s, decode {server['decode_tok_s']} tok/s")
    if row["exit_code"] not in (0, None) and not row["stopped_at_limit"] and row["run_stderr_tail"]:
        print(f"the run exited {row['exit_code']}: {row['run_stderr_tail'][-1]}")
    if row["stopped_at_limit"]:
        print(f"stopped after {args.time_limit:.0f} s; per-page figures divide totals that include pages under way")
    params = {**vars(args), "docs": str(args.docs), "server_log": str(args.server_log or "")}
    finish(args.out, argparse.Namespace(**params, commit=commit, load=load, n_ctx=N_CTX,
                                        server_python=os.environ[ENV_PYTHON], model=Path(os.environ[ENV_MODEL]).name),
           [row])
    return 0 if row["analysed"] == args.pages else 1


if __name__ == "__main__":
    raise SystemExit(main())
