"""How fast the command answers: help, usage and source errors, and the first LLM request of a run.

    python benchmarks/bench_startup.py [--repeat 5] [--no-runs]

Each command runs --repeat times as a fresh process; the table shows the median (and min, max) wall time
against its goal: 0.5 s for --help, --version, usage errors and source errors, 1.5 s from process start
until the first LLM request of a run on the bundled sample reaches the simulator. The simulator is started
here (the run points --llm-base-url at it) and notes when the first chat request arrives; one row runs the
literal `--llm simulate` (the simulator inside the run), noting the arrival from a wrapper. Rows without a
goal are floors for reading the others (the interpreter, the CLI's imports, the LLM stack's imports).
Writes benchmarks/results/bench_startup.json (with the machine's load average: the figures are wall times).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _harness import ROOT, finish, print_table

from document_it.testing.llm_sim import SimServer

QUICK_GOAL_S, FIRST_REQUEST_GOAL_S = 0.5, 1.5

# The run's own `--llm simulate` simulator, noting when the first chat request arrives (in a file).
_WRAPPER = """
import sys, time
from document_it.testing import llm_sim
note, seen, enter = sys.argv[1], [], llm_sim.SimServer._enter
def _enter(self, raw=b""):
    if not seen:
        seen.append(time.time())
        with open(note, "w") as out:
            out.write(repr(seen[0]))
    enter(self, raw)
llm_sim.SimServer._enter = _enter
sys.argv = ["main.py", *sys.argv[2:]]
from document_it.cli import run_command
run_command()
"""


class _FirstArrival(SimServer):
    """The simulator, noting the wall-clock time the first chat request arrives."""

    first: float | None = None

    def _enter(self, raw: bytes = b"") -> None:
        if self.first is None:
            self.first = time.time()
        super()._enter(raw)


def _env() -> dict[str, str]:
    """This environment without a key or DOCUMENT_IT_* settings that would change what is measured."""
    return {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not k.startswith("DOCUMENT_IT_")}


def _quick_cases(tmp: Path) -> list[tuple[str, list[str], int]]:
    """(name, main.py arguments, expected exit code) for the commands that must answer at once."""
    blob, empty = tmp / "blob.bin", tmp / "no-pages"
    blob.write_bytes(bytes(range(256)) * 16)
    empty.mkdir()
    (empty / "notes.txt").write_text("not a page\n")
    dirs = ["--output-dir", str(tmp / "out"), "--state-dir", str(tmp / "state")]
    return [
        ("--help", ["--help"], 0),
        ("--version", ["--version"], 0),
        ("usage: --max-workers abc", ["--max-workers", "abc"], 2),
        ("usage: unknown flag", ["--no-such-flag"], 2),
        ("source: missing path", ["--source", "/nonexistent", *dirs], 2),
        ("source: not an index (.bin)", ["--source", str(blob), *dirs], 2),
        ("source: folder without pages", ["--source", str(empty), *dirs], 2),
        ("source: a device (/dev/null)", ["--source", "/dev/null", *dirs], 2),
        ("cache stats", ["--state-dir", str(tmp / "state"), "cache", "stats"], 0),
    ]


def _timed(cmd: list[str], expect: int) -> tuple[float, bool]:
    """Wall seconds of one fresh process, and whether it exited as expected with at most one stderr line."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return elapsed, done.returncode == expect and len(lines) <= 1


def _first_request_external(mode: str, tmp: Path) -> tuple[float, bool]:
    """Seconds from starting a run (simulator here, --llm-base-url) until its first LLM request arrives."""
    with _FirstArrival(latency_ms=400, max_seconds=600) as sim:
        cmd = [sys.executable, "main.py", "--llm", "simulate", "--llm-base-url", sim.base_url, "--quiet",
               "--parallelism-mode", mode, "--output-dir", str(tmp / "out"), "--state-dir", str(tmp / "state"),
               "--no-cache"]
        start = time.time()
        done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
        first = sim.first
    return (first - start if first else float("nan")), done.returncode == 0 and first is not None


def _first_request_inside(tmp: Path) -> tuple[float, bool]:
    """The same for the literal `--llm simulate` (the run starts its own simulator), noted by a wrapper."""
    note = tmp / "first-request"
    note.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", _WRAPPER, str(note), "--llm", "simulate", "--quiet", "--output-dir",
           str(tmp / "out"), "--state-dir", str(tmp / "state"), "--no-cache"]
    start = time.time()
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    if not note.exists():
        return float("nan"), False
    return float(note.read_text()) - start, done.returncode == 0


def _row(name: str, shown: str, goal: float | None, measure: Callable[[], tuple[float, bool]],
         repeat: int) -> dict[str, Any]:
    times, fine = [], True
    for _ in range(repeat):
        seconds, ok = measure()
        times.append(seconds)
        fine = fine and ok
    median = statistics.median(times)
    row = {"case": name, "command": shown, "goal_s": goal, "median_s": round(median, 3),
           "min_s": round(min(times), 3), "max_s": round(max(times), 3), "runs": repeat, "behaved": fine,
           "met": None if goal is None else bool(median <= goal), "times_s": [round(t, 3) for t in times]}
    verdict = "" if goal is None else ("  ok" if row["met"] else "  OVER GOAL")
    print(f"  {name}: median {median:.3f}s{verdict}{'' if fine else '  (unexpected exit or output)'}", flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="runs of each command (the median is reported)")
    p.add_argument("--no-runs", action="store_true", help="skip the first-request rows (whole runs, ~8 s each)")
    args = p.parse_args()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    python = sys.executable
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        floors = [("floor: python -c pass", [python, "-c", "pass"]),
                  ("floor: import document_it.cli", [python, "-c", "import document_it.cli"]),
                  ("floor: import the LLM stack", [python, "-c", "import document_it.run.driver"])]
        for case, cmd in floors:
            rows.append(_row(case, " ".join(cmd[1:]), None, lambda cmd=cmd: _timed(cmd, 0), args.repeat))
        for case, flags, expect in _quick_cases(tmp):
            cmd = [python, "main.py", *flags]
            rows.append(_row(case, "main.py " + " ".join(flags), QUICK_GOAL_S,
                             lambda cmd=cmd, expect=expect: _timed(cmd, expect), args.repeat))
        if not args.no_runs:
            rows.append(_row("first LLM request (hybrid)", "main.py --llm simulate --llm-base-url SIM --no-cache",
                             FIRST_REQUEST_GOAL_S, lambda: _first_request_external("hybrid", tmp), args.repeat))
            rows.append(_row("first LLM request (--llm simulate)", "main.py --llm simulate --no-cache",
                             FIRST_REQUEST_GOAL_S, lambda: _first_request_inside(tmp), args.repeat))
            rows.append(_row("first LLM request (async mode)", "... --parallelism-mode async",
                             None, lambda: _first_request_external("async", tmp), args.repeat))
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count()}
    print(f"\nmedian of {args.repeat} runs each; load average {load['before'][0]} → {load['after'][0]} "
          f"on {load['cpus']} CPUs\n")
    print_table(rows, [("case", "case", ""), ("goal s", "goal_s", ".1f"), ("median s", "median_s", ".3f"),
                       ("min s", "min_s", ".3f"), ("max s", "max_s", ".3f"), ("met", "met", ""),
                       ("exit as expected", "behaved", "")])
    finish("bench_startup.json", argparse.Namespace(**vars(args), load=load), rows)
    return 0 if all(row["behaved"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
