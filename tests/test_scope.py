"""url_key / clean_url / is_page_link / Scope: which links a crawl follows and how they are de-duplicated."""

from __future__ import annotations

import pickle

import pytest

from document_it.errors import ConfigError
from document_it.scope import Scope, clean_url, is_page_link, url_key


@pytest.mark.parametrize("url, key", [
    ("https://docs.example.org/guide#install", "https://docs.example.org/guide"),
    ("HTTPS://Docs.Example.ORG/Guide", "https://docs.example.org/Guide"),        # path case is kept
    ("http://example.org:80/a", "http://example.org/a"),
    ("https://example.org:443/a", "https://example.org/a"),
    ("http://example.org:443/a", "http://example.org:443/a"),                     # not http's default
    ("https://example.org:8443/a", "https://example.org:8443/a"),
    ("http://[::1]:80/a", "http://[::1]/a"),
    ("https://example.org/docs/", "https://example.org/docs"),
    ("https://example.org/docs//", "https://example.org/docs"),
    ("https://example.org/docs/index.html", "https://example.org/docs"),
    ("https://example.org/docs/index.htm", "https://example.org/docs"),
    ("https://example.org/docs/index.html#top", "https://example.org/docs"),
    ("https://example.org/index.html", "https://example.org/"),
    ("https://example.org/docs/reindex.html", "https://example.org/docs/reindex.html"),
    ("https://example.org", "https://example.org/"),
    ("https://example.org/", "https://example.org/"),
    ("https://example.org?b=2&a=1", "https://example.org/?a=1&b=2"),
    ("https://example.org/s?q=x&page=2&q=a", "https://example.org/s?page=2&q=a&q=x"),
    ("https://example.org/s?b=&a", "https://example.org/s?a&b="),                  # blank values kept
    ("https://example.org/a%2Fb?x=%41", "https://example.org/a%2Fb?x=%41"),        # encoding untouched
])
def test_url_key_normalises(url, key):
    assert url_key(url) == key


def test_url_key_makes_variants_of_one_page_equal():
    variants = ["https://Example.org:443/docs/", "https://example.org/docs", "https://example.org/docs/index.html",
                "https://example.org/docs#intro"]
    assert len({url_key(u) for u in variants}) == 1


@pytest.mark.parametrize("url, clean", [
    ("HTTPS://Example.ORG:443/docs/#x", "https://example.org/docs/"),               # trailing slash kept
    ("https://example.org/docs", "https://example.org/docs"),
    ("https://example.org/docs/index.html", "https://example.org/docs/index.html"),  # no index rewrite
    ("http://example.org:80", "http://example.org/"),
    ("http://example.org/s?z=1&a=2#frag", "http://example.org/s?a=2&z=1"),
])
def test_clean_url_keeps_what_a_server_may_distinguish(url, clean):
    assert clean_url(url) == clean


@pytest.mark.parametrize("url", [
    "https://example.org/docs/", "https://example.org/docs/guide", "https://example.org/a.html",
    "https://example.org/a.htm", "https://example.org/README.md", "https://example.org/notes.txt",
    "https://example.org/api.rst", "https://example.org/download.php?file=x.zip", "/docs/relative.html",
])
def test_documents_are_page_links(url):
    assert is_page_link(url)


@pytest.mark.parametrize("url", [
    "https://example.org/logo.PNG", "https://example.org/a.jpg", "https://example.org/icon.svg",
    "https://example.org/demo.mp4", "https://example.org/pkg-1.0.tar.gz", "https://example.org/x-1.0-py3-none-any.whl",
    "https://example.org/setup.exe", "https://example.org/font.woff2", "https://example.org/site.css",
    "https://example.org/app.js?v=3", "https://example.org/app.js.map", "https://example.org/openapi.json",
    "https://example.org/data.csv", "https://example.org/manual.pdf", "https://example.org/slides.pptx",
    "mailto:team@example.org", "javascript:void(0)", "tel:+4412345", "data:text/html,hi",
    "ftp://example.org/readme.txt", "file:///tmp/readme.md", "http://[::1",
])
def test_non_documents_are_not_page_links(url):
    assert not is_page_link(url)


@pytest.mark.parametrize("start, prefix", [
    ("https://example.org/docs/guide/", "/docs/guide/"),
    ("https://example.org/docs/index.html", "/docs/"),
    ("https://example.org/docs/guide", "/docs/guide/"),
    ("https://example.org/docs/guide#top", "/docs/guide/"),
    ("https://example.org/", "/"),
    ("https://example.org", "/"),
])
def test_prefix_is_the_start_folder(start, prefix):
    assert Scope.from_start(start).prefix == prefix


SITE = "http://127.0.0.1:8123/docs/"


@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:8123/docs/", True),
    ("http://127.0.0.1:8123/docs", True),                       # the prefix folder itself
    ("http://127.0.0.1:8123/docs/guide/install.html", True),
    ("http://127.0.0.1:8123/docs/a.html#frag", True),
    ("HTTP://127.0.0.1:8123/docs/a.html", True),
    ("http://127.0.0.1:8123/blog/post", False),                 # outside the prefix
    ("http://127.0.0.1:8123/docsearch", False),                 # shares letters, not the folder
    ("http://127.0.0.1:8123/", False),
    ("http://127.0.0.1:9000/docs/a.html", False),               # other port: other site
    ("http://127.0.0.1/docs/a.html", False),
    ("http://localhost:8123/docs/a.html", False),
])
def test_same_host_must_stay_under_the_prefix(url, allowed):
    assert Scope.from_start(SITE).allows(url) is allowed


