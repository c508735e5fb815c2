"""parse(): a pure function from Fetched bytes to structured text, links, code and chunks."""

from __future__ import annotations

import pickle

import pytest

from document_it.errors import ParseError
from document_it.models import Chunk, CodeBlock, DocRef, Fetched, Link, ParsedDoc, Section
from document_it.parse import chunk_text, parse
from document_it.tokens import estimate_tokens

BASE = "https://docs.example.test/guide/start.html"  # never contacted: parse does no I/O


def _fetched(body: str | bytes, content_type: str = "text/html", url: str = BASE,
             encoding: str | None = None, topic: str = "guide") -> Fetched:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return Fetched(DocRef(url, title="Ref title", topic=topic), url, content=data,
                   content_type=content_type, encoding=encoding, status=200)


PAGE = """<!doctype html>
<html><head><title>Getting started</title>
<style>.hidden { color: red }</style>
<script>var trackingSecret = 1;</script>
</head>
<body>
<header><p>Site banner text</p></header>
<nav><a href="/nav-only.html">Navigation link</a> Menu words</nav>
<main>
  <h1>Start here</h1>
  <p>Install the <a href="../install.html#step-1">package</a> first.</p>
  <p>Then read <a href="/reference/api.html">the API</a> and
     <a href="../install.html">install again</a>.</p>
  <aside>Sidebar advert</aside>
  <h2>Configure</h2>
  <p>Set the <code>WORKERS</code> variable.</p>
  <pre><code class="language-python">import tasks
tasks.run()</code></pre>
  <ul><li>First point</li><li>Second point with <a href="javascript:void(0)">js</a>
      <a href="mailto:team@example.test">mail</a> <a href="#configure">anchor</a></li></ul>
  <h3>Advanced</h3>
  <p>Fine tuning.</p>
  <pre class="lang-bash">tasks --workers 4</pre>
  <noscript>Enable JavaScript</noscript>
</main>
<footer><p>Copyright footer</p></footer>
</body></html>
"""


@pytest.fixture(scope="module")
def page() -> ParsedDoc:
    return parse(_fetched(PAGE))


def test_html_title_topic_and_format(page: ParsedDoc) -> None:
    assert page.title == "Start here"  # the main region's h1 beats the <title> tag
    assert page.topic == "guide"
    assert page.url == BASE
    assert page.fmt == "html"


def test_html_headings_and_sections(page: ParsedDoc) -> None:
    assert page.headings == ("Start here", "Configure", "Advanced")
    assert [(s.heading, s.level) for s in page.sections] == [("Start here", 1), ("Configure", 2), ("Advanced", 3)]
    assert page.sections[0].text == "Install the package first.\nThen read the API and install again."
    assert "Set the WORKERS variable." in page.sections[1].text
    assert "First point" in page.sections[1].text
    assert page.sections[2].text.startswith("Fine tuning.")


def test_main_text_excludes_page_chrome(page: ParsedDoc) -> None:
    for unwanted in ("Site banner", "Navigation link", "Menu words", "Sidebar advert", "Copyright footer",
                     "trackingSecret", "color: red", "Enable JavaScript"):
        assert unwanted not in page.text
    assert "Install the package first." in page.text
    assert "Fine tuning." in page.text
    assert page.tokens == estimate_tokens(page.text)


def test_links_are_absolute_deduplicated_and_filtered(page: ParsedDoc) -> None:
    assert page.links == (
        Link("https://docs.example.test/install.html", "package"),
        Link("https://docs.example.test/reference/api.html", "the API"),
    )


def test_code_blocks_with_language(page: ParsedDoc) -> None:
    assert page.code_blocks == (
        CodeBlock("import tasks\ntasks.run()", "python"),
        CodeBlock("tasks --workers 4", "bash"),
    )
    assert "import tasks\ntasks.run()" in page.text


