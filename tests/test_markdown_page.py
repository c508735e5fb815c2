"""A page's content as clean Markdown: code fenced with its language, tables kept, links made absolute,
no navigation; Markdown sources normalised."""

from __future__ import annotations

from pathlib import Path

import lxml.html
import pytest

from document_it.chrome import main_region, strip_chrome
from document_it.markdown_page import html_markdown, normalise_markdown

DOCS = Path("/usr/share/doc")


def _markdown(html: str, url: str = "http://127.0.0.1:8000/docs/library/json.html") -> str:
    root = lxml.html.document_fromstring(html.encode("utf-8"), parser=lxml.html.HTMLParser(encoding="utf-8"))
    strip_chrome(root)
    return html_markdown(main_region(root), url)


SPHINX = """<html><body><div class="related" role="navigation"><a href="../index.html">Previous topic</a></div>
<div class="body" role="main"><h1>json — JSON encoder</h1><p>See <a href="marshal.html">marshal</a> and
<img src="../_images/flow.png" alt="flow">. Sizes up to 2<sup>31</sup>.</p>
<div class="highlight-python3 notranslate"><div class="highlight"><pre><span class="kn">import</span> json


<span class="nb">print</span>(json.dumps([1, 2]))</pre></div></div>
<table class="docutils"><thead><tr><th>JSON</th><th>Python</th></tr></thead>
<tbody><tr><td>object</td><td>dict</td></tr><tr><td>array</td><td>list</td></tr></tbody></table>
<a class="headerlink" href="#x">¶</a></div><div class="footer">© Copyright 2001, Python Software Foundation.</div>
</body></html>"""


def test_code_keeps_its_language_tables_survive_links_are_absolute_and_navigation_is_gone():
    text = _markdown(SPHINX)
    assert text.startswith("# json — JSON encoder\n")
    assert "```python\nimport json\n\n\nprint(json.dumps([1, 2]))\n```" in text  # the code as written
    assert "| JSON | Python |" in text and "| object | dict |" in text
    assert "[marshal](http://127.0.0.1:8000/docs/library/marshal.html)" in text
    assert "![flow](http://127.0.0.1:8000/docs/_images/flow.png)" in text
    assert "2^31" in text
    assert "Previous topic" not in text and "¶" not in text


def test_markdown_sources_are_normalised_and_code_is_left_as_written():
    source = "# Title  \r\n\r\n\r\n\r\nSome text.   \n```python\ndef f():  \n\n\n    pass\n```\n\n\n"
    assert normalise_markdown(source) == "# Title\n\nSome text.\n```python\ndef f():  \n\n\n    pass\n```\n"
    assert normalise_markdown("\n\n  \n") == ""


@pytest.mark.parametrize("page, expect", [
    ("python3.11/html/library/json.html", "```python"),
    ("postgresql-doc-15/html/datatype-numeric.html", "| `smallint` | 2 bytes |"),
])
def test_real_pages_keep_their_code_language_and_tables(page, expect):
    """Debian's Sphinx and DocBook pages, where installed."""
    path = DOCS / page
    if not path.is_file():
        pytest.skip(f"{path} is not installed (apt-get install python3.11-doc postgresql-doc-15)")
    text = _markdown(path.read_bytes().decode("utf-8"), path.as_uri())
    assert expect in text
    assert "Navigation" not in text and "Previous topic" not in text
