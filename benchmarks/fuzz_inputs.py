"""Fuzz the readers of outside input: the HTML/Markdown parser and the llms.txt, sitemap and URL-list readers.

    python benchmarks/fuzz_inputs.py                  # 10,000 inputs in all (2,500 per reader)
    python benchmarks/fuzz_inputs.py --per-reader 200 # a quick pass

Inputs come from hypothesis: random bytes and text, and mutations (bytes flipped, cut, repeated, spliced
with markup fragments) of valid seeds, including deep nesting and long lines. Pages are parsed as HTML,
Markdown and plain text under a charset label a server might send (true, false or nonsense); indexes are
decoded the way the source reader decodes them. Every input must end as a
parsed result or the reader's own clear error (ParseError / SourceError); anything else is a crash and
is printed with the input that caused it. Prints a table and writes --json
(default benchmarks/results/fuzz_inputs.json). Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings, strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from document_it.encoding import decode  # noqa: E402
from document_it.errors import ParseError, SourceError  # noqa: E402
from document_it.models import DocRef, Fetched  # noqa: E402
from document_it.parse import parse  # noqa: E402
from document_it.sources import parse_llms_txt, parse_sitemap, parse_url_list  # noqa: E402

BASE = "https://docs.example.test/"
SEEDS = {
    "html": b"<!DOCTYPE html><html><head><title>T</title><meta charset='utf-8'></head><body><main><h1>A</h1>"
            b"<p>Text <a href='b.html'>link</a> <code>x</code></p><pre><code class='language-py'>def f(): pass"
            b"</code></pre><table><tr><td>1</td></tr></table></main></body></html>",
    "llms": b"# Site\n\n> A summary\n\n## Guides\n\n- [Intro](intro.html): start here\n- [API](api.md)\n",
    "sitemap": b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
               b"<url><loc>https://docs.example.test/a</loc></url></urlset>",
    "urls": b"https://docs.example.test/a\n# comment\nhttps://docs.example.test/b\n",
}
FRAGMENTS = [b"<div>", b"</div>", b"<![CDATA[", b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"&a;", b"\x00", b"\xff\xfe",
             b"<script>", b"](", b"[", b"\n", b"<?xml", b"<sitemapindex>", b"<loc>", b"\r", b"\u202e".decode()
             .encode(), b"<" * 50, b"<b>" * 2000, b"x" * 100_000]


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    def mutate(ops: list[tuple[int, int, int]]) -> bytes:
        data = bytearray(seed)
        for kind, where, what in ops:
            at = where % (len(data) + 1)
            if kind == 0:
                data[at:at] = FRAGMENTS[what % len(FRAGMENTS)]
            elif kind == 1 and data:
                data[at % len(data)] = what % 256
            elif kind == 2:
                del data[at:at + what % 64]
            else:
                data[at:at] = bytes(data[at:at + 32]) * (what % 200)
        return bytes(data)

    ops = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 1 << 16)), max_size=12)
    return ops.map(mutate)


def _inputs(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=4096), st.text(max_size=2048).map(str.encode), _mutated(seed),
                     st.integers(1000, 20_000).map(lambda n: b"<div>" * n + b"deep" + b"</div>" * n))


_LABELS = (None, "utf-8", "undefined", "utf-16le", "shift_jis", "iso-8859-1")  # what a server may claim


def _html(data: bytes) -> object:
    label = _LABELS[len(data) % len(_LABELS)]
    for ctype in ("text/html", "text/markdown", "text/plain"):
        parse(Fetched(DocRef(BASE + "page"), BASE + "page", content=data, content_type=ctype, encoding=label))
    return None


READERS: dict[str, tuple[Callable[[bytes], object], tuple[type[BaseException], ...]]] = {
    "html": (_html, (ParseError,)),
    "llms": (lambda data: parse_llms_txt(decode(data), BASE), (SourceError,)),
    "sitemap": (lambda data: parse_sitemap(data, BASE), (SourceError,)),
    "urls": (lambda data: parse_url_list(decode(data), BASE), (SourceError,)),
}


def fuzz(name: str, count: int) -> dict[str, Any]:
    reader, expected = READERS[name]
    tally = {"inputs": 0, "parsed": 0, "clear_errors": 0, "crashes": 0}
    crashes: list[dict[str, str]] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_inputs(SEEDS[name]))
    def run(data: bytes) -> None:
        tally["inputs"] += 1
        try:
            reader(data)
            tally["parsed"] += 1
        except expected:
            tally["clear_errors"] += 1
        except Exception as exc:  # a crash: recorded, and the fuzzing goes on
            tally["crashes"] += 1
            if len(crashes) < 5:
                crashes.append({"error": f"{type(exc).__name__}: {exc}"[:300], "input": repr(data[:300])})

    started = time.perf_counter()
    run()
    return {"reader": name, **tally, "seconds": round(time.perf_counter() - started, 1), "examples": crashes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-reader", type=int, default=2500, help="inputs per reader (four readers)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz_inputs.json")
    args = p.parse_args()
    logging.disable(logging.WARNING)  # the readers' warnings about skipped lines are expected here
    rows = [fuzz(name, args.per_reader) for name in READERS]
    print(f"{'reader':<8} {'inputs':>7} {'parsed':>7} {'errors':>7} {'crashes':>8} {'seconds':>8}")
    for row in rows:
        print(f"{row['reader']:<8} {row['inputs']:>7} {row['parsed']:>7} {row['clear_errors']:>7} "
              f"{row['crashes']:>8} {row['seconds']:>8}")
        for example in row["examples"]:
            print(f"  crash: {example['error']}\n    input: {example['input']}")
    total = sum(row["inputs"] for row in rows)
    crashes = sum(row["crashes"] for row in rows)
    print(f"{total} inputs, {crashes} crashes")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"per_reader": args.per_reader, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