def test_header_inside_article_is_kept() -> None:
    html = """<html><body>
    <header>Global site header</header>
    <article><header><h1>Article title</h1><p>By the docs team</p></header>
    <p>Article body.</p></article>
    <footer>Global footer</footer></body></html>"""

    doc = parse(_fetched(html))

    assert doc.headings == ("Article title",)
    assert "By the docs team" in doc.text
    assert "Article body." in doc.text
    assert "Global site header" not in doc.text
    assert "Global footer" not in doc.text


def test_title_falls_back_to_title_tag_then_first_h1() -> None:
    with_tag = parse(_fetched("<html><head><title>Tab title</title></head><body><p>Body.</p></body></html>"))
    assert with_tag.title == "Tab title"
    doc = parse(_fetched("<html><body><h1>Only heading</h1><p>Body.</p></body></html>"))
    assert doc.title == "Only heading"


def test_markdown_page() -> None:
    md = """# Retries

Tasks retry on failure. See [backoff](backoff.md#jitter) and [home](/index.md).

## Example

```python
@task(retries=3)
def send(): ...
```

Plain [again](./backoff.md).
"""
    doc = parse(_fetched(md, "text/markdown", url="http://127.0.0.1:8000/docs/retries.md"))

    assert doc.fmt == "markdown"
    assert doc.title == "Retries"
    assert doc.headings == ("Retries", "Example")
    assert doc.links == (
        Link("http://127.0.0.1:8000/docs/backoff.md", "backoff"),
        Link("http://127.0.0.1:8000/index.md", "home"),
    )
    assert doc.code_blocks == (CodeBlock("@task(retries=3)\ndef send(): ...", "python"),)
    assert "Tasks retry on failure." in doc.text
    assert "```" not in doc.text and "#" not in doc.text.split("\n")[0]


def test_markdown_served_as_text_plain_with_md_path() -> None:
    doc = parse(_fetched("# Title\n\nBody with [link](other.md).\n", "text/plain",
                         url="file:///srv/docs/page.md"))
    assert doc.fmt == "markdown"
    assert doc.headings == ("Title",)
    assert doc.links == (Link("file:///srv/docs/other.md", "link"),)


def test_plain_text_page() -> None:
    text = "First paragraph line one\nline two.\n\n\nSecond paragraph <b>not html</b>.\n"
    doc = parse(_fetched(text, "text/plain", url="http://127.0.0.1/notes.txt"))

    assert doc.fmt == "text"
    assert doc.text == "First paragraph line one line two.\nSecond paragraph <b>not html</b>."
    assert doc.headings == ()
    assert doc.title == "Ref title"


def test_latin1_page_with_declared_charset_decodes() -> None:
    body = "<html><head><title>Le café</title></head><body><p>Un café crème.</p></body></html>"
    doc = parse(_fetched(body.encode("iso-8859-1"), encoding="iso-8859-1"))

    assert doc.title == "Le café"
    assert "Un café crème." in doc.text


def test_meta_charset_is_honoured() -> None:
    body = '<html><head><meta charset="iso-8859-1"></head><body><p>Déjà vu.</p></body></html>'
    assert "Déjà vu." in parse(_fetched(body.encode("iso-8859-1"))).text


def test_utf8_page_without_any_charset_decodes() -> None:
    body = "<html><head><title>Menu</title></head><body><p>Un café crème.</p></body></html>"
    assert "Un café crème." in parse(_fetched(body.encode("utf-8"))).text


def test_latin1_markdown_with_declared_charset_decodes() -> None:
    doc = parse(_fetched("# Caf\xe9\n\nCr\xe8me.\n".encode("iso-8859-1"), "text/markdown", encoding="iso-8859-1"))
    assert doc.headings == ("Café",)
    assert "Crème." in doc.text


@pytest.mark.parametrize(("body", "content_type"), [
    ("", "text/html"),
    ("   \n\t ", "text/html"),
    ("", "text/markdown"),
    ("\n\n", "text/plain"),
    ("<html><body><nav><a href='/a'>Home</a> Docs</nav><footer>(c)</footer></body></html>", "text/html"),
    ("<html><head><script>alert(1)</script></head><body></body></html>", "text/html"),
])
def test_empty_or_chrome_only_page_raises(body: str, content_type: str) -> None:
    with pytest.raises(ParseError):
        parse(_fetched(body, content_type))


