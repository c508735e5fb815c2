"""Sitemaps are someone else's XML: no DTD (so no entity bombs, no external entities), bounded nesting and
fan-out. Each test here fails when its defence is removed."""

from __future__ import annotations

import pytest

from document_it.errors import SourceError
from document_it.fetch import FetchLimits
from document_it.sources import discover

LIMITS = FetchLimits(connect_timeout=5, read_timeout=5, max_bytes=1 << 20, allow_private=True)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">""" + b"".join(
    b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)) + b"""]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://x.test/&lol9;</loc></url></urlset>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://x.test/&secret;</loc></url></urlset>"""


def _index(children: list[str]) -> bytes:
    body = "".join(f"<sitemap><loc>{child}</loc></sitemap>" for child in children)
    return f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}' \
           f"</sitemapindex>".encode()


def _urlset(urls: list[str]) -> bytes:
    body = "".join(f"<url><loc>{url}</loc></url>" for url in urls)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'.encode()


@pytest.mark.parametrize("document, reason", [(BILLION_LAUGHS, "declares a DTD"),
                                              (EXTERNAL_ENTITY, "declares a DTD")])
def test_sitemaps_with_a_dtd_are_refused_with_the_reason(tmp_path, site, document, reason):
    (tmp_path / "sitemap.xml").write_bytes(document)
    with pytest.raises(SourceError, match=reason):
        discover(site.url("sitemap.xml"), LIMITS)


def test_sitemap_indexes_nest_at_most_two_levels(tmp_path, site):
    (tmp_path / "sitemap.xml").write_bytes(_index([site.url("level1.xml")]))
    (tmp_path / "level1.xml").write_bytes(_index([site.url("level2.xml")]))
    (tmp_path / "level2.xml").write_bytes(_index([site.url("level3.xml")]))
    (tmp_path / "level3.xml").write_bytes(_urlset([site.url("page.html")]))
    with pytest.raises(SourceError):
        discover(site.url("sitemap.xml"), LIMITS)
    assert site.hits <= 3  # level3.xml is never asked for


def test_a_sitemap_index_is_read_for_at_most_50_children(tmp_path, site):
    children = [site.url(f"child-{i}.xml") for i in range(200)]
    (tmp_path / "sitemap.xml").write_bytes(_index(children))
    for i in range(200):
        (tmp_path / f"child-{i}.xml").write_bytes(_urlset([site.url(f"page-{i}.html")]))
    index = discover(site.url("sitemap.xml"), LIMITS)
    assert len(index.refs) == 50 and site.hits == 51


def test_a_gzipped_sitemap_is_read(tmp_path, site):
    import gzip

    (tmp_path / "sitemap.xml.gz").write_bytes(gzip.compress(_urlset([site.url("a.html"), site.url("b.html")])))
    index = discover(site.url("sitemap.xml.gz"), LIMITS)
    assert [ref.url for ref in index.refs] == [site.url("a.html"), site.url("b.html")]


def test_a_gzipped_sitemap_that_inflates_past_the_cap_is_refused(tmp_path, site):
    import gzip

    bomb = gzip.compress(_urlset([site.url("a.html")]) + b" " * (20 << 20))  # ~20 KB that inflate to 20 MB
    (tmp_path / "sitemap.xml.gz").write_bytes(bomb)
    with pytest.raises(SourceError, match="inflates to more than 1,048,576 bytes"):
        discover(site.url("sitemap.xml.gz"), LIMITS)
    (tmp_path / "cut.xml.gz").write_bytes(gzip.compress(_urlset([site.url("a.html")]))[:-12])
    with pytest.raises(SourceError, match="truncated gzip"):
        discover(site.url("cut.xml.gz"), LIMITS)
