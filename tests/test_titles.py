"""Page titles come from the content's own heading or the <title> without the site's name, never from the
site's header; pages that are not text fail as such."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from document_it.errors import ParseError
from document_it.encoding import not_text
from document_it.models import DocRef, Fetched
from document_it.parse import parse
from document_it.titles import site_name, split_site_name

DOCS = Path("/usr/share/doc")


def _parse(html: str | bytes, url: str = "http://127.0.0.1/docs/page.html"):
    content = html.encode() if isinstance(html, str) else html
    return parse(Fetched(ref=DocRef(url=url), final_url=url, content=content, content_type="text/html", status=200))


# Django's theme: the site's name is the first <h1>, a link home, outside any content container
DJANGO = """<html><head><title>Models &#8212; Django 3.2.25 documentation</title></head><body>
<div id="custom-doc"><div id="hd"><h1><a href="../../index.html">Django 3.2.25 documentation</a></h1>
<div class="nav"><a href="../index.html" title="Using Django" accesskey="U">up</a></div></div>
<div id="bd"><div class="yui-g"><div class="section"><h1>Models<a class="headerlink" href="#m">¶</a></h1>
<p>A model is the single, definitive source of information about your data.</p></div></div></div></div>
</body></html>"""
# Sphinx's classic theme: breadcrumbs on top, the content in div.body[role=main]
SPHINX = """<html><head><title>argparse — Parser for command-line options — Python 3.11 documentation</title>
</head><body><div class="related" role="navigation"><ul><li class="nav-item nav-item-0">
<a href="../index.html">3.11 Documentation</a></li><li class="nav-item nav-item-1">
<a href="allos.html" accesskey="U">Generic Operating System Services</a></li></ul></div>
<div class="body" role="main"><section><h1>argparse — Parser for command-line options</h1>
<p>The argparse module makes it easy to write user-friendly command-line interfaces.</p></section></div>
</body></html>"""
# DocBook (PostgreSQL): no <h1>; the <title> is the page's own, the navheader repeats it
DOCBOOK = """<html><head><title>CREATE TABLE</title><link rel="prev" href="sql-createsubscription.html"/></head>
<body><div class="navheader"><table><tr><th colspan="5">CREATE TABLE</th></tr><tr><td>
<a accesskey="u" href="sql-commands.html" title="SQL Commands">Up</a></td><th>SQL Commands</th></tr></table></div>
<div class="refentry"><div class="refnamediv"><h2><span class="refentrytitle">CREATE TABLE</span></h2>
<p>CREATE TABLE — define a new table</p></div><div class="refsect1"><h2>Description</h2>
<p>CREATE TABLE will create a new, initially empty table in the current database.</p></div></div></body></html>"""
# MkDocs Material: the site's name in the header, the page's heading in .md-content's article
MKDOCS = """<html><head><title>Getting started - My Project</title></head><body>
<header class="md-header"><div class="md-header__title"><h1>My Project</h1></div></header>
<div class="md-container"><main class="md-main"><div class="md-content"><article class="md-content__inner">
<h1 id="getting-started">Getting started</h1><p>Install the package with pip and run it once.</p>
</article></div></main></div></body></html>"""
# no heading in the content: the <title>, without the site's name
BARE = """<html><head><title>Release notes | Example Docs</title></head><body><main>
<p>What changed in each release, newest first.</p></main></body></html>"""


@pytest.mark.parametrize("html, title", [
    (DJANGO, "Models"), (SPHINX, "argparse — Parser for command-line options"), (DOCBOOK, "CREATE TABLE"),
    (MKDOCS, "Getting started"), (BARE, "Release notes"),
])
def test_the_title_is_the_pages_own_never_the_sites_header(html, title):
    assert _parse(html).title == title


def test_a_heading_inside_a_header_mark_in_the_content_is_still_skipped_when_it_links_home():
    html = """<html><head><title>Page</title></head><body><article>
    <div class="brand"><h1>Site name</h1></div><h1>Page heading</h1><p>Text of the page.</p></article></body></html>"""
    assert _parse(html).title == "Page heading"


def test_the_site_name_is_the_suffix_most_titles_share():
    titles = ["Models — Django 3.2 documentation", "Views — Django 3.2 documentation",
              "Django 3.2 documentation", "Forms — Django 3.2 documentation"]
    assert site_name(titles) == "Django 3.2 documentation"
    assert site_name(["CREATE TABLE", "DROP TABLE", "Chapter 5. Data Definition"]) == ""
    assert split_site_name("pg_dump") == ("pg_dump", "")
    assert split_site_name("argparse — Parser — Python 3.11 documentation") == \
        ("argparse — Parser", "Python 3.11 documentation")
    assert split_site_name("— only a suffix") == ("— only a suffix", "")


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20,  # an image named .html
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"1 0 obj\n" * 50,
    b"PK\x03\x04" + b"\x00" * 200,
    b"<html><body>" + b"\x00\x01\x02\x03\xfe\xff" * 500 + b"</body></html>",  # NULs that are not UTF-16
    bytes((i * 7919) % 256 for i in range(20000)),  # noise
])
def test_bytes_that_are_not_text_fail_as_not_a_text_document(data):
    assert not_text(data)
    with pytest.raises(ParseError, match="^not a text document$"):
        _parse(data)


@pytest.mark.parametrize("text, encoding", [
    ("<html><body><h1>Überschrift</h1><p>Grüße aus Köln.</p></body></html>", "utf-16"),  # NULs, but UTF-16
    ("<html><body><h1>Заголовок</h1><p>Привет, мир.</p></body></html>", "cp1251"),
    ("<html><body><h1>見出し</h1><p>日本語の文章です。</p></body></html>", "shift_jis"),
    ("<html><body><p>Escape codes: \x1b[1m bold \x1b[0m and a form feed \x0c.</p></body></html>", "utf-8"),
])
def test_text_in_any_web_encoding_is_text(text, encoding):
    data = text.encode(encoding)
    assert not not_text(data)
    assert _parse(data).text


def _real_titles(folder: Path) -> list[str]:
    titles = []
    for path in sorted(folder.rglob("*.html")):
        try:
            titles.append(_parse(path.read_bytes(), path.as_uri()).title)
        except ParseError:
            continue
    return titles


@pytest.mark.parametrize("folder", ["python3.11/html", "python-django-doc/html", "postgresql-doc-15/html"])
def test_real_documentation_gets_distinct_titles(folder):
    """Debian's doc packages (Sphinx in two themes, DocBook), where installed: 95 % of pages titled apart."""
    root = DOCS / folder
    if not root.is_dir():
        pytest.skip(f"{root} is not installed (apt-get install python3.11-doc python-django-doc postgresql-doc-15)")
    titles = _real_titles(root)
    counts = collections.Counter(titles)
    assert len(titles) > 300
    assert len(counts) >= 0.95 * len(titles), counts.most_common(5)
    assert counts.most_common(1)[0][1] <= 3  # no site header standing in for every page


def test_a_binary_file_named_like_a_page_fails_and_nothing_of_it_reaches_the_report(tmp_path):
    from document_it.cli import main

    site = tmp_path / "docs"
    site.mkdir()
    (site / "guide.md").write_text("# Guide\n\nInstall the package, then run it.\n")
    (site / "logo.html").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    (site / "notes.md").write_bytes(bytes((i * 7919) % 256 for i in range(8000)))
    assert main(["--source", str(site), "--output-dir", str(tmp_path / "out"), "--state-dir",
                 str(tmp_path / "state"), "--quiet"]) == 3  # some pages failed
    import json

    rows = {Path(r["url"]).name: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert rows["guide.md"]["status"] == "completed"
    for name in ("logo.html", "notes.md"):
        assert rows[name]["status"] == "failed" and rows[name]["error"].endswith("not a text document")
        assert rows[name]["analysis"] is None
    for output in ("report.md", "report.html"):
        text = (tmp_path / "out" / output).read_text()
        assert "not a text document" in text and "\ufffd" not in text and "PNG" not in text