def test_failed_fetch_raises_with_reason() -> None:
    failed = Fetched(DocRef(BASE), BASE, status=404, error="HTTP 404 Not Found")
    with pytest.raises(ParseError, match="HTTP 404"):
        parse(failed)


def test_parse_result_is_picklable(page: ParsedDoc) -> None:
    assert pickle.loads(pickle.dumps(page)) == page
    assert pickle.loads(pickle.dumps(_fetched(PAGE))) == _fetched(PAGE)


def test_parse_is_deterministic() -> None:
    assert parse(_fetched(PAGE)) == parse(_fetched(PAGE))


# --- chunking -----------------------------------------------------------------

def _long_text() -> str:
    paragraphs = []
    for p in range(30):
        sentences = [f"Paragraph {p} sentence {s} talks about workers{p}x{s} and queues." for s in range(6)]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def test_long_text_is_chunked_preserving_words_in_order() -> None:
    text = _long_text()
    chunks = chunk_text(text, 120)

    assert len(chunks) >= 5
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.tokens == estimate_tokens(c.text) for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()
    assert max(estimate_tokens(c.text) for c in chunks) <= 120


def test_joined_paragraphs_fit_the_budget() -> None:
    text = "\n\n".join(["a" * 40] * 6)
    chunks = chunk_text(text, 20)
    assert max(c.tokens for c in chunks) <= 20
    assert "".join(c.text for c in chunks).replace("\n", "") == "a" * 240


