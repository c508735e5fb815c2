"""PNG charts for the benchmark JSON files (matplotlib, no display needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no window, no display server
import matplotlib.pyplot as plt  # noqa: E402


def speedup_bars(rows: list[dict[str, Any]], bound: float, title: str, path: Path) -> Path:
    """Wall seconds per mode (with the lower bound as a line) beside each mode's speedup over sync."""
    modes = [r["mode"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    walls = [r["wall_seconds"] for r in rows]
    left.bar(modes, walls, color="#4c72b0")
    for i, row in enumerate(rows):
        left.annotate(f"{row['wall_seconds']:.1f} s\n{row['efficiency']:.0%}", (i, walls[i]), ha="center",
                      va="bottom", fontsize=8)
    left.axhline(bound, color="#c44e52", linestyle="--", label=f"lower bound {bound:.1f} s")
    left.set_yscale("log")
    left.set_ylabel("wall seconds (log scale); % = efficiency")
    left.legend(loc="upper right")
    speedups = [r.get("speedup_vs_sync") or 0 for r in rows]
    right.bar(modes, speedups, color="#55a868")
    right.set_ylabel("speedup over sync (×)")
    for i, value in enumerate(speedups):
        right.annotate(f"{value:.1f}×", (i, value), ha="center", va="bottom")
    _finish(fig, title, path)
    return path


def _finish(fig: Any, title: str, path: Path) -> None:
    fig.suptitle(textwrap.fill(title, 120), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_curves(by_pages: list[dict[str, Any]], by_cap: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Left: pages/s against corpus size per mode. Right: wall seconds and the LLM lower bound against the
    concurrency cap."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in dict.fromkeys(r["mode"] for r in by_pages):
        points = [(r["pages"], r["pages_per_second"]) for r in by_pages if r["mode"] == mode]
        left.plot(*zip(*points), marker="o", label=mode)
    left.set_xlabel("pages")
    left.set_ylabel("pages per second")
    left.set_xscale("log", base=2)
    left.legend()
    for mode in dict.fromkeys(r["mode"] for r in by_cap):
        points = [(r["max_concurrency"], r["wall_seconds"]) for r in by_cap if r["mode"] == mode]
        right.plot(*zip(*points), marker="o", label=f"{mode} wall")
    bounds = sorted({(r["max_concurrency"], r["lower_bound_seconds"]) for r in by_cap})
    if bounds:
        right.plot(*zip(*bounds), linestyle="--", color="#c44e52", label="lower bound")
    right.set_xlabel("--max-concurrency")
    right.set_ylabel("wall seconds")
    right.set_xscale("log")
    right.set_yscale("log")
    right.legend()
    _finish(fig, title, path)
    return path
