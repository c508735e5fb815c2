"""`--limit N` samples the site: discover(limit=N) spreads N pages over its sections, deterministically."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from document_it.fetch import FetchLimits
from document_it.models import DocRef
from document_it.sampling import sample
from document_it.sources import discover
from document_it.testing.site import SiteServer

FAST = FetchLimits(connect_timeout=2, read_timeout=2, allow_private=True)

# Laid out like the Python 3.11 docs: c-api/ first alphabetically and long, library/ the largest,
# a few one-page sections, and pages at the root (index.html, glossary.html, genindex-*.html ...).
PY_DOCS = {"c-api": 64, "distributing": 1, "distutils": 13, "extending": 7, "faq": 9, "howto": 20,
           "install": 1, "installing": 1, "library": 150, "reference": 11, "tutorial": 17, "using": 7,
           "whatsnew": 21}
PY_ROOT = ["about", "bugs", "contents", "copyright", *(f"genindex-{c}" for c in "ABCDEFGHIJ"), "glossary",
           "index", "license", "py-modindex", "search"]


def _python_docs(root: Path) -> Path:
    for name in PY_ROOT:
        _write(root / f"{name}.html", name)
    for section, count in PY_DOCS.items():
        _write(root / section / "index.html", section)
        for k in range(count - 1):
            _write(root / section / f"a{k:03d}.html", f"{section} {k}")  # sorts before index.html
    return root


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _rel(refs: list[DocRef], root: Path) -> list[str]:
    prefix = root.resolve().as_uri() + "/"
    return [ref.url.removeprefix(prefix) for ref in refs]


def _sections(paths: list[str]) -> Counter[str]:
    return Counter(path.split("/")[0] if "/" in path else "(root)" for path in paths)


# --- a documentation folder ---------------------------------------------------------------

def test_limit_60_on_python_docs_layout_draws_from_every_section(tmp_path: Path) -> None:
    root = _python_docs(tmp_path / "html")
    everything = _rel(discover(str(root)).refs, root)
    assert len(_sections(everything[:60])) <= 2  # the first 60 in order: root pages and c-api/ only

    picked = _rel(discover(str(root), limit=60).refs, root)

    drawn = _sections(picked)
    assert len(picked) == 60
    assert len(drawn) >= 5  # the acceptance check; in fact every one of the 14 is drawn
    assert set(drawn) == set(PY_DOCS) | {"(root)"}
    assert max(drawn.values()) <= 7  # round-robin: 5 or 6 each (the root also has index.html), 1 from 1-page ones
    assert {f"{s}/index.html" for s in PY_DOCS} | {"index.html"} <= set(picked)  # landing pages first
    assert picked == [path for path in everything if path in set(picked)]  # original (sorted) order


def test_limit_1_is_the_root_index_page(tmp_path: Path) -> None:
    root = _python_docs(tmp_path / "html")
    assert _rel(discover(str(root), limit=1).refs, root) == ["index.html"]


def test_same_source_and_limit_give_the_same_pages(tmp_path: Path) -> None:
    root = _python_docs(tmp_path / "one")
    copy = shutil.copytree(root, tmp_path / "elsewhere" / "two")

    runs = [_rel(discover(str(folder), limit=37).refs, folder) for folder in (root, root, copy)]

    assert runs[0] == runs[1] == runs[2]


def test_limit_at_or_above_the_page_count_keeps_every_page_in_order(tmp_path: Path) -> None:
    root = _python_docs(tmp_path / "html")
    everything = discover(str(root)).refs

    for limit in (len(everything), len(everything) + 10):
        assert discover(str(root), limit=limit).refs == everything


def test_a_section_share_is_spaced_evenly_not_the_first_pages(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for k in range(20):
        _write(root / f"p{k:02d}.md", f"page {k}")

    assert _rel(discover(str(root), limit=4).refs, root) == ["p00.md", "p05.md", "p10.md", "p15.md"]


def test_a_one_page_section_leaves_its_share_to_the_others(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    _write(root / "tiny" / "README.md", "tiny")
    for k in range(10):
        _write(root / "big" / f"b{k}.md", "big")

    picked = _rel(discover(str(root), limit=6).refs, root)

    assert _sections(picked) == {"big": 5, "tiny": 1}
    assert "tiny/README.md" in picked


# --- sitemaps and URL lists --------------------------------------------------------------

def _urlset(urls: list[str]) -> str:
    locs = "".join(f"<url><loc>{url}</loc></url>" for url in urls)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'


def test_sitemap_is_sampled_by_sections_below_its_common_prefix(site: SiteServer, tmp_path: Path) -> None:
    paths = (["docs/v2/"]
             + [f"docs/v2/api/core/c{k}.html" for k in range(8)] + ["docs/v2/api/"]
             + [f"docs/v2/api/plugins/p{k}.html" for k in range(8)]
             + [f"docs/v2/blog/{k}.html" for k in range(6)]
             + ["docs/v2/guide/"] + [f"docs/v2/guide/g{k}.html" for k in range(12)])
    _write(tmp_path / "sitemap.xml", _urlset([site.url(p) for p in paths]))

    def listed(limit: int) -> list[str]:
        return [ref.url.removeprefix(site.url("docs/v2/")) for ref in discover(site.url("sitemap.xml"), FAST,
                                                                                limit=limit).refs]

    assert listed(1) == [""]  # the site's root: /docs/v2/
    assert listed(3) == ["", "api/", "blog/0.html"]  # a last partial round reaches groups spread evenly
    assert listed(4) == ["", "api/", "blog/0.html", "guide/"]  # each section's landing page first
    assert listed(10) == ["", "api/core/c0.html", "api/", "api/plugins/p0.html",  # api's share spread over
                          "blog/0.html", "blog/2.html", "blog/4.html",         # its subsections; blog has
                          "guide/", "guide/g0.html", "guide/g6.html"]          # no landing page: spaced


def test_url_list_of_pretty_urls_is_sampled_by_folder(tmp_path: Path) -> None:
    urls = (["https://docs.example.test/"]
            + [f"https://docs.example.test/guide/{name}/" for name in "abcdefgh"]
            + [f"https://docs.example.test/reference/{name}/" for name in "abcdefgh"])
    index = discover(str(_write(tmp_path / "urls.txt", "\n".join(urls))), limit=5)

    assert [ref.url.removeprefix("https://docs.example.test/") for ref in index.refs] == [
        "", "guide/a/", "guide/e/", "reference/a/", "reference/e/"]


# --- llms.txt -------------------------------------------------------------------------------

def test_llms_txt_is_sampled_by_its_sections_even_within_one_folder(tmp_path: Path) -> None:
    sections = {"Start": 6, "Guides": 10, "API": 10, "Optional": 4}
    lines = ["# Lib", ""]
    for name, count in sections.items():
        lines += [f"## {name}", ""] + [f"- [{name} {k}](docs/{name.lower()}-{k}.md)" for k in range(count)]
    index = discover(str(_write(tmp_path / "llms.txt", "\n".join(lines))), limit=10)

    assert Counter(ref.topic for ref in index.refs) == {"Start": 3, "Guides": 2, "API": 3, "Optional": 2}
    assert [ref.title for ref in index.refs][:3] == ["Start 0", "Start 2", "Start 4"]  # spaced evenly
    everything = discover(str(tmp_path / "llms.txt")).refs
    assert index.refs == [ref for ref in everything if ref in index.refs]  # in the index's own order


def test_llms_txt_without_sections_is_sampled_by_folder(tmp_path: Path) -> None:
    lines = ["# Lib", ""] + [f"- [{d}{k}]({d}/{k}.md)" for d in ("a", "b", "c") for k in range(5)]
    index = discover(str(_write(tmp_path / "llms.txt", "\n".join(lines))), limit=3)
    assert [ref.title for ref in index.refs] == ["a0", "b0", "c0"]


# --- sample() on its own -------------------------------------------------------------------

def test_sample_without_a_limit_or_with_too_few_pages_changes_nothing() -> None:
    refs = [DocRef(f"https://x.test/{k}.html") for k in range(3)]
    assert sample(refs, None) == sample(refs, 3) == sample(refs, 9) == refs
