"""Crawling a site from one of its pages, end to end through the CLI: scope, depth, page budget, robots.txt,
misbehaving links (redirects, huge and binary responses) and the flags and refusals a user meets."""

from __future__ import annotations

import html
import json
import logging
import re
import socket
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pytest

from document_it.cli import main
from document_it.testing.docsite import page_path, write_docsite
from document_it.testing.site import SiteServer

FAST = ["--quiet", "--parallelism-mode", "async"]  # threads, no process pool to start
PARTS = {f"/docs/part-{s}/" for s in range(4)}
PART_0 = {"/docs/", "/docs/part-0/", *(f"/{page_path(0, n)}" for n in range(0, 60, 4))}


def _path(url_or_path: str) -> str:
    """A page's site path as a user reads it: '/docs/part-0/index.html' and '/docs/part-0/' are the same page."""
    parts = urlsplit(url_or_path)
    path = "/" + parts.path.lstrip("/")
    path = path[: -len("index.html")] if path.endswith("/index.html") else path
    return path + (f"?{parts.query}" if parts.query else "")


def _run(site: SiteServer, tmp_path: Path, start: str, *flags: str, out: str = "out") -> tuple[int, list[dict], dict]:
    """main() over `start`; (exit code, results.jsonl rows, run.json)."""
    folder = tmp_path / out
    code = main(["--source", site.url(start), "--output-dir", str(folder), *FAST, *flags])
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    return code, rows, json.loads((folder / "run.json").read_text())


def _paths(rows: list[dict]) -> list[str]:
    return [_path(row["url"]) for row in rows]


def _by_path(rows: list[dict]) -> dict[str, dict]:
    return {_path(row["url"]): row for row in rows}


