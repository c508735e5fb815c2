"""Shared benchmark plumbing: a loopback site, a simulator subprocess, one timed run of main.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from document_it.testing.site import SiteServer  # noqa: E402

SAMPLE = ROOT / "document_it" / "data" / "sample"


@contextmanager
def sample_site(max_seconds: float = 1800) -> Iterator[SiteServer]:
    """The bundled sample corpus served over loopback HTTP."""
    with SiteServer(SAMPLE, max_seconds=max_seconds) as site:
        yield site


@contextmanager
def simulator(*args: str, max_seconds: float = 1800) -> Iterator[str]:
    """Start the LLM simulator in its own process (so it never shares a GIL with the run); yield its base URL."""
    cmd = [sys.executable, "-m", "document_it.testing.llm_sim", "--port", "0",
           "--max-seconds", str(max_seconds), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()  # only the process this harness started, by its handle
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def sim_stats(base_url: str, reset: bool = False) -> dict[str, Any]:
    root = base_url.rsplit("/v1", 1)[0]
    if reset:
        urllib.request.urlopen(urllib.request.Request(f"{root}/stats/reset", method="POST"), timeout=10).read()
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as resp:
        return json.loads(resp.read())


def run_main(*flags: str, timeout: float = 1800) -> tuple[dict[str, Any], int]:
    """Run `python main.py` with flags into a temp output dir; return (run.json, exit code)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "main.py", "--quiet", "--allow-private", "--output-dir", f"{tmp}/out",
               "--state-dir", f"{tmp}/state", *flags]
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        run_json = Path(tmp, "out", "run.json")
        if not run_json.exists():
            raise RuntimeError(f"run failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return json.loads(run_json.read_text()), done.returncode


def write_json(name: str, data: Any) -> Path:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Print rows as an aligned table; columns are (header, key, format spec such as '.2f' or '.0%')."""
    cells = [[header for header, _, _ in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) is None else format(row[key], spec) for _, key, spec in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))


def finish(name: str, params: Any, rows: list[dict[str, Any]]) -> None:
    """Write the JSON next to the other results and say where."""
    path = write_json(name, {"params": vars(params), "rows": rows})
    print(f"\nwrote {path.name} in benchmarks/results/")
