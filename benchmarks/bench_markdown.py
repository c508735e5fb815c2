"""How fast real documentation pages become clean Markdown (document_it/markdown_page.py): from the page's
bytes to its Markdown, the way a parse worker does it (decode, lxml, chrome stripped, content region,
html-to-markdown), in one process and in a pool of --workers processes.

    python benchmarks/bench_markdown.py [--pages 300] [--workers 2] [--docs /usr/share/doc]

Pages are sampled (fixed seed) from Debian's doc packages that are installed (python3.11-doc,
python-django-doc, postgresql-doc-15, sqlite3-doc, mkdocs-doc, nodejs-doc, git-doc). Goal (issue 27): at
least 150 pages a second on 2 cores, so the conversion keeps up with a crawl. Writes
benchmarks/results/bench_markdown.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _harness import finish, print_table

SETS = ("python3.11/html", "python-django-doc/html", "postgresql-doc-15/html", "sqlite3", "mkdocs/html",
        "nodejs/api", "git-doc")


def convert(path: str) -> tuple[float, float, int]:
    """(seconds to the content region, seconds to convert it, Markdown characters) for one page."""
    from document_it.chrome import main_region, strip_chrome
    from document_it.encoding import decode
    from document_it.markdown_page import html_markdown
    from document_it.parse import _read_html

    started = time.perf_counter()
    data = Path(path).read_bytes()
    root = _read_html(decode(data, html=True).encode("utf-8", "replace"))
    strip_chrome(root)
    main = main_region(root)
    found = time.perf_counter()
    text = html_markdown(main, Path(path).as_uri())
    return found - started, time.perf_counter() - found, len(text)


def _sample(docs: Path, pages: int) -> list[str]:
    present = [docs / name for name in SETS if (docs / name).is_dir()]
    if not present:
        raise SystemExit(f"no documentation sets under {docs}: apt-get install python3.11-doc postgresql-doc-15 …")
    rng = random.Random(7)
    chosen: list[str] = []
    for folder in present:
        files = sorted(str(p) for p in folder.rglob("*.html") if not any(part.startswith("_") for part in p.parts))
        chosen += rng.sample(files, min(len(files), pages // len(present)))
    return chosen


def _row(label: str, seconds: float, timings: list[tuple[float, float, int]]) -> dict[str, Any]:
    convert_ms = sorted(1000 * t[1] for t in timings)
    return {"run": label, "pages": len(timings), "wall_seconds": round(seconds, 3),
            "pages_per_second": round(len(timings) / seconds, 1),
            "region_ms_mean": round(1000 * statistics.mean(t[0] for t in timings), 2),
            "convert_ms_mean": round(statistics.mean(convert_ms), 2),
            "convert_ms_p95": round(convert_ms[int(0.95 * (len(convert_ms) - 1))], 2),
            "markdown_kb_mean": round(statistics.mean(t[2] for t in timings) / 1000, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=300, help="pages sampled, spread over the installed sets")
    p.add_argument("--workers", type=int, default=2, help="processes of the pool row")
    p.add_argument("--docs", type=Path, default=Path("/usr/share/doc"))
    args = p.parse_args()
    paths = _sample(args.docs, args.pages)
    convert(paths[0])  # imports and the converter's first call, outside the timing
    started = time.perf_counter()
    alone = [convert(path) for path in paths]
    rows = [_row("one process", time.perf_counter() - started, alone)]
    with ProcessPoolExecutor(args.workers) as pool:
        list(pool.map(convert, paths[: args.workers * 2]))  # the workers' imports, outside the timing
        started = time.perf_counter()
        pooled = list(pool.map(convert, paths, chunksize=8))
        rows.append(_row(f"pool of {args.workers}", time.perf_counter() - started, pooled))
    print(f"\n{len(paths)} real documentation pages, bytes to Markdown\n")
    print_table(rows, [("run", "run", ""), ("pages", "pages", "d"), ("wall s", "wall_seconds", ".2f"),
                       ("pages/s", "pages_per_second", ".1f"), ("region ms", "region_ms_mean", ".2f"),
                       ("convert ms", "convert_ms_mean", ".2f"), ("convert p95 ms", "convert_ms_p95", ".2f"),
                       ("Markdown kB", "markdown_kb_mean", ".1f")])
    print(f"\ngoal: at least 150 pages/s on 2 cores — {rows[-1]['pages_per_second']:.0f} pages/s")
    finish("bench_markdown.json", argparse.Namespace(**{**vars(args), "docs": str(args.docs)}), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
