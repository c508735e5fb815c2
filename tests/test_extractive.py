"""The offline analyser: deterministic, schema-valid and useful on real-looking pages."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from document_it.analysis import extractive
from document_it.analysis.prompts import PAGE_TASKS, Task, TopicInput, schema_for
from document_it.config import SAMPLE_SOURCE
from document_it.fetch import fetch
from document_it.models import CodeBlock, DocRef, Fetched, ParsedDoc, Section
from document_it.parse import parse
from document_it.sources import discover


def _sample_pages(n: int = 8):
    refs = discover(SAMPLE_SOURCE).refs[:n]
    return [parse(fetch(ref)) for ref in refs]


def test_every_task_validates_on_the_sample_and_is_deterministic():
    for page in _sample_pages():
        for task in PAGE_TASKS:
            first = extractive.answer(task, page)
            assert isinstance(first, schema_for(task))
            again = extractive.answer(task, pickle.loads(pickle.dumps(page)))
            assert again == first


def test_answers_come_from_the_page(tmp_path):
    page = tmp_path / "retries.md"
    page.write_text("# Retries\n\nFerry retries failed jobs with backoff.\n\n## Backoff\n\n"
                    "You should cap the delay at one minute. Use `max_retries` to bound attempts.\n\n"
                    "```python\ndef schedule_retry(job):\n    return job.retry(delay=5)\n```\n\n"
                    "See [Scheduling](scheduling.md) and [RFC 9110](https://example.org/rfc9110).\n")
    doc = parse(fetch(DocRef(page.as_uri(), topic="Guides")))
    concepts = extractive.answer(Task.KEY_CONCEPTS, doc).items
    assert [c.name for c in concepts] == ["Retries", "Backoff"]  # the page's subject, then what it explains
    assert concepts[0].importance == 10 and 1 <= concepts[1].importance < 10
    advice = [d.description for d in extractive.answer(Task.IMPLEMENTATION_DETAILS, doc).items]
    assert "You should cap the delay at one minute." in advice
    assert "Use max_retries to bound attempts." in advice
    pattern = extractive.answer(Task.CODE_PATTERNS, doc).items[0]
    assert pattern.name == "schedule_retry() (Python)" and "job.retry" in pattern.example
    assert pattern.description == "Python: defines schedule_retry() calling job.retry"
    related = extractive.answer(Task.RELATED_TOPICS, doc).items
    assert [r.name for r in related] == ["Scheduling", "RFC 9110"]
    assert related[0].relationship.startswith("linked page") and "external" in related[1].relationship
    summary = extractive.answer(Task.SUMMARY, doc).summary
    assert summary.startswith("Ferry retries failed jobs with backoff.")


def test_topic_synthesis_names_pages_and_shared_themes():
    topic = TopicInput("Guides", (("Retries", "s", ("Backoff", "Jobs")), ("Workers", "s", ("Jobs",))))
    out = extractive.answer(Task.TOPIC_SYNTHESIS, topic)
    assert "Retries, Workers" in out.overview and out.key_themes[0] == "Jobs"


# --- pages shaped as real documentation generators make them -----------------------------------------------

GENERIC = {"description", "synopsis", "options", "parameters", "arguments", "returns", "examples", "example",
           "notes", "note", "see also", "overview", "introduction", "usage", "environment", "files", "diagnostics",
           "compatibility", "history", "bugs", "author", "authors", "summary", "contents", "table of contents",
           "footnotes", "warning", "exit status", "outputs", "quick example", "basic usage"}
CLAUSE_END = re.compile(r"[,;:]| [—–(]| (and|or|but|which|who|whose|where|when|while|because|since|unless|although"
                        r"|though|if|so|that|whereas|until|before|after)\b")

DOCBOOK_REFENTRY = """<html><head><title>dropdb</title></head><body>
<div class="navheader"><table><tr><td><a href="app-createuser.html">Prev</a></td>
<td><a href="reference-client.html">Up</a></td><td><a href="index.html">Home</a></td></tr></table></div>
<div class="refentry"><div class="refnamediv"><h2>dropdb</h2>
<p>dropdb — remove a <span class="productname">PostgreSQL</span> database</p></div>
<div class="refsynopsisdiv"><h2>Synopsis</h2><div class="cmdsynopsis"><p><code class="command">dropdb</code>
[<em class="replaceable"><code>option</code></em>...] <em class="replaceable"><code>dbname</code></em></p></div></div>
<div class="refsect1"><h2>Description</h2>
<p><span class="application">dropdb</span> destroys an existing PostgreSQL database. The user who executes this
command must be a database superuser or the owner of the database.</p>
<p><span class="application">dropdb</span> is a wrapper around the SQL command
<a href="sql-dropdatabase.html">DROP DATABASE</a>. There is no effective difference between dropping databases
via this utility and via other methods for accessing the server.</p></div>
<div class="refsect1"><h2>Options</h2><p>dropdb accepts the following command-line arguments:</p>
<div class="variablelist"><dl class="variablelist">
<dt><span class="term"><em class="replaceable"><code>dbname</code></em></span></dt>
<dd><p>Specifies the name of the database to be removed.</p></dd>
<dt><span class="term"><code class="option">-e</code></span></dt>
<dd><p>Echo the commands that dropdb generates and sends to the server.</p></dd>
<dt><span class="term"><code class="option">--if-exists</code></span></dt>
<dd><p>Do not throw an error if the database does not exist. A notice is issued in this case.</p></dd>
<dt><span class="term"><code class="option">-W</code></span></dt>
<dd><p>Force dropdb to prompt for a password before connecting to a database. This option is never essential,
since dropdb will automatically prompt for a password if the server demands password authentication, but it
wastes a connection attempt finding out that the server wants a password.</p></dd>
</dl></div></div>
<div class="refsect1"><h2>Diagnostics</h2><p>In case of difficulty, see DROP DATABASE and psql for discussions of
potential problems and error messages. The database server must be running at the targeted host.</p></div>
<div class="refsect1"><h2>Examples</h2><p>To destroy the database demo on the default database server:</p>
<pre class="screen"><code class="prompt">$ </code><strong class="userinput"><code>dropdb demo</code></strong></pre>
<p>To destroy the database demo, with verification and a peek at the underlying command:</p>
<pre class="screen"><code class="prompt">$ </code><strong
class="userinput"><code>dropdb -p 5000 -h eden -i -e --if-exists demo</code></strong>
Database "demo" will be permanently deleted.
Are you sure? (y/n) y
DROP DATABASE demo;</pre></div>
<div class="refsect1"><h2>See Also</h2><p><a href="app-createdb.html">createdb</a>,
<a href="sql-dropdatabase.html">DROP DATABASE</a></p></div>
</div></body></html>"""

SPHINX_MODULE = """<html><head><title>json — JSON encoder and decoder — Python 3.11 documentation</title></head>
<body>
<div class="related" role="navigation"><ul><li><a href="../genindex.html">index</a></li>
<li><a href="../py-modindex.html">modules</a> |</li><li><a href="marshal.html">next</a> |</li></ul></div>
<div class="document"><div class="body" role="main"><section id="module-json">
<h1><code class="xref py py-mod docutils literal notranslate"><span class="pre">json</span></code> — JSON encoder
and decoder<a class="headerlink" href="#module-json">¶</a></h1>
<p><strong>Source code:</strong> <a
href="https://github.com/python/cpython/tree/3.11/Lib/json/__init__.py">Lib/json/__init__.py</a></p>
<p><code class="xref py py-mod docutils literal notranslate"><span
class="pre">json</span></code> exposes an API familiar
to users of the standard library <code>marshal</code> and <code>pickle</code> modules.</p>
<div class="admonition warning"><p class="admonition-title">Warning</p><p>Be cautious when parsing JSON data from
untrusted sources. A malicious JSON string may cause the decoder to consume considerable CPU and memory resources.
Limiting the size of data to be parsed is recommended.</p></div>
<p>Encoding basic Python object hierarchies:</p>
<div class="highlight-python3 notranslate"><div class="highlight"><pre><span></span><span
class="gp">&gt;&gt;&gt; </span><span class="kn">import</span> <span class="nn">json</span>
<span class="gp">&gt;&gt;&gt; </span><span class="n">json</span><span class="o">.</span><span
class="n">dumps</span><span class="p">({</span><span class="s2">"c"</span><span class="p">:</span> <span
class="mi">0</span><span class="p">})</span>
<span class="go">'{"c": 0}'</span>
</pre></div></div>
<section id="basic-usage"><h2>Basic Usage<a class="headerlink" href="#basic-usage">¶</a></h2>
<dl class="py function"><dt class="sig sig-object py" id="json.dumps"><span class="sig-prename descclassname"><span
class="pre">json.</span></span><span class="sig-name descname"><span class="pre">dumps</span></span><span
class="sig-paren">(</span><em class="sig-param"><span class="n"><span class="pre">obj</span></span></em>, <em
class="sig-param"><span class="n"><span class="pre">indent</span></span><span class="o"><span
class="pre">=</span></span><span
class="default_value"><span class="pre">None</span></span></em><span class="sig-paren">)</span></dt>
<dd><p>Serialize <em>obj</em> to a JSON formatted <code>str</code> using this conversion table. If <em>indent</em> is
a non-negative integer or string, then JSON array elements and object members will be pretty-printed with that
indent level. If specified, <em>separators</em> should be an <code>(item_separator, key_separator)</code>
tuple.</p></dd></dl>
<dl class="py function"><dt class="sig sig-object py" id="json.loads"><span class="sig-prename descclassname"><span
class="pre">json.</span></span><span class="sig-name descname"><span class="pre">loads</span></span><span
class="sig-paren">(</span><em class="sig-param"><span class="n"><span class="pre">s</span></span></em><span
class="sig-paren">)</span></dt>
<dd><p>Deserialize <em>s</em> (a <code>str</code>, <code>bytes</code> or <code>bytearray</code> instance containing a
JSON document) to a Python object using this conversion table.</p></dd></dl>
</section></section></div></div></body></html>"""

DJANGO_TOPIC = """<html><head><title>Models | Django documentation | Django</title></head><body>
<div id="docs-content"><div class="section" id="s-models"><h1>Models</h1>
<p>A model is the single, definitive source of information about your data. It contains the essential fields and
behaviors of the data you’re storing. Generally, each model maps to a single database table.</p>
<div class="section" id="s-quick-example"><h2>Quick example</h2>
<p>This example model defines a <code>Person</code>, which has a <code>first_name</code> and <code>last_name</code>:</p>
<div class="highlight-default notranslate"><div class="highlight"><pre><span></span><span class="kn">from</span> <span
class="nn">django.db</span> <span class="kn">import</span> <span class="n">models</span>

