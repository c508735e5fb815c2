"""A folder's topics come from its pages' navigation (up links), else from subfolders; the index is named
after the site, not the folder."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from document_it.fetch import FetchLimits
from document_it.models import ROOT_TOPIC
from document_it.navigation import PageNav, nav_topics, read_nav
from document_it.sources import discover

DOCS = Path("/usr/share/doc")


def _docbook(title: str, up: str | None, up_title: str = "") -> str:
    """A DocBook page as PostgreSQL's docs are written: the up link in the navigation header."""
    up_link = f'<a accesskey="u" href="{up}" title="{up_title}">Up</a>' if up else ""
    return (f'<html><head><title>{title}</title></head><body><div class="navheader"><table><tr><td>{up_link}'
            f'</td></tr></table></div><div class="sect1"><h2 class="title">{title}</h2><p>About {title}.</p>'
            "</div></body></html>")


def _flat_site(root: Path) -> None:
    """One folder: a home page, two parts with a chapter each, pages under the chapters, and an index page
    with no up link."""
    pages = {
        "index.html": ("Example 1.0 Documentation", None, ""),
        "tutorial.html": ("Part I. Tutorial", "index.html", "Example 1.0 Documentation"),
        "start.html": ("Chapter 1. Getting Started", "tutorial.html", "Part I. Tutorial"),
        "install.html": ("1.1. Installation", "start.html", "Chapter 1. Getting Started"),
        "first.html": ("1.2. A First Program", "start.html", "Chapter 1. Getting Started"),
        "reference.html": ("Part II. Reference", "index.html", "Example 1.0 Documentation"),
        "commands.html": ("Commands", "reference.html", "Part II. Reference"),
        "cmd-run.html": ("RUN", "commands.html", "Commands"),
        "cmd-stop.html": ("STOP", "commands.html", "Commands"),
        "bookindex.html": ("Index", None, ""),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, (title, up, up_title) in pages.items():
        (root / name).write_text(_docbook(title, up, up_title))


def test_a_flat_folder_is_grouped_by_its_up_links_and_named_after_the_site(tmp_path):
    _flat_site(tmp_path / "html")
    index = discover(str(tmp_path / "html"), FetchLimits())
    topics = {Path(ref.url).name: ref.topic for ref in index.refs}
    assert index.title == "Example 1.0 Documentation"  # the home page's title, not "html"
    assert {name for name, topic in topics.items() if topic == "Part I. Tutorial"} == \
        {"tutorial.html", "start.html", "install.html", "first.html"}
    assert {name for name, topic in topics.items() if topic == "Part II. Reference"} == \
        {"reference.html", "commands.html", "cmd-run.html", "cmd-stop.html"}
    # pages with no up link stay at the top, under the home page's name rather than "(root)"
    assert topics["index.html"] == topics["bookindex.html"] == "Example 1.0 Documentation"


def test_one_part_is_split_at_the_next_level_down():
    home = "file:///s/index.html"
    navs = {home: PageNav("Home"),
            "file:///s/part.html": PageNav("Part I", home),
            "file:///s/a.html": PageNav("Chapter A", "file:///s/part.html"),
            "file:///s/a1.html": PageNav("A.1", "file:///s/a.html"),
            "file:///s/b.html": PageNav("Chapter B", "file:///s/part.html")}
    topics = nav_topics(navs, home)
    assert topics == {"file:///s/part.html": "Part I", "file:///s/a.html": "Chapter A",
                      "file:///s/a1.html": "Chapter A", "file:///s/b.html": "Chapter B"}


def test_a_loop_of_up_links_ends():
    navs = {"file:///s/a.html": PageNav("A", "file:///s/b.html"), "file:///s/b.html": PageNav("B", "file:///s/a.html"),
            "file:///s/c.html": PageNav("C", "file:///s/d.html"), "file:///s/d.html": PageNav("D", "file:///s/x.html")}
    assert set(nav_topics(navs, None)) == set(navs)


def test_the_sphinx_breadcrumb_and_django_up_links_are_read(tmp_path):
    sphinx = tmp_path / "argparse.html"
    sphinx.write_text('<html><head><title>argparse — Python docs</title></head><body><div class="related"><ul>'
                      '<li><a href="../index.html">Docs</a></li><li><a href="allos.html" accesskey="U">Generic '
                      "Operating System Services</a></li></ul></div></body></html>")
    nav = read_nav(sphinx, sphinx.as_uri())
    assert nav == PageNav("argparse — Python docs", (tmp_path / "allos.html").as_uri(),
                          "Generic Operating System Services")
    django = tmp_path / "models.html"
    django.write_text('<html><head><title>Models</title></head><body><div class="nav">'
                      '<a href="../index.html" title="Using Django" accesskey="U">up</a></div></body></html>')
    assert read_nav(django, django.as_uri()).up_title == "Using Django"
    crumbs = tmp_path / "page.html"
    crumbs.write_text('<html><head><title>Page</title></head><body><nav aria-label="Breadcrumb"><ol>'
                      '<li><a href="/">Home</a></li><li><a href="guide/">Guide</a></li></ol></nav></body></html>')
    assert read_nav(crumbs, crumbs.as_uri()).up == (tmp_path / "guide").as_uri() + "/"


def test_markdown_folders_keep_their_subfolder_topics(tmp_path):
    for rel in ("guide/a.md", "guide/b.md", "api/c.md", "top.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# {rel}\n\nSome text.\n")
    index = discover(str(tmp_path), FetchLimits())
    assert {Path(ref.url).name: ref.topic for ref in index.refs} == \
        {"a.md": "guide", "b.md": "guide", "c.md": "api", "top.md": ROOT_TOPIC}
    assert index.title == tmp_path.name  # nothing better to name it by


@pytest.mark.parametrize("folder, site", [
    ("postgresql-doc-15/html", "PostgreSQL"), ("python-django-doc/html", "Django"), ("python3.11/html", "Python"),
])
def test_real_documentation_folders_get_their_sites_topics(folder, site):
    """Debian's doc packages, where installed: several topics, none holding most of the site, named after
    the site."""
    root = DOCS / folder
    if not root.is_dir():
        pytest.skip(f"{root} is not installed (apt-get install python3.11-doc python-django-doc postgresql-doc-15)")
    index = discover(str(root), FetchLimits())
    counts = collections.Counter(ref.topic for ref in index.refs)
    assert site in index.title and index.title != "html"
    assert len(counts) >= 5 and ROOT_TOPIC not in counts
    assert counts.most_common(1)[0][1] < 0.7 * len(index.refs)


def _flat_docbook_site(root: Path, chapters: int = 3, pages: int = 4) -> None:
    """A DocBook-like site in one folder, every page linked from the home page and up to its chapter, its
    <title>s carrying the site's name."""
    root.mkdir(parents=True, exist_ok=True)
    links = []
    for c in range(chapters):
        chapter = f"ch{c}.html"
        links.append(chapter)
        (root / chapter).write_text(_docbook(f"Chapter {c}. Part {c} — Demo Docs", "index.html", "Demo Docs"))
        for p in range(pages):
            name = f"ch{c}-s{p}.html"
            links.append(name)
            (root / name).write_text(_docbook(f"{c}.{p}. Section {p} of {c} — Demo Docs", chapter,
                                              f"Chapter {c}. Part {c}"))
    body = "".join(f'<li><a href="{name}">{name}</a></li>' for name in sorted(links, reverse=True))  # last first
    (root / "index.html").write_text(  # XHTML, as DocBook writes it: an XML prolog and a DOCTYPE before <html>
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 '
        'Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd"><html '
        f'xmlns="http://www.w3.org/1999/xhtml"><head><title>Demo Docs</title></head><body><main><h1>Demo Docs</h1>'
        f"<p>All about the demo.</p><ul>{body}</ul></main></body></html>")
    (root / "urls.txt").write_text("".join(f"{name}\n" for name in ["index.html", *links]))


@pytest.mark.parametrize("start", ["index.html", "urls.txt"])
def test_a_crawled_or_listed_flat_site_gets_topics_from_its_up_links(tmp_path, start):
    """Over real HTTP on loopback: a crawl from the home page, and a URL list, of a site whose URLs are all in
    one folder; topics and the report's title come from the pages' own navigation."""
    import json

    from document_it.cli import main
    from document_it.testing.site import SiteServer

    _flat_docbook_site(tmp_path / "site")
    with SiteServer(tmp_path / "site") as site:
        code = main(["--source", site.url(start), "--output-dir", str(tmp_path / "out"), "--state-dir",
                     str(tmp_path / "state"), "--quiet", "--parallelism-mode", "async", "--allow-private"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    topics = {row["url"].rsplit("/", 1)[-1]: row["topic"] for row in rows}
    assert len(rows) == 16
    for c in range(3):
        assert {name for name, topic in topics.items() if topic == f"Chapter {c}. Part {c}"} == \
            {f"ch{c}.html", *(f"ch{c}-s{p}.html" for p in range(4))}
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("# Demo Docs")
    assert topics["index.html"] == "Demo Docs"  # the home page, which no up link places: the site's name
    # in the order the site gives: a crawl meets the home page's list (last chapter first), a URL list its own
    chapters = [2, 1, 0] if start == "index.html" else [0, 1, 2]
    at = [report.index(f"### Chapter {c}. Part {c}") for c in chapters]
    assert at == sorted(at)


def test_a_flat_folder_without_up_links_is_grouped_by_the_sections_of_its_home_page(tmp_path):
    """git's manual: one folder of man pages with no navigation, its home page listing them under
    headings. Links in running text do not place a page; the list entries do."""
    site = tmp_path / "git-doc"
    site.mkdir()
    groups = {"Main porcelain commands": ["git-add", "git-commit", "git-log"],
              "Interrogation commands": ["git-cat-file", "git-ls-files"]}
    body = ['<h2>DESCRIPTION</h2><p>Git is a version control system; see <a href="git-log.html">git-log(1)</a>.</p>']
    for heading, names in groups.items():
        body.append(f"<h3>{heading}</h3><dl>" + "".join(f'<dt><a href="{n}.html">{n}(1)</a></dt><dd>does {n}</dd>'
                                                         for n in names) + "</dl>")
        for name in names:
            (site / f"{name}.html").write_text(f"<html><head><title>{name}(1)</title></head><body><h1>{name}(1)"
                                               f"</h1><p>The {name} command.</p></body></html>")
    (site / "index.html").write_text("<html><head><title>git(1)</title></head><body><h1>git(1)</h1>"
                                     + "".join(body) + "</body></html>")
    (site / "gitglossary.html").write_text("<html><head><title>gitglossary(7)</title></head><body>"
                                           "<p>Terms.</p></body></html>")
    index = discover(str(site), FetchLimits())
    topics = {Path(ref.url).stem: ref.topic for ref in index.refs}
    assert topics == {"git-add": "Main porcelain commands", "git-commit": "Main porcelain commands",
                      "git-log": "Main porcelain commands", "git-cat-file": "Interrogation commands",
                      "git-ls-files": "Interrogation commands", "index": "git(1)", "gitglossary": "git(1)"}


def test_topics_come_in_the_order_the_home_page_lists_them_and_the_report_keeps_it(tmp_path):
    """The flat DocBook site's home page lists Part II before Part I: the index, run.json and report follow
    the site, not the alphabet."""
    from document_it.cli import main

    _flat_site(tmp_path / "html")
    home = tmp_path / "html" / "index.html"
    home.write_text(home.read_text().replace(
        "</div></body>", '<div class="toc"><dl><dt><a href="reference.html">Part II</a></dt>'
                         '<dt><a href="tutorial.html">Part I</a></dt></dl></div></div></body>'))
    index = discover(str(tmp_path / "html"), FetchLimits())
    assert list(dict.fromkeys(ref.topic for ref in index.refs)) == \
        ["Example 1.0 Documentation", "Part II. Reference", "Part I. Tutorial"]
    assert main(["--source", str(tmp_path / "html"), "--output-dir", str(tmp_path / "out"), "--state-dir",
                 str(tmp_path / "state"), "--quiet"]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.index("### Example 1.0 Documentation") < report.index("### Part II. Reference") \
        < report.index("### Part I. Tutorial")


def test_up_links_skip_the_page_itself_and_its_source(tmp_path):
    """A breadcrumb that ends on the page itself, or on "View page source" (Read the Docs' theme), still
    leads one level up."""
    page = tmp_path / "guide" / "install.html"
    page.parent.mkdir()
    page.write_text('<html><head><title>Install</title></head><body><div role="navigation" aria-label="breadcrumbs">'
                    '<ul><li><a href="../index.html">Docs</a></li><li><a href="index.html">Guide</a></li>'
                    '<li><a href="install.html">Install</a></li>'
                    '<li><a href="../_sources/guide/install.rst.txt">View page source</a></li></ul></div></body></html>')
    nav = read_nav(page, page.as_uri())
    assert (nav.up, nav.up_title) == ((tmp_path / "guide" / "index.html").as_uri(), "Guide")


def test_a_folder_leaves_out_what_is_not_a_page_of_its_own(tmp_path):
    """Generator folders (_static, _sources, _modules), redirect stubs, a 404 page and a Markdown source
    beside its HTML page are not pages; pages in the order the home page lists them, topic by topic."""
    site = tmp_path / "site"
    for rel in ("_static/README.md", "_modules/pkg.html", "_sources/a.rst.txt", ".git/x.html"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("<html><head><title>x</title></head><body><p>generated</p></body></html>")
    (site / "old.html").write_text('<html><head><title>Redirecting...</title><meta http-equiv="refresh" '
                                   'content="0; url=b.html"></head><body><a href="b.html">Redirecting</a></body></html>')
    (site / "404.html").write_text("<html><head><title>404</title></head><body><p>Page not found</p></body></html>")
    for name in ("a", "b", "c"):
        (site / f"{name}.html").write_text(f"<html><head><title>{name.upper()} - Site</title></head><body>"
                                           f"<p>Page {name}.</p></body></html>")
    (site / "a.md").write_text("# A\n\nThe source of a.html.\n")
    (site / "index.html").write_text('<html><head><title>Site Home Page</title></head><body><ul>'
                                     '<li><a href="c.html">C</a></li><li><a href="a.html">A</a></li></ul></body></html>')
    index = discover(str(site), FetchLimits())
    assert [Path(ref.url).name for ref in index.refs] == ["index.html", "c.html", "a.html", "b.html"]
    assert index.title == "Site"


def test_a_contents_page_of_nested_lists_groups_a_flat_folder(tmp_path):
    """SQLite's docs: no up links, a home page with no sections, and a docs.html whose table of contents is
    nested lists under labelled items ("► Programming Interfaces")."""
    site = tmp_path / "sqlite"
    site.mkdir()
    groups = {"Overview Documents": ["about", "features"], "Programming Interfaces": ["cintro", "lang"]}
    items = "".join(f"<li><a onclick='showhide()'>► {label}</a><ul>"
                    + "".join(f"<li><a href='{n}.html'>{n}</a></li>" for n in names) + "</ul></li>"
                    for label, names in groups.items())
    (site / "docs.html").write_text(f"<html><head><title>Documentation</title></head><body><ul>{items}</ul>"
                                    "</body></html>")
    (site / "index.html").write_text("<html><head><title>SQLite Home Page</title></head><body><p>Small. Fast."
                                     "</p></body></html>")
    for names in groups.values():
        for name in names:
            (site / f"{name}.html").write_text(f"<html><head><title>{name}</title></head><body><p>{name}.</p>"
                                               "</body></html>")
    index = discover(str(site), FetchLimits())
    topics = {Path(ref.url).stem: ref.topic for ref in index.refs}
    assert topics == {"about": "Overview Documents", "features": "Overview Documents", "cintro": "Programming "
                      "Interfaces", "lang": "Programming Interfaces", "index": "SQLite", "docs": "SQLite"}
    assert index.title == "SQLite"


def test_pages_come_in_the_reading_order_their_next_links_give(tmp_path):
    """Sphinx and DocBook link each page to the next one (<link rel="next">): that chain from the home page is
    the order a reader meets them, whatever their file names."""
    site = tmp_path / "site"
    site.mkdir()
    chain = ["index", "zeta", "alpha", "mid"]
    for name, after in zip(chain, chain[1:] + [""]):
        nxt = f'<link rel="next" href="{after}.html">' if after else ""
        (site / f"{name}.html").write_text(f"<html><head><title>{name} — Docs</title>{nxt}</head><body>"
                                           f"<p>{name}.</p></body></html>")
    (site / "orphan.html").write_text("<html><head><title>orphan — Docs</title></head><body><p>o.</p></body></html>")
    index = discover(str(site), FetchLimits())
    assert [Path(ref.url).stem for ref in index.refs] == ["index", "zeta", "alpha", "mid", "orphan"]