def test_giant_run_without_sentence_breaks_is_split() -> None:
    text = "x" * 10_000
    chunks = chunk_text(text, 100)

    assert len(chunks) == 25
    assert all(estimate_tokens(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_short_text_is_one_chunk_and_empty_is_none() -> None:
    assert chunk_text("Just one line.", 800) == [Chunk(0, "Just one line.", 4)]
    assert chunk_text("", 800) == []
    assert chunk_text("\n\n  \n\n", 800) == []


def test_parse_chunks_respect_chunk_tokens_for_a_giant_page() -> None:
    body = "<html><body><h1>Big</h1><p>" + "y" * 8000 + "</p></body></html>"
    doc = parse(_fetched(body), chunk_tokens=200)

    assert len(doc.chunks) > 1
    assert all(c.tokens <= 200 for c in doc.chunks)
    assert "".join(c.text for c in doc.chunks).replace("\n", "") == doc.text.replace("\n", "")


def test_models_are_frozen() -> None:
    section = Section("H", 2, "t")
    with pytest.raises(AttributeError):
        section.text = "changed"  # type: ignore[misc]


# --- pages as documentation generators write them ------------------------------------------------

def _page(html: str, url: str = "http://127.0.0.1/docs/page.html", ctype: str = "text/html"):
    from document_it.models import DocRef, Fetched

    return parse(Fetched(DocRef(url, topic="t"), url, html.encode(), ctype))


def test_sphinx_page_loses_permalinks_and_sidebar_and_keeps_code_language():
    doc = _page("""<html><head><title>Install — FooLib 1.0 documentation</title></head><body>
      <div class="sphinxsidebar" role="navigation"><p>SIDEBARLEAK</p></div>
      <div class="document"><div class="body" role="main">
        <h1>Install<a class="headerlink" href="#install" title="Link to this heading">¶</a></h1>
        <p>You should install it with pip.</p>
        <div class="highlight-python notranslate"><div class="highlight"><pre>import foo</pre></div></div>
      </div></div></body></html>""")
    assert doc.title == "Install" and doc.headings == ("Install",)
    assert "¶" not in doc.text and "SIDEBARLEAK" not in doc.text
    assert doc.code_blocks[0].language == "python"


def test_mkdocs_line_number_tables_and_edit_button_do_not_leak():
    doc = _page("""<html><body><div class="md-sidebar" data-md-type="toc">TOCLEAK</div>
      <div class="md-content"><article class="md-content__inner md-typeset">
      <a href="https://example.org/edit/x.md" title="Edit this page" class="md-content__button">EDITLEAK</a>
      <h1 id="a">Getting started<a class="headerlink" href="#a">&para;</a></h1>
      <div class="language-bash highlight"><table class="highlighttable"><tr>
        <td class="linenos"><div class="linenodiv"><pre>1\n2</pre></div></td>
        <td class="code"><div><pre><code>export A=1\nrun</code></pre></div></td></tr></table></div>
      </article></div></body></html>""")
    assert "TOCLEAK" not in doc.text and "EDITLEAK" not in doc.text and "¶" not in doc.text
    assert [b.code for b in doc.code_blocks] == ["export A=1\nrun"]
    assert doc.code_blocks[0].language == "bash"
    assert not any("example.org/edit" in link.url for link in doc.links)


def test_docusaurus_article_inside_main_drops_breadcrumbs_toc_and_footer():
    doc = _page("""<html><body><main class="docMainContainer"><div class="row"><div class="col">
      <article><nav class="theme-doc-breadcrumbs"><a href="/">BREADCRUMBLEAK</a></nav>
      <div class="theme-doc-markdown markdown"><header><h1>Intro\u200b</h1></header>
      <p>Baz lets you build things.</p></div>
      <footer class="theme-doc-footer"><a href="https://example.org/edit">Edit this page</a></footer>
      </article></div><div class="col col--3"><div class="theme-doc-toc-desktop">TOCLEAK</div></div>
      </div></main></body></html>""")
    assert doc.title == "Intro" and doc.headings == ("Intro",)
    assert doc.text == "Intro\nBaz lets you build things."


def test_base_href_sets_where_relative_links_point():
    doc = _page('<html><head><base href="https://docs.example.org/v2/"></head><body><main>'
                '<p>See <a href="api/ref.html">the API</a>.</p></main></body></html>')
    assert doc.links[0].url == "https://docs.example.org/v2/api/ref.html"


def test_html_served_as_plain_text_is_parsed_as_html():
    doc = _page("<!DOCTYPE html><html><body><main><h1>Title</h1><p>Body text here.</p></main></body></html>",
                ctype="text/plain")
    assert doc.fmt == "html" and doc.title == "Title" and "<" not in doc.text


def test_the_content_region_of_themes_without_main_and_footnotes_kept():
    """Node.js's #apicontent and Django's #yui-main hold the content beside a sidebar and header links that
    are not the page's; Sphinx's footnotes sit in an <aside> that is the page's own."""
    from document_it.models import DocRef, Fetched

    def text(html: str) -> str:
        url = "http://127.0.0.1/p.html"
        return parse(Fetched(ref=DocRef(url=url), final_url=url, content=html.encode(), content_type="text/html",
                             status=200)).text

    node = ('<html><body><div id="column2"><ul><li><a href="fs.html">File system</a></li><li><a href="os.html">OS'
            '</a></li></ul></div><div id="column1"><div id="apicontent"><h2>File system</h2><p>The node:fs module '
            'works with files.</p></div></div></body></html>')
    assert text(node) == "File system\nThe node:fs module works with files."
    django = ('<html><body><div id="hd"><h1><a href="/">Django docs</a></h1><div class="nav"><a href="a.html">'
              'previous</a></div></div><div id="bd"><div id="yui-main"><h1>Models</h1><p>A model is the source of '
              'truth.</p></div><div id="sidebar"><p>Browse</p></div></div><div id="ft">next</div></body></html>')
    assert text(django) == "Models\nA model is the source of truth."
    sphinx = ('<html><body><div class="body" role="main"><h1>json</h1><p>See RFC 7159 [1].</p><aside class="sidebar">'
              '<p>Also read</p></aside><aside class="footnote-list"><aside class="footnote"><p>1: The spec.</p>'
              '</aside></aside></div></body></html>')
    body = text(sphinx)
    assert "The spec." in body and "Also read" not in body
