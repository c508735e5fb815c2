"""discover(): llms.txt, sitemaps, URL lists and folders become de-duplicated DocRefs."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from document_it.config import SAMPLE_SOURCE
from document_it.errors import SourceError
from document_it.fetch import FetchLimits
from document_it.models import DocRef
from document_it.sources import discover, parse_llms_txt, parse_sitemap, parse_url_list, topic_for_url
from document_it.testing.site import SiteServer

FAST = FetchLimits(connect_timeout=2, read_timeout=2, allow_private=True)

LLMS = """# Taskq

> A small task queue for Python.

Some free text that is not a link.

## Getting started

- [Install](pages/install.md): how to install it
- [Concepts](pages/concepts.md)
- [Install again](pages/install.md#pip): duplicate of the first

## API

- [Broker](https://docs.example.test/api/broker.html): the broker class
* [Task](/api/task.md "Task page"): the task decorator
- [Mail us](mailto:team@example.test)

## Optional

- [Scaling](pages/scaling.md)
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- llms.txt -------------------------------------------------------------------

def test_parse_llms_txt_convention() -> None:
    index = parse_llms_txt(LLMS, "https://docs.example.test/llms.txt")

    assert index.title == "Taskq"
    assert index.summary == "A small task queue for Python."
    assert [(r.url, r.title, r.topic, r.note) for r in index.refs] == [
        ("https://docs.example.test/pages/install.md", "Install", "Getting started", "how to install it"),
        ("https://docs.example.test/pages/concepts.md", "Concepts", "Getting started", ""),
        ("https://docs.example.test/pages/install.md", "Install again", "Getting started",
         "duplicate of the first"),
        ("https://docs.example.test/api/broker.html", "Broker", "API", "the broker class"),
        ("https://docs.example.test/api/task.md", "Task", "API", "the task decorator"),
        ("https://docs.example.test/pages/scaling.md", "Scaling", "Optional", ""),
    ]


def test_discover_local_llms_txt_resolves_relative_links(tmp_path: Path) -> None:
    index_file = _write(tmp_path / "docs" / "llms.txt", LLMS)

    index = discover(str(index_file))

    base = (tmp_path / "docs").resolve()
    assert index.title == "Taskq"
    assert [r.url for r in index.refs] == [
        (base / "pages" / "install.md").as_uri(),
        (base / "pages" / "concepts.md").as_uri(),
        "https://docs.example.test/api/broker.html",
        # "/api/task.md" is root-relative: the file system's root, outside the index's folder, so left out
        (base / "pages" / "scaling.md").as_uri(),
    ]
    assert [r.topic for r in index.refs] == ["Getting started", "Getting started", "API", "Optional"]
    assert index.refs[0].title == "Install"  # the first of the duplicates wins


def test_discover_llms_txt_over_http_resolves_against_index_url(site: SiteServer, tmp_path: Path) -> None:
    _write(tmp_path / "docs" / "llms.txt", LLMS)

    index = discover(site.url("docs/llms.txt"), FAST)

    assert [r.url for r in index.refs] == [
        site.url("docs/pages/install.md"),
        site.url("docs/pages/concepts.md"),
        "https://docs.example.test/api/broker.html",
        site.url("api/task.md"),
        site.url("docs/pages/scaling.md"),
    ]
    assert index.title == "Taskq"
    assert site.hits == 1  # discovery reads the index only, never the pages


def test_discover_keeps_llms_txt_summary(tmp_path: Path) -> None:
    index = discover(str(_write(tmp_path / "llms.txt", LLMS)))
    assert index.summary == "A small task queue for Python."


def test_llms_txt_with_byte_order_mark_keeps_title(tmp_path: Path) -> None:
    path = tmp_path / "llms.txt"
    path.write_bytes("\ufeff# Taskq\n\n## Docs\n\n- [Intro](intro.md)\n".encode("utf-8"))
    assert discover(str(path)).title == "Taskq"


def test_limit_spreads_over_llms_txt_sections_in_order(tmp_path: Path) -> None:
    index = discover(str(_write(tmp_path / "llms.txt", LLMS)), limit=2)
    assert [r.title for r in index.refs] == ["Install", "Broker"]  # one per section, not the first two


def test_duplicates_differing_by_fragment_or_trailing_slash_are_dropped(tmp_path: Path) -> None:
    text = """# Site
## A
- [One](https://docs.example.test/a/)
- [One again](https://docs.example.test/a#top)
- [Root](https://docs.example.test/)
- [Root again](https://docs.example.test/)
"""
    index = discover(str(_write(tmp_path / "llms.txt", text)))
    assert [r.title for r in index.refs] == ["One", "Root"]


# --- sitemaps -------------------------------------------------------------------

URLSET = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{base}/guide/intro.html</loc><lastmod>2024-01-01</lastmod></url>
  <url><loc> {base}/api/task.html#top </loc></url>
  <url><loc>{base}/index.html</loc></url>
</urlset>
"""


def test_parse_sitemap_urlset() -> None:
    pages, children = parse_sitemap(URLSET.format(base="https://docs.example.test").encode(),
                                    "https://docs.example.test/sitemap.xml")
    assert children == []
    assert pages == [
        DocRef("https://docs.example.test/guide/intro.html", topic="guide"),
        DocRef("https://docs.example.test/api/task.html", topic="api"),
        DocRef("https://docs.example.test/index.html", topic="(root)"),
    ]


def test_discover_sitemap_over_http(site: SiteServer, tmp_path: Path) -> None:
    _write(tmp_path / "sitemap.xml", URLSET.format(base=site.base_url))

    index = discover(site.url("sitemap.xml"), FAST)

    assert [(r.url, r.topic) for r in index.refs] == [
        (site.url("guide/intro.html"), "guide"),
        (site.url("api/task.html"), "api"),
        (site.url("index.html"), "(root)"),
    ]
    assert index.title == urlparse(site.base_url).netloc


def test_discover_sitemap_index_fetches_children(site: SiteServer, tmp_path: Path) -> None:
    ns = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    _write(tmp_path / "sitemap.xml", f"""<?xml version="1.0"?>
<sitemapindex {ns}>
  <sitemap><loc>{site.url("maps/guide.xml")}</loc></sitemap>
  <sitemap><loc>/maps/api.xml</loc></sitemap>
</sitemapindex>""")
    _write(tmp_path / "maps" / "guide.xml",
           f'<urlset {ns}><url><loc>{site.url("guide/a.html")}</loc></url>'
           f'<url><loc>{site.url("guide/b.html")}</loc></url></urlset>')
    _write(tmp_path / "maps" / "api.xml",
           f'<urlset {ns}><url><loc>{site.url("api/x.html")}</loc></url>'
           f'<url><loc>{site.url("guide/a.html")}</loc></url></urlset>')

    index = discover(site.url("sitemap.xml"), FAST)

    assert [r.url for r in index.refs] == [site.url("guide/a.html"), site.url("guide/b.html"),
                                           site.url("api/x.html")]
    assert site.hits == 3


def test_malformed_sitemap_is_a_source_error(site: SiteServer, tmp_path: Path) -> None:
    _write(tmp_path / "sitemap.xml", '<?xml version="1.0"?><urlset><url><loc>/a.html</loc></urlset>')

    with pytest.raises(SourceError, match="not valid XML"):
        discover(site.url("sitemap.xml"), FAST)
    with pytest.raises(SourceError, match="not valid XML"):
        discover(str(tmp_path / "sitemap.xml"))


# --- URL lists ------------------------------------------------------------------

def test_url_list_with_comments_and_blank_lines(tmp_path: Path) -> None:
    text = """# pages to analyse

https://docs.example.test/guide/intro.html
   # indented comment
http://127.0.0.1:9/api/task.html#section

relative/page.md
"""
    index = discover(str(_write(tmp_path / "urls.txt", text)))

    assert [r.url for r in index.refs] == [
        "https://docs.example.test/guide/intro.html",
        "http://127.0.0.1:9/api/task.html",
        (tmp_path / "relative" / "page.md").resolve().as_uri(),
    ]
    assert [r.topic for r in index.refs][:2] == ["guide", "api"]


@pytest.mark.parametrize("bad", ["see the docs page", "mailto:team@example.test", "ftp://127.0.0.1/x"])
def test_bad_url_list_line_names_its_number(bad: str) -> None:
    text = f"# list\nhttps://docs.example.test/a.html\n\n{bad}\n"
    with pytest.raises(SourceError, match=r"line 4\b"):
        parse_url_list(text, "https://docs.example.test/urls.txt")


def test_topic_for_url() -> None:
    assert topic_for_url("https://docs.example.test/guide/deep/page.html") == "guide"
    assert topic_for_url("https://docs.example.test/page.html") == "(root)"
    assert topic_for_url("https://docs.example.test/") == "(root)"
    assert topic_for_url("https://docs.example.test/install/") == "(root)"  # a pretty URL is a page, not a folder
    assert topic_for_url("https://docs.example.test/guide/install/") == "guide"


# --- folders and paths ----------------------------------------------------------

def test_local_folder_of_pages(tmp_path: Path) -> None:
    root = tmp_path / "site"
    _write(root / "index.html", "<p>home</p>")
    _write(root / "guide" / "intro.md", "# Intro")
    _write(root / "guide" / "setup.HTM", "<p>setup</p>")
    _write(root / "api" / "task.markdown", "# Task")
    _write(root / "guide" / "notes.txt", "ignored")
    _write(root / "api" / "schema.json", "{}")
    (root / "logo.png").write_bytes(b"\x89PNG")

    index = discover(str(root))

    got = {(Path(urlparse(r.url).path).relative_to(root.resolve()).as_posix(), r.topic) for r in index.refs}
    assert got == {("index.html", "(root)"), ("guide/intro.md", "guide"), ("guide/setup.HTM", "guide"),
                   ("api/task.markdown", "api")}
    assert all(r.url.startswith("file://") for r in index.refs)
    assert index.title == "site"


def test_empty_folder_is_a_source_error(tmp_path: Path) -> None:
    _write(tmp_path / "readme.txt", "no pages here")
    with pytest.raises(SourceError, match="no pages found"):
        discover(str(tmp_path))


def test_missing_path_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source not found"):
        discover(str(tmp_path / "nope" / "llms.txt"))


def test_a_web_page_as_source_starts_a_crawl_but_a_local_one_is_explained(site: SiteServer, tmp_path: Path) -> None:
    _write(tmp_path / "index.html", "<!doctype html><html><body><a href='a.html'>A</a></body></html>")

    index = discover(site.url("index.html"), FAST)

    assert index.crawl_from == site.url("index.html") and [r.url for r in index.refs] == [index.crawl_from]
    with pytest.raises(SourceError, match="HTML page, not an index") as local:
        discover(str(tmp_path / "index.html"))
    assert "llms.txt" in str(local.value) and "crawl" in str(local.value)


def test_a_web_index_may_not_list_local_files(site: SiteServer, tmp_path: Path) -> None:
    _write(tmp_path / "llms.txt", "# Site\n\n- [Secret](file:///etc/passwd)\n- [Page](page.md)\n")
    _write(tmp_path / "urls.txt", "file:///etc/passwd\npage.md\n")

    assert [r.url for r in discover(site.url("llms.txt"), FAST).refs] == [site.url("page.md")]
    assert [r.url for r in discover(site.url("urls.txt"), FAST).refs] == [site.url("page.md")]


def test_unreachable_url_source_is_a_source_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(SourceError, match=f"cannot read source http://127.0.0.1:{port}/llms.txt"):
        discover(f"http://127.0.0.1:{port}/llms.txt", FAST)


def test_http_error_on_source_is_a_source_error(site: SiteServer) -> None:
    with pytest.raises(SourceError, match="HTTP 404"):
        discover(site.url("llms.txt"), FAST)


@pytest.mark.parametrize("source", ["", "   ", "ftp://127.0.0.1/llms.txt"])
def test_empty_or_unsupported_source(source: str) -> None:
    with pytest.raises(SourceError):
        discover(source)


# --- the bundled sample -----------------------------------------------------------

def test_bundled_sample_index() -> None:
    sections = {line[3:].strip() for line in Path(SAMPLE_SOURCE).read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")}

    index = discover(SAMPLE_SOURCE)

    urls = [r.url for r in index.refs]
    assert len(urls) >= 30
    assert len(set(urls)) == len(urls)
    assert all(u.startswith("file://") for u in urls)
    assert all(Path(urlparse(u).path).is_file() for u in urls)
    assert {r.topic for r in index.refs} <= sections
    assert index.title and index.title != SAMPLE_SOURCE


# --- indexes as people actually write them --------------------------------------------------------

def test_llms_txt_link_variants_people_write(tmp_path):
    text = "\n".join([
        "# Site", "## Docs",
        "- [Intro](intro.html) - dash note",
        "- [Foo (bar)](Foo_(bar).html): parentheses in the URL",
        "- [Title with [brackets]](b.html)",
        "1. [Numbered](n.html)",
        "- https://docs.example.org/bare.html",
        "- [Angle](<a b.html>)",
    ])
    index = parse_llms_txt(text, "https://docs.example.org/")
    urls = [ref.url for ref in index.refs]
    assert urls[:5] == ["https://docs.example.org/intro.html", "https://docs.example.org/Foo_(bar).html",
                        "https://docs.example.org/b.html", "https://docs.example.org/n.html",
                        "https://docs.example.org/bare.html"]
    assert index.refs[0].note == "dash note" and index.refs[2].title == "Title with [brackets]"


def test_sitemap_index_survives_a_missing_child(tmp_path):
    (tmp_path / "a.xml").write_text('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                                    'sitemap/0.9"><url><loc>/docs/a.html</loc></url></urlset>')
    (tmp_path / "index.xml").write_text(
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        '<sitemap><loc>a.xml</loc></sitemap><sitemap><loc>missing.xml</loc></sitemap></sitemapindex>')
    with SiteServer(tmp_path, max_seconds=30) as site:
        refs = discover(site.url("index.xml"), FAST).refs
        assert [r.url for r in refs] == [site.url("docs/a.html")]


def test_sitemap_in_a_declared_legacy_encoding(tmp_path):
    data = ('<?xml version="1.0" encoding="ISO-8859-1"?><urlset xmlns="http://www.sitemaps.org/schemas/'
            'sitemap/0.9"><url><loc>http://127.0.0.1/café.html</loc></url></urlset>').encode("latin-1")
    (tmp_path / "sitemap.xml").write_bytes(data)
    refs = discover(str(tmp_path / "sitemap.xml")).refs
    assert refs[0].url == "http://127.0.0.1/café.html"


def test_a_binary_file_is_not_an_index(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    with pytest.raises(SourceError, match="unsupported content type image/png"):
        discover(str(tmp_path / "x.png"))
    (tmp_path / "blob").write_bytes(b"ELF" + bytes(64))
    with pytest.raises(SourceError, match="is a binary file, not an llms.txt") as caught:
        discover(str(tmp_path / "blob"))
    assert "\\x00" not in str(caught.value)


def test_topics_come_from_below_the_shared_folders(tmp_path):
    (tmp_path / "urls.txt").write_text("http://127.0.0.1/docs/v2/api/a.html\n"
                                       "http://127.0.0.1/docs/v2/guide/b.html\n"
                                       "http://127.0.0.1/docs/v2/index.html\n")
    refs = discover(str(tmp_path / "urls.txt")).refs
    assert [r.topic for r in refs] == ["api", "guide", "(root)"]


def test_folder_url_and_its_index_html_are_one_page(tmp_path):
    (tmp_path / "urls.txt").write_text("http://127.0.0.1/mkdocs/\nhttp://127.0.0.1/mkdocs/index.html\n")
    assert len(discover(str(tmp_path / "urls.txt")).refs) == 1


def test_an_xhtml_start_page_is_a_page_to_crawl_and_an_xml_sitemap_is_a_sitemap():
    """DocBook's pages open with an XML prolog and a DOCTYPE html; they are pages, not sitemaps."""
    from document_it.sources import _is_html, _is_sitemap

    xhtml = (b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 '
             b'Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd"><html '
             b'xmlns="http://www.w3.org/1999/xhtml"><head><title>PostgreSQL</title></head></html>')
    sitemap = b'<?xml version="1.0"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>'
    assert _is_html(xhtml) and not _is_sitemap(xhtml)
    assert _is_sitemap(sitemap) and not _is_html(sitemap)
    assert _is_html(b"<!doctype html><html></html>") and not _is_sitemap(b"<!doctype html><html></html>")
