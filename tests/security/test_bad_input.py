"""Inputs the fuzz pass (benchmarks/fuzz_inputs.py) found crashing a reader: each now ends as a parsed
result without the bad entry, or the reader's own clear error."""

from __future__ import annotations

import pytest

from document_it.errors import SourceError
from document_it.sources import parse_llms_txt, parse_sitemap, parse_url_list

BASE = "https://docs.example.test/"


def test_a_sitemap_loc_that_is_no_url_is_left_out():
    data = (b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            b"<url><loc>https://docs.exam](ple.test/a</loc></url><url><loc>https://docs.example.test/b</loc></url>"
            b"</urlset>")
    pages, children = parse_sitemap(data, BASE)
    assert [page.url for page in pages] == ["https://docs.example.test/b"] and children == []


def test_an_llms_txt_link_that_is_no_url_is_skipped():
    index = parse_llms_txt("# Site\n\n- [Bad](https://a]b/c)\n- [Good](good.html)\n", BASE)
    assert [ref.url for ref in index.refs] == ["https://docs.example.test/good.html"]


def test_a_url_list_line_that_is_no_url_is_a_clear_error():
    with pytest.raises(SourceError, match="line 2 of the URL list is not a URL"):
        parse_url_list("https://docs.example.test/a\nhttps://d]cs.example.test/b\n", BASE)