def test_default_port_is_the_same_site():
    scope = Scope.from_start("https://Docs.Example.org/guide/")
    assert scope.allows("https://docs.example.org:443/guide/a")
    assert not scope.allows("https://docs.example.org:8443/guide/a")


@pytest.mark.parametrize("url", ["mailto:a@example.org", "ftp://127.0.0.1:8123/docs/a", "javascript:alert(1)",
                                 "file:///docs/a.html", "/docs/relative", "http://[::1"])
def test_non_http_urls_are_refused(url):
    assert not Scope.from_start(SITE).allows(url)


@pytest.mark.parametrize("domain", ["example.org", "EXAMPLE.org", "https://example.org:8443", "example.org."])
def test_allowed_domain_admits_itself_and_its_subdomains_on_any_path(domain):
    scope = Scope.from_start(SITE, allow_domains=[domain])
    assert scope.allows("https://example.org/anything")
    assert scope.allows("https://docs.example.org/blog/post")
    assert scope.allows("http://a.b.example.org:8080/x")
    assert not scope.allows("https://badexample.org/")
    assert not scope.allows("https://example.org.evil.test/")
    assert not scope.allows("http://127.0.0.1:8123/blog/")     # the start host keeps its prefix


def test_include_replaces_the_prefix_rule():
    scope = Scope.from_start(SITE, include=[r"/api/", r"/guide/"])
    assert scope.allows("http://127.0.0.1:8123/api/v1.html")
    assert scope.allows("http://127.0.0.1:8123/docs/guide/x")
    assert not scope.allows("http://127.0.0.1:8123/docs/other")
    assert not scope.allows("http://other.test/api/v1.html")   # include does not widen the hosts


def test_exclude_takes_urls_out():
    scope = Scope.from_start(SITE, allow_domains=["example.org"], exclude=[r"/changelog", r"\?print=1"])
    assert scope.allows("http://127.0.0.1:8123/docs/a")
    assert not scope.allows("http://127.0.0.1:8123/docs/changelog/2024")
    assert not scope.allows("http://127.0.0.1:8123/docs/a?print=1")
    assert not scope.allows("https://example.org/changelog")


def test_exclude_beats_include():
    scope = Scope.from_start(SITE, include=[r"/api/"], exclude=[r"/internal/"])
    assert scope.allows("http://127.0.0.1:8123/api/public")
    assert not scope.allows("http://127.0.0.1:8123/api/internal/x")


@pytest.mark.parametrize("flag, kwargs", [("--include", {"include": ["ok", "a("]}),
                                          ("--exclude", {"exclude": ["[z-a]"]})])
def test_invalid_regex_names_the_flag(flag, kwargs):
    with pytest.raises(ConfigError) as caught:
        Scope.from_start(SITE, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{flag} '")
    assert "is not a valid regular expression" in message
    assert "\n" not in message


def test_invalid_include_message_reads_as_one_line():
    with pytest.raises(ConfigError, match=r"^--include 'a\(' is not a valid regular expression: "
                                          r"missing \), unterminated subpattern$"):
        Scope.from_start(SITE, include=["a("])


@pytest.mark.parametrize("domain", ["", "   ", "https://"])
def test_empty_allowed_domain_is_a_config_error(domain):
    with pytest.raises(ConfigError, match="--allow-domain"):
        Scope.from_start(SITE, allow_domains=[domain])


@pytest.mark.parametrize("start", ["ftp://example.org/", "/docs/", "http://[::1"])
def test_start_must_be_a_web_url(start):
    with pytest.raises(ConfigError, match="start URL"):
        Scope.from_start(start)


def test_describe_is_one_line():
    scope = Scope.from_start(SITE, allow_domains=["Example.org"], include=["a", "b"], exclude=["c"])
    assert scope.describe() == "127.0.0.1:8123/docs/ (+ example.org; include 2, exclude 1 patterns)"
    assert Scope.from_start(SITE).describe() == "127.0.0.1:8123/docs/"


def test_scope_pickles_for_worker_processes():
    scope = Scope.from_start(SITE, allow_domains=["example.org"], include=["/docs/"], exclude=["x"])
    copy = pickle.loads(pickle.dumps(scope))
    assert copy == scope
    assert copy.allows("http://127.0.0.1:8123/docs/a") and not copy.allows("http://127.0.0.1:8123/docs/x")


@pytest.mark.parametrize("url", [
    "https://d.org/_sources/index.rst.txt", "https://d.org/en/latest/_static/basic.html",
    "https://d.org/genindex.html", "https://d.org/en/search.html", "https://d.org/py-modindex.html",
])
def test_generator_by_products_are_not_pages(url):
    assert not is_page_link(url)


def test_ordinary_pages_with_similar_names_still_are():
    assert is_page_link("https://d.org/guide/searching.html") and is_page_link("https://d.org/sources/intro.html")