<span class="k">class</span> <span class="nc">Person</span><span class="p">(</span><span class="n">models</span><span
class="o">.</span><span class="n">Model</span><span class="p">):</span>
    <span class="n">first_name</span> <span class="o">=</span> <span class="n">models</span><span
class="o">.</span><span class="n">CharField</span><span class="p">(</span><span class="n">max_length</span><span
class="o">=</span><span class="mi">30</span><span class="p">)</span>
    <span class="n">last_name</span> <span class="o">=</span> <span class="n">models</span><span
class="o">.</span><span class="n">CharField</span><span class="p">(</span><span class="n">max_length</span><span
class="o">=</span><span class="mi">30</span><span class="p">)</span>
</pre></div></div>
<p><code>first_name</code> and <code>last_name</code> are fields of the model. Each field is specified as a class
attribute, and each attribute maps to a database column.</p></div>
<div class="section" id="s-fields"><h2>Fields</h2><p>The most important part of a model is the list of database
fields it defines. Be careful not to choose field names that conflict with the models API like <code>clean</code>,
<code>save</code>, or <code>delete</code>.</p>
<div class="section" id="s-field-options"><h3>Field options</h3><p>Each field takes a certain set of
field-specific arguments. For example, <code>CharField</code> (and its subclasses) require a <code>max_length</code>
argument which specifies the size of the <code>VARCHAR</code> database field used to store the data.</p></div></div>
<div class="section" id="s-model-inheritance"><h2>Model inheritance</h2><p>Model inheritance in Django works almost
identically to the way normal class inheritance works in Python, but the basics at the beginning of the page should
still be followed. If you are using related_name or related_query_name on a ForeignKey or ManyToManyField, you must
always specify a unique reverse name and query name for the field.</p></div>
<div class="section" id="s-see-also"><h2>See also</h2><p>The <a href="../ref/models/fields.html">model field
reference</a> covers every field option.</p></div>
</div></div></body></html>"""


def _page(html: str, url: str) -> ParsedDoc:
    return parse(Fetched(DocRef(url), url, html.encode(), "text/html", status=200))


def _said_on(page: ParsedDoc, piece: str, fold: bool = False) -> bool:
    """True when `piece` is said on the page: a whole sentence of it (`fold`: any case, as a title may open with
    its main clause), or its start cut at a clause boundary and marked "…"; never cut mid-clause or mid-word."""
    text = " ".join(page.text.split())
    head = piece.removesuffix("…")
    if fold:
        text, head = text.lower(), head.lower()
    at = text.find(head.rstrip("."))
    if at < 0:
        return False
    rest = text[at + len(head.rstrip(".")):]
    return bool(CLAUSE_END.match(rest)) if piece.endswith("…") else rest[:1] in ("", ".", "!", "?", " ")


def _assert_reads_right(page: ParsedDoc) -> None:
    """What a user noticed on real pages does not happen: generic headings as concepts, advice cut mid-clause,
    code named by its first word."""
    concepts = extractive.answer(Task.KEY_CONCEPTS, page).items
    assert not {c.name.lower() for c in concepts} & GENERIC, [c.name for c in concepts]
    for concept in concepts:
        assert _said_on(page, concept.description), concept
    for advice in extractive.answer(Task.IMPLEMENTATION_DETAILS, page).items:
        assert advice.description[-1] in ".!?…" and _said_on(page, advice.description), advice
        assert _said_on(page, advice.title, fold=True), advice
    blocks = {block.code.split()[0] for block in page.code_blocks}
    for pattern in extractive.answer(Task.CODE_PATTERNS, page).items:
        assert pattern.name not in blocks and re.match(r"[A-Z][\w /+-]*: \S", pattern.description), pattern


def test_a_docbook_reference_page_reads_as_a_person_would_write_it():
    page = _page(DOCBOOK_REFENTRY, "https://docs.example.test/app-dropdb.html")
    _assert_reads_right(page)
    concepts = {c.name: c for c in extractive.answer(Task.KEY_CONCEPTS, page).items}
    assert concepts["dropdb"].description == "dropdb destroys an existing PostgreSQL database."
    assert concepts["dropdb"].importance == 10 and {"dbname", "--if-exists"} <= set(concepts)
    assert concepts["--if-exists"].description == "Do not throw an error if the database does not exist."
    assert len({c.importance for c in concepts.values()}) > 1  # how central each is, not a constant
    advice = extractive.answer(Task.IMPLEMENTATION_DETAILS, page).items
    said = [a.description for a in advice]
    assert "The user who executes this command must be a database superuser or the owner of the database." in said
    assert "The database server must be running at the targeted host." in said
    patterns = extractive.answer(Task.CODE_PATTERNS, page).items
    assert [p.name for p in patterns] == ["dropdb demo (shell)", "dropdb -p -h -i (shell)"]
    assert patterns[1].description == "Shell: runs dropdb with -p, -h, -i and -e"
    summary = extractive.answer(Task.SUMMARY, page).summary
    assert summary.startswith("dropdb destroys an existing PostgreSQL database. The user who executes")
    related = [r.name for r in extractive.answer(Task.RELATED_TOPICS, page).items]
    assert related == ["DROP DATABASE", "createdb"]  # the navigation (Prev, Up, Home) is not a related topic


def test_a_sphinx_module_page_names_its_api_and_its_console_session():
    page = _page(SPHINX_MODULE, "https://docs.example.test/library/json.html")
    _assert_reads_right(page)
    concepts = {c.name: c.description for c in extractive.answer(Task.KEY_CONCEPTS, page).items}
    assert concepts["json.dumps"] == "Serialize obj to a JSON formatted str using this conversion table."
    assert "json.loads" in concepts and "Basic Usage" not in concepts
    advice = {a.description: a.title for a in extractive.answer(Task.IMPLEMENTATION_DETAILS, page).items}
    assert advice["Limiting the size of data to be parsed is recommended."]  # from the Warning box
    assert advice["If specified, separators should be an (item_separator, key_separator) tuple."] \
        == "Separators should be an (item_separator, key_separator) tuple"  # its main clause
    pattern, = extractive.answer(Task.CODE_PATTERNS, page).items
    assert pattern.description == "Python console session: calls json.dumps on a dict"
    assert pattern.name == "json.dumps (Python console)"


def test_a_django_topic_page_explains_its_sections_and_its_model_code():
    page = _page(DJANGO_TOPIC, "https://docs.example.test/topics/db/models.html")
    _assert_reads_right(page)
    concepts = {c.name: c.description for c in extractive.answer(Task.KEY_CONCEPTS, page).items}
    assert concepts["Models"] == "A model is the single, definitive source of information about your data."
    assert concepts["Model inheritance"].startswith("Model inheritance in Django works almost identically")
    assert "Field options" in concepts and not {"Quick example", "See also"} & set(concepts)
    patterns = extractive.answer(Task.CODE_PATTERNS, page).items
    assert [(p.name, p.description) for p in patterns] == [
        ("class Person(models.Model) (Python)", "Python: defines class Person(models.Model) with two CharFields")]
    advice = [a.description for a in extractive.answer(Task.IMPLEMENTATION_DETAILS, page).items]
    assert advice[0] == ("Be careful not to choose field names that conflict with the models API like clean, save, "
                         "or delete.")
    long_rule = [a for a in advice if "related_name" in a]  # 160 characters: cut at a clause, or passed over
    assert all(a.endswith("…") and len(a) <= 110 for a in long_rule)


def test_fragments_the_parser_left_are_never_advice_nor_summary():
    text = ("The user who executes this command must\nbe a database superuser or the owner.\n"
            "You must stop the server before upgrading it.\nSee the release notes")
    page = ParsedDoc(url="https://docs.example.test/upgrade.html", title="Upgrading", topic="", text=text,
                     sections=(Section("Upgrading", 1, text),))
    assert [a.description for a in extractive.answer(Task.IMPLEMENTATION_DETAILS, page).items] == [
        "You must stop the server before upgrading it."]
    assert extractive.answer(Task.SUMMARY, page).summary == "You must stop the server before upgrading it."


def test_identical_code_blocks_collapse_and_languages_are_inferred():
    blocks = (CodeBlock("$ pg_ctl -D /data start"), CodeBlock("$ pg_ctl -D /data start"),
              CodeBlock("SELECT name FROM films WHERE kind = 'Drama';"), CodeBlock('{"name": "x", "year": 1971}'),
              CodeBlock("import json\n\ndef load(path):\n    return json.loads(open(path).read())"))
    page = ParsedDoc(url="https://docs.example.test/code.html", title="Code", topic="", text="",
                     code_blocks=blocks)
    patterns = extractive.answer(Task.CODE_PATTERNS, page).items
    assert [(p.name, p.description) for p in patterns] == [
        ("pg_ctl -D /data start (shell)", "Shell: runs pg_ctl with -D"),
        ("SELECT from films (SQL)", "SQL: SELECT from films with WHERE"),
        ("object {name, year} (JSON)", "JSON: an object with keys name and year"),
        ("load() (Python)", "Python: defines load() calling json.loads and open")]


def test_topic_themes_are_not_generic_headings():
    topic = TopicInput("Reference", (("dropdb", "s", ("Description", "Options", "DROP DATABASE")),
                                     ("createdb", "s", ("Description", "CREATE DATABASE", "DROP DATABASE"))))
    assert extractive.answer(Task.TOPIC_SYNTHESIS, topic).key_themes == ["DROP DATABASE", "CREATE DATABASE"]


PG_DOCS = Path("/usr/share/doc/postgresql-doc-15/html")


@pytest.mark.skipif(not PG_DOCS.is_dir(), reason="the Debian postgresql-doc-15 package is not installed")
def test_real_postgresql_reference_pages_read_right():
    pages = sorted(PG_DOCS.glob("sql-*.html"))[::20] + sorted(PG_DOCS.glob("app-*.html"))[::6]
    for path in pages:
        page = parse(Fetched(DocRef(path.as_uri()), path.as_uri(), path.read_bytes(), "text/html", status=200))
        _assert_reads_right(page)
        assert extractive.answer(Task.KEY_CONCEPTS, page).items, path.name  # a reference page explains terms
