"""The benchmark scripts' arithmetic and charts (their timings are measured by running them, not here)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _plots import scaling_curves, speedup_bars  # noqa: E402
from _runs import RunConfig, add_ratios, generated_site, lower_bound, measure_work  # noqa: E402

from document_it.testing.site import SiteServer  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _row(mode: str, wall: float, busy: float, pages: int = 100) -> dict:
    return {"mode": mode, "wall_seconds": wall, "server_busy_seconds": busy, "pages": pages}


def test_the_lower_bound_is_the_slowest_resource_and_efficiency_is_relative_to_it():
    cfg = RunConfig("http://127.0.0.1/llms.txt", "http://127.0.0.1/v1", max_concurrency=20, threads=8)
    rows = [_row("sync", 400.0, 260.0), _row("hybrid", 16.0, 240.0), _row("naive", 21.0, 360.0)]
    work = {"pages": 100, "download_seconds": 8.0, "parse_cpu_seconds": 2.0 * (os.cpu_count() or 1)}
    bound = lower_bound(rows, work, cfg)
    assert bound == {"seconds": 12.0, "llm": 12.0, "parse": 2.0, "download": 1.0}  # least busy time / cap
    add_ratios(rows, bound["seconds"])
    hybrid = rows[1]
    assert hybrid["speedup_vs_sync"] == 25.0 and hybrid["efficiency"] == 0.75 and hybrid["pages_per_second"] == 6.25


def test_each_row_is_measured_against_what_it_could_have_served_at_once():
    cfg = RunConfig("http://127.0.0.1/llms.txt", "http://127.0.0.1/v1", max_concurrency=20, threads=8)
    rows = [_row("sync", 400.0, 380.0), _row("hybrid", 16.0, 240.0), _row("naive", 21.0, 399.0)]
    add_ratios(rows, 12.0, cfg)
    assert [r["utilisation"] for r in rows] == [0.95, 0.75, 0.95]  # sync serves one at a time; the others 20
    slots = RunConfig("http://127.0.0.1/llms.txt", "http://127.0.0.1/v1", max_concurrency=20, threads=8, slots=4)
    assert slots.served_at_once("hybrid") == 4 and slots.served_at_once("sync") == 1
    work = {"pages": 100, "download_seconds": 0.0, "parse_cpu_seconds": 0.0}
    assert lower_bound(rows, work, slots)["llm"] == 60.0  # 240 busy seconds over 4 slots, not over the cap of 20


def test_without_a_sync_row_there_is_no_speedup_column():
    rows = [_row("async", 10.0, 100.0)]
    add_ratios(rows, 5.0)
    assert rows[0]["speedup_vs_sync"] is None and rows[0]["efficiency"] == 0.5


def test_the_work_behind_the_bound_is_measured_on_the_served_pages(tmp_path):
    generated_site(tmp_path, 8)
    with SiteServer(tmp_path, max_seconds=60) as site:
        work = measure_work(site.url("llms.txt"))
    assert work["pages"] == 8 and work["download_seconds"] > 0 and work["parse_cpu_seconds"] >= 0


def test_charts_are_written_as_png(tmp_path):
    rows = [_row("sync", 40.0, 30.0), _row("hybrid", 4.0, 30.0)]
    add_ratios(rows, 2.0)
    bars = speedup_bars(rows, 2.0, "test", tmp_path / "modes.png")
    by_pages = [{**_row(m, w, 1.0, p), "pages_per_second": p / w} for m in ("async", "hybrid")
                for p, w in ((25, 3.0), (50, 5.0))]
    by_cap = [{"mode": "hybrid", "max_concurrency": c, "wall_seconds": 60 / c, "lower_bound_seconds": 50 / c}
              for c in (1, 5, 20)]
    curves = scaling_curves(by_pages, by_cap, "test", tmp_path / "scaling.png")
    assert bars.read_bytes()[:8] == PNG and curves.read_bytes()[:8] == PNG


def test_the_peers_verdicts_compare_the_project_with_crawl4ai_and_the_faster_of_gather_and_abatch():
    from bench_peers import ABATCH, CRAWL4AI_ROW, GATHER, OURS, PAGES_ONLY, _verdicts

    rows = [{"job": "one extraction a page", "tool": CRAWL4AI_ROW, "wall_seconds": 10.0},
            {"job": "one extraction a page", "tool": PAGES_ONLY, "wall_seconds": 4.0},
            {"job": "one extraction a page", "tool": OURS, "wall_seconds": 6.0},
            {"job": "four prompts a page", "tool": GATHER, "wall_seconds": 30.0},
            {"job": "four prompts a page", "tool": ABATCH, "wall_seconds": 20.0},
            {"job": "four prompts a page", "tool": PAGES_ONLY, "wall_seconds": 15.0},
            {"job": "four prompts a page", "tool": OURS, "wall_seconds": 17.0}]
    extraction, extraction_default, four, four_default = _verdicts(rows)
    assert PAGES_ONLY in extraction and "0.40 ×" in extraction and "goal ≤ 0.5 ×" in extraction
    assert OURS in extraction_default and "0.60 ×" in extraction_default
    assert "against the faster peer's 20.00 s" in four and "0.75 ×" in four and "goal ≤ 0.8 ×" in four
    assert "0.85 ×" in four_default


def test_the_peers_pages_are_real_pages_of_a_size_range_copied_to_be_served(tmp_path):
    from bench_peers import _kb_range, _pick_pages

    docs = tmp_path / "docs"
    (docs / "library").mkdir(parents=True)
    for name, size in (("a", 9_000), ("b", 500), ("c", 50_000), ("d", 20_000)):
        (docs / "library" / f"{name}.html").write_text("x" * size)
    assert _pick_pages(docs, 2, tmp_path / "site", _kb_range("8-40")) == ["library/a.html", "library/d.html"]
    assert (tmp_path / "site" / "library" / "d.html").stat().st_size == 20_000
    assert _pick_pages(docs, 4, tmp_path / "any", _kb_range("any")) == [f"library/{n}.html" for n in "abcd"]
    with pytest.raises(argparse.ArgumentTypeError, match="MIN-MAX in kB"):
        _kb_range("big")
