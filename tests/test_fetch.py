"""fetch(): real HTTP over 127.0.0.1 (SiteServer) and real files; failures land on Fetched.error."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from document_it import fetch as fetch_module
from document_it.fetch import INDEX_TYPES, PAGE_TYPES, FetchLimits, fetch, kind_of
from document_it.models import DocRef
from document_it.testing.site import SiteServer, _Handler

HTML = "<html><head><title>Guide</title></head><body><p>Hello café</p></body></html>"
FAST = FetchLimits(connect_timeout=2, read_timeout=2, allow_private=True)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_html_page_with_charset_header(site: SiteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_Handler.extensions_map, ".html", "text/html; charset=iso-8859-1")
    (tmp_path / "guide.html").write_bytes(HTML.encode("latin-1"))

    got = fetch(DocRef(site.url("guide.html"), topic="guides"), FAST)

    assert got.ok and got.error is None
    assert got.status == 200
    assert got.content == HTML.encode("latin-1")
    assert got.content_type == "text/html"
    assert got.encoding == "iso-8859-1"
    assert got.final_url == site.url("guide.html")
    assert got.ref.topic == "guides"
    assert got.seconds > 0


def test_markdown_served_as_text_markdown(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "intro.md").write_text("# Intro\n\nSome *text*.\n", encoding="utf-8")

    got = fetch(DocRef(site.url("intro.md")), FAST)

    assert got.ok
    assert got.content_type == "text/markdown"
    assert got.content == b"# Intro\n\nSome *text*.\n"


def test_redirect_is_followed_and_final_url_recorded(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text(HTML, encoding="utf-8")

    got = fetch(DocRef(site.url("docs")), FAST)  # the server answers 301 -> /docs/

    assert got.ok
    assert got.final_url == site.url("docs/")
    assert b"Hello" in got.content


def test_404_is_an_error_not_an_exception(site: SiteServer) -> None:
    got = fetch(DocRef(site.url("missing.html")), FAST)

    assert not got.ok
    assert got.status == 404
    assert got.error.startswith("HTTP 404")
    assert got.content == b""


def test_server_error_status_is_reported(site: SiteServer) -> None:
    got = fetch(DocRef(site.url("_status?code=503")), FAST)

    assert got.status == 503
    assert got.error.startswith("HTTP 503")


def test_binary_content_type_is_rejected(site: SiteServer) -> None:
    got = fetch(DocRef(site.url("_binary")), FAST)

    assert not got.ok
    assert got.error == "unsupported content type image/png"
    assert got.content == b""


def test_xml_is_rejected_for_pages_but_allowed_for_indexes(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "sitemap.xml").write_text("<urlset/>", encoding="utf-8")

    assert fetch(DocRef(site.url("sitemap.xml")), FAST).error == "unsupported content type application/xml"
    index = fetch(DocRef(site.url("sitemap.xml")), FetchLimits(2, 2, allowed_types=INDEX_TYPES, allow_private=True))
    assert index.ok and index.content == b"<urlset/>"


def test_too_large_by_declared_length(site: SiteServer) -> None:
    limits = FetchLimits(connect_timeout=2, read_timeout=2, max_bytes=10_000, allow_private=True)

    got = fetch(DocRef(site.url("_big?bytes=200000&declare=1")), limits)

    assert not got.ok
    assert "too large" in got.error and "10,000" in got.error
    assert got.content == b""


def test_too_large_while_streaming_without_length(site: SiteServer) -> None:
    limits = FetchLimits(connect_timeout=2, read_timeout=2, max_bytes=10_000, allow_private=True)

    got = fetch(DocRef(site.url("_big?bytes=300000&declare=0")), limits)

    assert not got.ok
    assert "too large" in got.error
    assert got.content == b""


def test_body_under_the_cap_is_read_whole_without_length(site: SiteServer) -> None:
    got = fetch(DocRef(site.url("_big?bytes=5135&declare=0")), FAST)  # 5 blocks of 1027 bytes

    assert got.ok
    assert len(got.content) == 5 * 1027
    assert got.content.startswith(b"<p>xxx")


def test_redirect_loop_is_caught(site: SiteServer) -> None:
    limits = FetchLimits(connect_timeout=2, read_timeout=2, max_redirects=3, allow_private=True)

    got = fetch(DocRef(site.url("_redirect-loop")), limits)

    assert not got.ok
    assert got.error.startswith("redirect loop at ") and got.error.endswith("/_redirect-loop")
    assert site.hits == 1


def test_a_long_redirect_chain_is_capped(site: SiteServer) -> None:
    limits = FetchLimits(connect_timeout=2, read_timeout=2, max_redirects=3, allow_private=True)

    got = fetch(DocRef(site.url("_redirect-chain?n=10")), limits)

    assert got.error == "too many redirects (more than 3)"
    assert site.hits == 3 + 1


def test_slow_server_times_out(site: SiteServer) -> None:
    limits = FetchLimits(connect_timeout=1, read_timeout=0.5, allow_private=True)

    got = fetch(DocRef(site.url("_slow?seconds=3")), limits)

    assert not got.ok
    assert "timed out" in got.error
    assert "read 0.5s" in got.error


def test_connection_refused_on_closed_port() -> None:
    port = _closed_port()

    got = fetch(DocRef(f"http://127.0.0.1:{port}/page.html"), FAST)

    assert not got.ok
    assert got.error.startswith("connection failed")
    assert got.status is None


def test_file_url_is_read(tmp_path: Path) -> None:
    page = tmp_path / "my page.md"
    page.write_text("# Local\n\nFrom disk.\n", encoding="utf-8")

    got = fetch(DocRef(page.as_uri()))

    assert got.ok
    assert got.content == b"# Local\n\nFrom disk.\n"
    assert got.content_type == "text/markdown"


def test_missing_file_url_is_an_error(tmp_path: Path) -> None:
    got = fetch(DocRef((tmp_path / "gone.html").as_uri()))

    assert not got.ok
    assert got.error == "file not found: gone.html"


def test_file_url_limits_apply(tmp_path: Path) -> None:
    (tmp_path / "big.html").write_bytes(b"<p>" + b"x" * 5000 + b"</p>")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    assert "too large" in fetch(DocRef((tmp_path / "big.html").as_uri()), FetchLimits(max_bytes=1000)).error
    assert fetch(DocRef((tmp_path / "logo.png").as_uri())).error == "unsupported content type image/png"


def test_unsupported_scheme_is_not_contacted(site: SiteServer) -> None:
    port = site.base_url.rsplit(":", 1)[1]

    got = fetch(DocRef(f"ftp://127.0.0.1:{port}/x"), FAST)

    assert not got.ok
    assert got.error == "unsupported URL scheme 'ftp'"
    assert site.hits == 0


def test_one_session_per_thread(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(HTML, encoding="utf-8")
    assert fetch(DocRef(site.url("a.html")), FAST).ok
    first = fetch_module._session(True)
    assert fetch(DocRef(site.url("a.html")), FAST).ok
    assert fetch_module._session(True) is first

    seen: list[object] = []

    def other_thread() -> None:
        assert fetch(DocRef(site.url("a.html")), FAST).ok
        seen.append(fetch_module._session(True))

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join(5)
    assert len(seen) == 1 and seen[0] is not first
    assert site.hits == 3


@pytest.mark.parametrize(("header", "url", "expected"), [
    ("text/html; charset=utf-8", "http://127.0.0.1/a", "text/html"),
    ("TEXT/Markdown", "http://127.0.0.1/a", "text/markdown"),
    ("application/octet-stream", "http://127.0.0.1/a.md", "text/markdown"),
    ("", "file:///tmp/page.htm", "text/html"),
    ("", "file:///tmp/notes.txt", "text/plain"),
    ("", "http://127.0.0.1/sitemap.xml", "application/xml"),
])
def test_kind_of(header: str, url: str, expected: str) -> None:
    assert kind_of(header, url) == expected


def test_page_types_exclude_xml() -> None:
    assert "application/xml" not in PAGE_TYPES
    assert PAGE_TYPES < INDEX_TYPES


def test_conditional_get_with_an_etag_comes_back_304_when_unchanged(site: SiteServer) -> None:
    first = fetch(DocRef(site.url("_etag?v=7")), FAST)
    assert first.ok and first.validators["ETag"] == '"7"' and first.content

    same = fetch(DocRef(site.url("_etag?v=7")), FAST, validators=first.validators)
    moved = fetch(DocRef(site.url("_etag?v=8")), FAST, validators=first.validators)

    assert same.ok and same.status == 304 and same.content == b""
    assert moved.status == 200 and b"Version" in moved.content


def test_conditional_get_with_last_modified(site: SiteServer, tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(HTML, encoding="utf-8")
    first = fetch(DocRef(site.url("a.html")), FAST)
    assert first.validators.get("Last-Modified")

    again = fetch(DocRef(site.url("a.html")), FAST, validators={"Last-Modified": first.validators["Last-Modified"]})

    assert again.status == 304 and again.ok


def test_a_redirect_the_caller_refuses_is_not_followed(site: SiteServer) -> None:
    got = fetch(DocRef(site.url("_redirect-to?url=/elsewhere.html")), FAST,
                redirect_check=lambda url: "off the crawl's scope" if "elsewhere" in url else None)

    assert got.error.endswith("/elsewhere.html: off the crawl's scope") and site.hits == 1


def test_loopback_is_refused_unless_allowed(site: SiteServer) -> None:
    got = fetch(DocRef(site.url("a.html")), FetchLimits(connect_timeout=2, read_timeout=2))

    assert "loopback" in got.error and "--allow-private" in got.error and site.hits == 0


def test_every_redirect_hop_is_checked_again(site: SiteServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The address check runs per hop: here it passes the first and refuses where the redirect points."""
    calls = []

    def only_first(url: str, allow_private: bool) -> str | None:
        calls.append(url)
        return None if len(calls) == 1 else f"refused {url}: loopback"

    monkeypatch.setattr(fetch_module, "check_url", only_first)
    got = fetch(DocRef(site.url("_redirect-to?url=/a.html")), FAST)
    assert got.error.startswith("refused ") and calls[1].endswith("/a.html") and site.hits == 1


def test_a_name_that_resolves_to_loopback_at_connect_time_is_refused(site: SiteServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the up-front check saw a public address, the connection would reach loopback."""
    monkeypatch.setattr(fetch_module, "check_url", lambda url, allow_private: None)  # the check was fooled

    got = fetch(DocRef(site.url("a.html").replace("127.0.0.1", "localhost")),
                FetchLimits(connect_timeout=2, read_timeout=2))

    assert got.error.startswith("refused ") and "localhost resolves to" in got.error and "loopback" in got.error
    assert site.hits == 0
