"""The offline analyser: answers every task from the page's own structure, no model involved."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePosixPath
from urllib.parse import unquote, urldefrag, urlparse

from pydantic import BaseModel

from ..models import ParsedDoc
from ._concepts import key_concepts
from ._prose import Sentence, clause_cut, is_generic, read_prose, sentences
from ._snippets import describe
from .prompts import (
    ChunkInput, ChunkNotes, CodePattern, CodePatterns, Context, ImplementationDetail, ImplementationDetails,
    KeyConcepts, PageQuestion, Question, RelatedTopic, RelatedTopics, Summary, Task, TopicInput,
    TopicSynthesis,
)
from .schemas import MAX_ITEMS, part_value

__all__ = ["answer", "answer_data", "LABEL"]

LABEL = "extractive (offline, no LLM)"

# the longest string each field is shown to take (schemas._LONGEST): an answer that keeps to them reads as a
# model's would, and a sentence longer than that is cut at a clause boundary or passed over, never cut mid-clause
_SUMMARY_CHARS, _TITLE_CHARS, _TEXT_CHARS, _EXAMPLE_LINES = 400, 60, 110, 12
_LONG_TITLE_CHARS = 80  # a title with no clause boundary within 60 characters may take this many


def answer(task: Task, context: Context) -> BaseModel:
    """Answer one task for one page (or topic) deterministically from its structure."""
    if isinstance(context, TopicInput):
        return _synthesis(context)
    if isinstance(context, ChunkInput):
        notes = [s.text for s in sentences(context.text)][:5]
        return ChunkNotes(notes=" ".join(notes) or context.text[:600])
    return _PAGE_ANSWERS[task](_Page(context))


def answer_data(question: Question, context: Context) -> dict:
    """The answer to `question` as plain data: a page question gets every part it asks, as one request would."""
    if isinstance(question, PageQuestion) and isinstance(context, ParsedDoc):
        page = _Page(context)  # read once, whatever the number of parts
        return {task.value: _dumped(part_value(task, _PAGE_ANSWERS[task](page))) for task in question.tasks}
    return answer(question, context).model_dump()  # type: ignore[arg-type]


def _dumped(value: object) -> object:
    return [item.model_dump() for item in value] if isinstance(value, list) else value


class _Page:
    """A page as the answers read it: its prose (code left out) in whole sentences, read once."""

    def __init__(self, doc: ParsedDoc) -> None:
        self.doc = doc
        self.prose = read_prose(doc)


def _summary(page: _Page) -> Summary:
    lead: list[str] = []
    for sentence in page.prose.sentences:
        if sentence.aside or sentence.text in lead or sentence.text.endswith("?"):
            continue  # a note or warning is not what the page is about, nor a question
        if lead and len(" ".join([*lead, sentence.text])) > _SUMMARY_CHARS:
            break
        lead.append(sentence.text)
        if len(lead) == 3:
            break
    topics = [s.heading for s in page.prose.sections if s.heading != page.prose.title and s.heading
              and s.has_sentences and not is_generic(s.heading)][:5]
    covers = f" Covers: {', '.join(topics)}." if topics else ""
    return Summary(summary=(" ".join(lead) or page.prose.title or page.doc.title) + covers)


def _key_concepts(page: _Page) -> KeyConcepts:
    return KeyConcepts(items=key_concepts(page.prose, MAX_ITEMS[Task.KEY_CONCEPTS]))


# --- implementation details -----------------------------------------------------------------------------

# the words of a rule or a warning, then milder ones; "always" and "never" only before a word ("Possible values
# are always, auto and never" advises nothing). Matched in lower case.
_STRONG = r"must|should|never(?=\s+\w)|avoid|recommend(?:s|ed)?|note that|be careful|warning|do not|don't|" \
          r"it is important|it's important"
_MILD = r"make sure|ensure|always(?=\s+\w)|need to|needs to|required|it is best|prefer|consider|cannot|can't"
_ADVISING = re.compile(rf"\b(?:(?P<strong>{_STRONG})|{_MILD})\b")
_IMPERATIVE = {
    "add", "avoid", "call", "choose", "close", "configure", "create", "define", "deploy", "disable", "enable",
    "ensure", "export", "import", "install", "keep", "limit", "make", "monitor", "pass", "pin", "prefer",
    "register", "remember", "restart", "run", "set", "start", "stop", "use", "wrap", "write", "give", "put",
    "retry", "send", "store", "test", "turn", "update", "upgrade",
}
_WARNING_ASIDES = {"warning", "caution", "important", "danger", "attention"}


def _implementation_details(page: _Page) -> ImplementationDetails:
    said = (s for s in page.prose.sentences if not s.text.endswith("?"))
    ranked = sorted((item for item in map(_advice, said) if item[0] > 0),
                    key=lambda item: (-item[0], item[1].position))
    items, seen = [], set()
    for _, sentence in ranked:
        # the rule: its strongest word, the last of them (it comes after its conditions: "Note that if ..., X must")
        markers = sorted(_ADVISING.finditer(sentence.text.lower()), key=lambda m: (bool(m.group("strong")), m.start()))
        keep = markers[-1].group(0) if markers else ""
        description = clause_cut(sentence.text, _TEXT_CHARS, keep, least=0.5)
        title = _title(sentence.text, keep, page.prose.code_names)
        if description and title and title not in seen:
            seen.add(title)
            items.append(ImplementationDetail(title=title, description=description))
        if len(items) == MAX_ITEMS[Task.IMPLEMENTATION_DETAILS]:
            break
    return ImplementationDetails(items=items)


def _advice(sentence: Sentence) -> tuple[int, Sentence]:
    """How strongly `sentence` advises (0: not advice): a rule or warning word, a milder one, or an imperative
    opening; a warning box adds to it."""
    first = sentence.text.split(maxsplit=1)[0].strip("`*:,")
    # an imperative opening, but not an SQL command (CREATE ...) nor what a function does ("Set the ...")
    imperative = first.lower() in _IMPERATIVE and not first.isupper() and not sentence.defines
    said = [bool(strong) for strong in _ADVISING.findall(sentence.text.lower())]
    strength = 3 if any(said) else 2 if said else 1 if imperative or sentence.aside else 0
    if strength and _ANAPHORIC.match(sentence.text):
        strength -= 1  # "Note that this is different than null": alone, it says little
    return strength + (strength > 0 and sentence.aside in _WARNING_ASIDES), sentence


def _title(text: str, keep: str, names: frozenset[str]) -> str:
    """A short title for advice: its main clause, or its start, whole or cut at a clause boundary ("" if none)."""
    clauses = (_main_clause(text, keep, names), text.rstrip(".!"))
    return next((cut for limit in (_TITLE_CHARS, _LONG_TITLE_CHARS) for clause in clauses
                 if (cut := clause_cut(clause, limit, keep))), "")


_ANAPHORIC = re.compile(r"^(?:(?:also )?note that |therefore, |however, )?(?:this|it|these|they|that|such)\b",
                        re.IGNORECASE)
_LEADING_CLAUSE = re.compile(r"^(?:(?:also |so )?note that |so |(?:however|therefore|thus|also|otherwise|instead|"
                             r"similarly|likewise|finally|again|generally|typically|usually), |(?:if|when|while|"
                             r"for|to|in|as|since|because|unless|although|once|after|before|by default)\b[^,]{0,80}, )",
                             re.IGNORECASE)
_PLAIN_OPENINGS = {"you", "we", "they", "it", "this", "that", "these", "those", "there", "the", "a", "an", "each",
                   "all", "any", "some", "every", "your", "one", "most", "many", "no", "if", "in", "when"}


def _main_clause(text: str, keep: str, names: frozenset[str]) -> str:
    """`text` without its leading subordinate clauses ("If specified, separators should be ..." → "separators
    should be ..."; none that holds the words `keep`), capitalised unless it opens with a name from the page's
    code (`names`)."""
    rest = text.rstrip(".!")
    if rest.startswith("(") and rest.endswith(")"):  # "(A class is never used as a global scope.)"
        rest = rest[1:-1].rstrip(".!")
    for _ in range(2):
        shorter = _LEADING_CLAUSE.sub("", rest, count=1)
        rest = shorter if keep in shorter.lower() or keep == "note that" else rest
    first = re.sub(r"\W+$", "", rest.split(maxsplit=1)[0]) if rest.strip() else ""
    if not re.sub(r"[’']", "", first).isalpha() or first not in _PLAIN_OPENINGS and first in names:
        return rest
    return rest[:1].upper() + rest[1:]


# --- code patterns --------------------------------------------------------------------------------------

def _code_patterns(page: _Page) -> CodePatterns:
    items, names, seen = [], set(), set()
    for block in page.doc.code_blocks:
        code = block.code.strip("\n")
        shape = " ".join(code.split())
        if not shape or shape in seen:
            continue  # an identical block says nothing new
        seen.add(shape)
        snippet = describe(code, block.language)
        name = snippet.name or snippet.language
        if name in names or not snippet.does:
            continue  # the same thing again, or a block nothing could be said of
        names.add(name)
        lang = snippet.language
        shown = f"{name} ({lang})" if len(name) + len(lang) <= 37 and lang not in name else name  # fits 40
        said = {"Python console": "Python console session"}.get(lang, lang)
        items.append(CodePattern(name=shown, description=f"{said[:1].upper()}{said[1:]}: {snippet.does}",
                                 example="\n".join(code.strip().splitlines()[:_EXAMPLE_LINES])))
        if len(items) == MAX_ITEMS[Task.CODE_PATTERNS]:
            break
    return CodePatterns(items=items)


# --- related topics -------------------------------------------------------------------------------------

_NAVIGATION = {"prev", "previous", "next", "up", "home", "index", "modules", "table of contents", "contents",
               "search", "«", "»", "top", "back", "next page", "previous page", "next topic", "previous topic",
               "this page", "show source", "report a bug", "availability", "", "¶", "#"}


def _related_topics(page: _Page) -> RelatedTopics:
    doc = page.doc
    host, here = urlparse(doc.url).netloc, urldefrag(doc.url)[0]
    items, seen = [], set()
    for link in doc.links:
        target = urldefrag(link.url)[0]
        name = " ".join(link.text.split()) or _stem(link.url)
        if name.lower() in _NAVIGATION or target == here or re.fullmatch(r"\[.*\]|\d+|.* documentation", name):
            continue  # the site's navigation (its home: "Django 3.2.25 documentation"), the page itself, a
            # footnote number, a "[docs]" or "[source]" mark
        if target in seen or name.lower() in seen:
            continue
        seen.update({target, name.lower()})
        netloc = urlparse(link.url).netloc
        where = "linked page in the same documentation" if netloc == host else f"external reference ({netloc})"
        cited = page.prose.section_citing(name)
        items.append(RelatedTopic(name=name, relationship=where + (f", cited under '{cited}'" if cited else "")
                                  + f": {link.url}"))
        if len(items) == MAX_ITEMS[Task.RELATED_TOPICS]:
            break
    return RelatedTopics(items=items)


def _stem(url: str) -> str:
    parsed = urlparse(url)
    stem = PurePosixPath(unquote(parsed.path)).stem.replace("-", " ").replace("_", " ")
    return stem.capitalize() or parsed.netloc


# --- topic synthesis ------------------------------------------------------------------------------------

def _synthesis(topic: TopicInput) -> TopicSynthesis:
    titles = [title for title, _, _ in topic.pages]
    themes: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    for _, _, concepts in topic.pages:
        for concept in dict.fromkeys(c.lower() for c in concepts if not is_generic(c)):
            themes[concept] += 1
        spelled.update({c.lower(): spelled.get(c.lower(), c) for c in concepts})
    overview = (f"The '{topic.topic}' topic has {len(titles)} page(s): {', '.join(titles[:10])}"
                f"{' and more' if len(titles) > 10 else ''}.")
    return TopicSynthesis(overview=overview, key_themes=[spelled[name] for name, _ in themes.most_common(6)])


_PAGE_ANSWERS = {
    Task.SUMMARY: _summary,
    Task.KEY_CONCEPTS: _key_concepts,
    Task.IMPLEMENTATION_DETAILS: _implementation_details,
    Task.CODE_PATTERNS: _code_patterns,
    Task.RELATED_TOPICS: _related_topics,
}
