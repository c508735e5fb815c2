"""The key concepts of a page, read from its prose: the terms it defines, its specific headings and the code
names it keeps mentioning, each explained by a whole sentence of the page."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ._prose import Prose, is_generic, sentences
from .schemas import KeyConcept

__all__ = ["key_concepts"]

# a concept's explanation: one whole sentence, the shorter the better; the page's subject is explained by its
# opening, which may run longer
_EXPLANATION_CHARS, _OPENING_CHARS = 180, 260
_COUNTED_CHARS = 12_000  # the text whose mentions weigh concepts: enough to see what recurs, quick on a long page


@dataclass
class _Candidate:
    name: str
    score: float
    definition: str = ""  # the text the page gives as its definition, when it defines it
    section: int = -1  # the section it heads or is defined in
    verbatim: bool = False  # its definition is a `term — meaning` line, fit to show as it is


_CODE_TERM = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?|\b[a-z]+_\w+\b|\b[A-Z][a-z]+[A-Z]\w*\b"
                        r"|\b[A-Z]{2,}(?: [A-Z]{2,})+\b")


def key_concepts(prose: Prose, most: int) -> list[KeyConcept]:
    """At most `most` of the terms `prose` explains, the most central first, each with a whole sentence of the
    page explaining it and an importance relative to the page's subject (10)."""
    found = _candidates(prose)
    top = max((c.score for c in found), default=1)
    items: list[KeyConcept] = []
    for candidate in sorted(found, key=lambda c: -c.score):
        explanation = _explanation(prose, candidate, {item.description for item in items})
        if explanation:
            importance = max(1, min(10, round(10 * candidate.score / top)))
            items.append(KeyConcept(name=candidate.name, description=explanation, importance=importance))
        if len(items) == most:
            break
    return items


def _candidates(prose: Prose) -> list[_Candidate]:
    """The terms the page explains, scored by how central each is: what it defines (an option, a function, a
    `term — meaning` line), its specific headings, and the code names its text keeps mentioning."""
    text = prose.text[:_COUNTED_CHARS]
    mentions = Counter(_CODE_TERM.findall(text))
    lowered = text.lower()
    found: dict[str, _Candidate] = {}

    def add(candidate: _Candidate, kinds: bool = True) -> None:
        key = candidate.name.lower()
        if is_generic(candidate.name, kinds) or len(key) < 2:
            return
        if key not in found or found[key].score < candidate.score:
            found[key] = candidate

    for term in prose.terms:
        # its definition often names it once; a plain word ("default", "blank") is named in passing too
        plain = term.name.isalpha() and term.name.islower()
        cited = min(1 if plain else 4, text.count(term.key) - 1)
        add(_Candidate(term.name, 1 + cited + min(2, len(term.definition) / 300), term.definition, term.section,
                       term.dashed))
    for index, (section, size) in enumerate(zip(prose.sections, _covered(prose))):
        name, wordy = _heading_name(section.heading)
        if name and name != prose.title and section.has_sentences and not section.aside \
                and not _SENTENCE_LIKE.search(name):  # a FAQ's question is not a concept's name
            depth = {1: 1.0, 2: 1.0, 3: 0.85}.get(section.level, 0.7)
            cited = min(5, lowered.count(section.heading.lower()))
            add(_Candidate(name, depth * (1 + cited + min(5, size / 800)) / wordy, section=index))
    for term, count in mentions.most_common(12):
        if count > 1 and (term in prose.code or term.isupper()):
            add(_Candidate(term, min(5, 0.5 * count)))
    subject = prose.subject
    if subject and not is_generic(subject, kinds=False):
        best = max((c.score for c in found.values()), default=1)
        add(_Candidate(subject, best + 1), kinds=False)
    return list(found.values())


def _covered(prose: Prose) -> list[int]:
    """The characters of prose each section covers, its subsections' included: what a heading spans."""
    sizes = [section.chars for section in prose.sections]
    open_: list[int] = []  # the sections that the next one may fall under
    for index, section in enumerate(prose.sections):
        while open_ and prose.sections[open_[-1]].level >= section.level:
            open_.pop()
        for parent in open_:
            sizes[parent] += section.chars
        open_.append(index)
    return sizes


_SENTENCE_LIKE = re.compile(r"\?|\.$|\w\. [A-Z]|^.{61,}$")  # a question, a sentence, a paragraph


def _heading_name(heading: str) -> tuple[str, float]:
    """A heading as a concept's name, and how much its length weighs against it: a long heading is named by
    what comes before its colon ("CVE-2016-2513: User enumeration ..." → "CVE-2016-2513"), else counts half."""
    label = heading.split(": ", 1)[0]
    if len(heading) <= 40:
        return heading, 1.0
    return (label, 1.0) if 2 < len(label) <= 40 else (heading, 2.0)