def _write_home(root: Path, *links: str) -> None:
    """index.html at the site root (so the crawl's scope is the whole host) linking `links`, plus ok.html."""
    anchors = " ".join(f'<a href="{html.escape(link)}">link {n}</a>' for n, link in enumerate(links))
    (root / "index.html").write_text("<html><head><title>Home</title></head><body><main><h1>Home</h1>"
                                     f"<p>The home page of a small test site.</p><p>{anchors}</p></main></body></html>")
    (root / "ok.html").write_text("<html><head><title>Fine</title></head><body><main><h1>Fine</h1>"
                                  "<p>A perfectly ordinary page with some words on it.</p></main></body></html>")


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def requested(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The paths the test's SiteServer was asked for, in order (read from its debug log)."""
    caplog.set_level(logging.DEBUG, logger="document_it.testing.site")

    def paths() -> list[str]:
        found = (re.search(r'"GET (\S+) HTTP', r.getMessage()) for r in caplog.records
                 if r.name == "document_it.testing.site")
        return [_path(match.group(1)) for match in found if match]
    return paths


# --- scope, depth, budget -----------------------------------------------------------------------------------

def test_crawl_finds_every_page_once_and_stays_in_scope(site: SiteServer, tmp_path: Path, requested) -> None:
    written = write_docsite(tmp_path, pages=60, sections=4)
    code = main(["--source", site.url("docs/index.html"), "--output-dir", str(tmp_path / "out"), "--quiet"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert code == 0
    paths = _paths(rows)
    assert len(paths) == len(set(paths)) == 65 and set(paths) == {_path(p) for p in written}
    assert all(row["status"] == "completed" and row["title"] for row in rows)
    seen = requested()
    assert set(paths) <= set(seen)  # the request log is read, so the absences below mean something
    assert "/elsewhere/out.html" not in seen and "/docs/logo.png" not in seen
    assert not any("mailto" in p or p.endswith(".png") for p in seen)
    assert run["crawl"]["pages_found"] == 65 and run["crawl"]["start"] == site.url("docs/index.html")
    assert run["queue"]["jobs"]["done"] == 65 and run["documents"]["completed"] == 65


@pytest.mark.parametrize("depth, expected", [("1", {"/docs/", *PARTS}), ("0", {"/docs/"})])
def test_max_depth_limits_how_far_links_are_followed(site: SiteServer, tmp_path: Path, depth, expected) -> None:
    write_docsite(tmp_path)
    code, rows, run = _run(site, tmp_path, "docs/index.html", "--max-depth", depth)
    assert code == 0 and sorted(_paths(rows)) == sorted(expected)
    assert run["crawl"]["max_depth"] == int(depth)


def test_max_pages_caps_the_jobs_of_the_run(site: SiteServer, tmp_path: Path) -> None:
    write_docsite(tmp_path)
    code, rows, run = _run(site, tmp_path, "docs/index.html", "--max-pages", "10")
    jobs = run["queue"]["jobs"]
    assert code == 0 and sum(jobs.values()) == 10 and run["crawl"]["pages_found"] == 10
    assert len(rows) + jobs["skipped"] <= 10 and len(set(_paths(rows))) == len(rows) == jobs["done"]


@pytest.mark.parametrize("flags", [["--include", "/docs/part-0/"], ["--exclude", r"part-[123]"]])
def test_include_and_exclude_narrow_the_crawl(site: SiteServer, tmp_path: Path, requested, flags) -> None:
    write_docsite(tmp_path)
    code, rows, _ = _run(site, tmp_path, "docs/index.html", *flags)
    assert code == 0 and sorted(_paths(rows)) == sorted(PART_0)
    assert not any(re.search(r"part-[123]", p) for p in requested())


# --- robots.txt -----------------------------------------------------------------------------------------------

def test_robots_txt_disallow_for_everyone_is_honoured(site: SiteServer, tmp_path: Path, requested) -> None:
    write_docsite(tmp_path, robots="User-agent: *\nDisallow: /docs/part-1/\n")
    code, rows, run = _run(site, tmp_path, "docs/index.html")
    assert code == 0 and len(rows) == 65 - 16
    assert not any(p.startswith("/docs/part-1/") for p in _paths(rows) + requested())
    assert run["crawl"]["robots_disallowed"] > 0


def test_robots_txt_group_for_document_it_wins_over_star(site: SiteServer, tmp_path: Path, requested) -> None:
    robots = "User-agent: *\nDisallow: /\n\nUser-agent: document-it\nDisallow: /docs/part-2/page-002.html\n"
    write_docsite(tmp_path, robots=robots)
    code, rows, run = _run(site, tmp_path, "docs/index.html")
    assert code == 0 and len(rows) == 64
    assert "/docs/part-2/page-002.html" not in _paths(rows) + requested()
    assert run["crawl"]["robots_disallowed"] == 1


# --- misbehaving links ------------------------------------------------------------------------------------------

def test_redirect_loops_and_long_chains_fail_the_page_not_the_run(site: SiteServer, tmp_path: Path) -> None:
    _write_home(tmp_path, "/_redirect-loop", "/_redirect-chain?n=10", "/_redirect-chain?n=2", "ok.html")
    code, rows, run = _run(site, tmp_path, "index.html")
    pages = _by_path(rows)
    assert code == 3 and len(rows) == 5
    assert "redirect loop" in pages["/_redirect-loop"]["error"]
    assert "too many redirects" in pages["/_redirect-chain?n=10"]["error"]
    assert pages["/_redirect-loop"]["status"] == pages["/_redirect-chain?n=10"]["status"] == "failed"
    assert {p for p, row in pages.items() if row["status"] == "completed"} == {"/", "/_redirect-chain?n=2", "/ok.html"}
    assert run["documents"]["completed"] == 3 and run["documents"]["failed"] == 2


def test_redirect_off_scope_is_not_followed(site: SiteServer, tmp_path: Path) -> None:
    other = socket.socket()  # an off-scope host that records whether anyone knocked
    try:
        other.bind(("127.0.0.2", 0))
    except OSError:
        other.close()
        pytest.skip("127.0.0.2 is not usable here")
    with other:
        other.listen()
        target = f"http://127.0.0.2:{other.getsockname()[1]}/x"
        _write_home(tmp_path, f"/_redirect-to?url={target}", "ok.html")
        code, rows, _ = _run(site, tmp_path, "index.html")
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.accept()  # nobody connected
    page = _by_path(rows)[f"/_redirect-to?url={target}"]
    assert code == 3 and page["status"] == "failed"
    assert "off the crawl's scope" in page["error"] and target in page["error"]
    assert _by_path(rows)["/ok.html"]["status"] == "completed"


def test_a_50_mb_page_fails_as_too_large_with_or_without_content_length(site: SiteServer, tmp_path: Path) -> None:
    streamed, declared = "/_big?bytes=52428800&declare=0", "/_big?bytes=52428800&declare=1"
    _write_home(tmp_path, streamed, declared, "ok.html")
    code, rows, run = _run(site, tmp_path, "index.html")
    pages = _by_path(rows)
    assert code == 3 and run["status"] == "completed"
    for big in (streamed, declared):
        assert pages[big]["status"] == "failed" and "too large" in pages[big]["error"]
    assert pages["/ok.html"]["status"] == "completed"


def test_a_crawled_link_to_binary_content_is_skipped_not_failed(site: SiteServer, tmp_path: Path) -> None:
    _write_home(tmp_path, "/_binary", "ok.html")
    code, rows, run = _run(site, tmp_path, "index.html")
    assert code == 0 and sorted(_paths(rows)) == ["/", "/ok.html"]
    assert run["crawl"]["not_documents"] >= 1 and run["queue"]["jobs"]["skipped"] >= 1


def test_binary_content_listed_in_llms_txt_is_a_failed_page(site: SiteServer, tmp_path: Path) -> None:
    _write_home(tmp_path)
    (tmp_path / "llms.txt").write_text("# Test site\n\n## Pages\n- [Picture](/_binary)\n- [Fine](ok.html)\n")
    code, rows, _ = _run(site, tmp_path, "llms.txt")
    pages = _by_path(rows)
    assert code == 3 and pages["/ok.html"]["status"] == "completed"
    assert pages["/_binary"]["status"] == "failed" and "unsupported content type" in pages["/_binary"]["error"]


# --- flags and refusals -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--include", "--exclude"])
def test_invalid_regex_is_a_one_line_usage_error(site: SiteServer, tmp_path: Path, capsys, flag) -> None:
    _write_home(tmp_path)
    code = main(["--source", site.url("index.html"), "--output-dir", str(tmp_path / "out"), *FAST, flag, "docs/("])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and flag in line and "regular expression" in line


def test_no_queue_with_a_crawl_is_a_one_line_usage_error(site: SiteServer, tmp_path: Path, capsys) -> None:
    _write_home(tmp_path)
    code = main(["--source", site.url("index.html"), "--output-dir", str(tmp_path / "out"), *FAST, "--no-queue"])
    assert code == 2 and "--no-queue" in _one_error_line(capsys.readouterr().err)


def test_loopback_site_is_refused_unless_allowed(site: SiteServer, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("DOCUMENT_IT_ALLOW_PRIVATE")
    write_docsite(tmp_path, pages=8, sections=2)
    argv = ["--source", site.url("docs/index.html"), *FAST]
    code = main([*argv, "--output-dir", str(tmp_path / "refused")])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "--allow-private" in line and "loopback" in line
    assert site.hits == 0
    assert main([*argv, "--output-dir", str(tmp_path / "allowed"), "--allow-private"]) == 0
    assert len((tmp_path / "allowed" / "results.jsonl").read_text().splitlines()) == 11


# --- known bugs ---------------------------------------------------------------------------------------------------

def test_a_page_reached_through_a_redirect_is_analysed_once(site: SiteServer, tmp_path: Path) -> None:
    _write_home(tmp_path, "ok.html", "/_redirect-to?url=/ok.html")
    code, rows, _ = _run(site, tmp_path, "index.html")
    assert code == 0 and [row["title"] for row in rows].count("Fine") == 1


def test_a_rejected_regex_leaves_nothing_to_resume(site: SiteServer, tmp_path: Path, capsys) -> None:
    _write_home(tmp_path)
    assert main(["--source", site.url("index.html"), "--output-dir", str(tmp_path / "out"), *FAST,
                 "--include", "("]) == 2
    capsys.readouterr()
    assert main(["--resume", "--output-dir", str(tmp_path / "out"), *FAST]) == 2
    assert "nothing to resume" in _one_error_line(capsys.readouterr().err)


def test_a_start_page_robots_txt_forbids_is_an_error_not_an_empty_run(site: SiteServer, tmp_path: Path,
                                                                      capsys) -> None:
    _write_home(tmp_path, "ok.html")
    (tmp_path / "robots.txt").write_text("User-agent: *\nDisallow: /\n")
    code = main(["--source", site.url("index.html"), "--output-dir", str(tmp_path / "out"), *FAST])
    assert code == 2
    assert "disallowed by robots.txt" in _one_error_line(capsys.readouterr().err)


def test_pages_only_the_sitemap_lists_are_crawled_too(site: SiteServer, tmp_path: Path) -> None:
    _write_home(tmp_path, "ok.html")
    (tmp_path / "hidden.html").write_text("<html><head><title>Hidden</title></head><body><main><h1>Hidden</h1>"
                                          "<p>Linked from nowhere, listed in the sitemap.</p></main></body></html>")
    (tmp_path / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{site.url('hidden.html')}</loc></url><url><loc>http://127.0.0.2:1/off.html</loc></url></urlset>")

    code, rows, _ = _run(site, tmp_path, "index.html")

    assert code == 0 and sorted(row["title"] for row in rows) == ["Fine", "Hidden", "Home"]