def _explanation(prose: Prose, candidate: _Candidate, used: set[str]) -> str:
    """One whole sentence of the page explaining `candidate` ("" when none does): its definition's first
    sentence; for the page's subject, its opening; else one that mentions it, early in the sentence, in its
    own section first; for a heading, the sentence of its section that says most of its words. A sentence in
    `used` (another concept's) is not used again."""
    if candidate.definition:
        first = next(iter(sentences(candidate.definition)), None)
        if first and len(first.text) <= _EXPLANATION_CHARS and first.text not in used:
            return first.text
        if candidate.verbatim and len(candidate.definition) <= _EXPLANATION_CHARS:
            return candidate.definition  # "codecs — Codec registry and base classes": the page's own words
    plain = [s for s in prose.sentences if not s.aside and not s.text.endswith("?") and s.text not in used]
    if candidate.name == prose.subject:
        opening = [s.text for s in plain[:3] if len(s.text) <= _OPENING_CHARS]
        return _mentioning(candidate.name, opening, prose.folded) or next(iter(opening), "")
    said = [s for s in plain if len(s.text) <= _EXPLANATION_CHARS]
    own = [s.text for s in said if s.section == candidate.section]
    found = (_mentioning(candidate.name, own, prose.folded)
             or _mentioning(candidate.name, [s.text for s in said], prose.folded))
    if found or candidate.definition or candidate.section < 0:
        return found
    return _most_on_topic(candidate.name, own)


def _mentioning(name: str, pool: list[str], folded: dict[str, str]) -> str:
    """The sentence of `pool` that best explains `name` by naming it ("" when none names it but in passing):
    as written first, then (a plain word or phrase) in any case and number (`folded`: each in lower case)."""
    plain = len(name) > 3 and not (_CODE_TERM.fullmatch(name) or name.startswith("-"))  # "os" is named as written
    for fold in (False, True) if plain else (False,):
        needle = name.lower().rstrip("s") if fold else name
        near = [text for text in pool if needle in (folded[text] if fold else text)]  # quick, before the words
        found = [(_aptness(at, text), text) for text in near if (at := _named_at(name, text, fold)) >= 0]
        best = min(found, key=lambda pair: pair[0], default=None)
        if best and best[0] < 3:
            return best[1]
    return ""


def _named_at(name: str, text: str, fold: bool) -> int:
    """Where `text` names `name` as a term of its own (-1: nowhere); `fold`: in any case, singular or plural."""
    if fold:
        text, name = text.lower(), name.lower()
        name = name[:-1] if name.endswith("s") and not name.endswith("ss") else name
    start = text.find(name)
    while start >= 0:
        end = start + len(name)
        if _apart(text, start, end + (fold and text[end:end + 1] == "s")):
            return start
        start = text.find(name, start + 1)
    return -1


def _apart(text: str, start: int, end: int) -> bool:
    """True when text[start:end] is not part of a longer name ("dumps" in "json.dumps", "json" in "json.dumps");
    a full stop may end it."""
    after = text[end:end + 1]
    if after == ".":
        after = text[end + 1:end + 2]  # a full stop ends it; a dot before a name continues it
    return not (start and _joins(text[start - 1])) and not (after and _joins(after))


def _joins(char: str) -> bool:
    return char.isalnum() or char in "_.-"


def _most_on_topic(heading: str, pool: list[str]) -> str:
    """The sentence of `pool` that says most of `heading`'s words (their stems), the first on a tie; else
    the first that does not lean on the one before ("Therefore, ...") nor announce a list."""
    stems = {word.lower()[:5] for word in re.findall(r"[A-Za-z]{4,}", heading)} - {"with", "from", "that", "your"}
    said = [(sum(stem in text.lower() for stem in stems), -index, text) for index, text in enumerate(pool)]
    best = max(said, default=(0, 0, ""))
    if best[0]:
        return best[2]
    return next((text for text in pool if not _LEANING.match(text) and not text.endswith(":")), "")


_LEANING = re.compile(r"(?:therefore|thus|however|also|then|so|instead|otherwise|first|next)\b", re.IGNORECASE)


_POINTER = re.compile(r"\b[Ss]ee\b|for more information|for details")


def _aptness(start: int, text: str) -> int:
    """How well a sentence that names a term at `start` explains it (lower is better): one that opens with the
    term, then one naming it early; a pointer elsewhere ("See X for more information") last."""
    if _POINTER.search(text):
        return 3
    return 0 if start < 40 else 1
