"""A page's prose as the offline analyser reads it: whole sentences (code, navigation and fragments left out),
the terms it defines, and which headings say something specific."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from ..models import ParsedDoc

__all__ = ["Sentence", "Term", "ProseSection", "Prose", "read_prose", "sentences", "clause_cut", "is_generic"]


@dataclass(frozen=True)
class Sentence:
    """A whole sentence of the page's prose."""

    text: str
    section: int = -1  # index into Prose.sections
    aside: str = ""  # "note", "warning", ... when it stands in an admonition
    position: int = 0  # its place on the page
    defines: bool = False  # it is part of a term's definition ("Return the base name of pathname path.")


@dataclass(frozen=True)
class Term:
    """A term the page defines: a definition-list entry, an API signature, a `term — meaning` line."""

    name: str  # as shown: "json.dumps", "-e, --echo", "fillfactor"
    key: str  # as the text mentions it ("--echo")
    definition: str
    section: int
    dashed: bool = False  # defined on its own line, `term — meaning`


@dataclass(frozen=True)
class ProseSection:
    """A section of the page as its prose shows it."""

    heading: str  # without its numbering ("5.4.1. Check Constraints" → "Check Constraints")
    level: int
    chars: int  # of prose
    has_sentences: bool
    aside: bool  # a "Note" or "Warning" box the generator made a section of


@dataclass
class Prose:
    """A page's prose: its sections, whole sentences and defined terms, in page order."""

    title: str
    subject: str  # what the page is about, from its title ("json — JSON encoder and decoder" → "json")
    sections: list[ProseSection] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    text: str = ""  # all the prose, code left out
    code: str = ""  # all the code

    @functools.cached_property
    def folded(self) -> dict[str, str]:
        """Each sentence's text in lower case, by its text."""
        return {sentence.text: sentence.text.lower() for sentence in self.sentences}

    @functools.cached_property
    def code_names(self) -> frozenset[str]:
        """The identifiers the page's code uses."""
        return frozenset(re.findall(r"[A-Za-z_]\w*", self.code))

    def section_citing(self, words: str) -> str:
        """The specific heading of the first section whose prose mentions `words` ("" when none does)."""
        for section, text in self._said_under:
            if words in text:
                return section.heading
        return ""

    @functools.cached_property
    def _said_under(self) -> list[tuple[ProseSection, str]]:
        """Each section with a specific heading, and its sentences as one text."""
        said: dict[int, list[str]] = {}
        for sentence in self.sentences:
            said.setdefault(sentence.section, []).append(sentence.text)
        return [(section, " ".join(said[index])) for index, section in enumerate(self.sections)
                if index in said and section.heading and section.heading != self.title
                and not is_generic(section.heading)]


# headings that name a part every page of a kind has, not something this page explains
_GENERIC = {
    "description", "synopsis", "options", "parameters", "arguments", "returns", "return value", "return values",
    "examples", "example", "notes", "note", "see also", "overview", "introduction", "usage", "environment",
    "files", "diagnostics", "compatibility", "history", "bugs", "author", "authors", "summary", "contents",
    "table of contents", "footnotes", "warning", "warnings", "exit status", "outputs", "inputs", "tip", "tips",
    "caution", "important", "danger", "attention", "hint", "errors", "references", "reference", "details",
    "background", "conclusion", "prerequisites", "requirements", "index", "navigation", "search", "prev",
    "previous", "next", "up", "home", "related", "related topics", "this page", "quick search", "previous topic",
    "next topic", "getting help", "last update", "deprecated", "availability", "source code", "raises",
    "yields", "attributes", "methods", "properties", "limitations", "discussion", "what's next", "next steps",
    "further reading", "more information", "copyright", "license", "acknowledgements", "glossary", "faq",
    "removed", "optimizations", "new features", "improved modules", "other language changes", "new modules",
    "build changes", "miscellaneous", "credits", "changes", "changelog", "release notes", "what's new",
}
# headings that name the kind of entries a reference section lists; a page may still be about one ("Classes")
_KINDS = {"functions", "classes", "exceptions", "constants", "methods", "attributes", "data", "objects", "types",
          "module contents", "api", "api reference", "functions and classes", "classes and functions",
          "helper functions", "utility functions", "utilities", "commands", "fields", "settings", "arguments",
          "configuration", "installation", "setup"}
_GENERIC_WORDS = {"basic", "quick", "more", "other", "general", "simple", "additional", "further", "short",
                  "brief", "a", "an", "the", "and", "of", "some", "usage", "examples", "example", "notes",
                  "note", "overview", "introduction", "summary", "details", "options", "tips", "see", "also",
                  "bugfixes", "bug", "fixes", "security", "minor", "major", "features", "changes", "backwards",
                  "incompatible", "deprecated", "removed", "new", "misc", "miscellaneous", "in", "to", "release"}
_DATE = re.compile(r"\b(january|february|march|april|may|june|july|august|september|october|november|december)"
                   r"\b.*\d{4}|^[\d\s.,/-]+$")
# a note on when or how stable, not what: "Changed in version 3.8: ...", "Return value: New reference."
_VERSIONED = re.compile(r"^(changed|new|added|deprecated) (in|since) version\b|^return value: \w+ reference|"
                        r"^part of the stable abi", re.IGNORECASE)
_ASIDES = {"note", "warning", "tip", "important", "caution", "danger", "attention", "hint", "see also", "seealso"}
_NUMBERING = re.compile(r"^(?:(?:chapter|appendix|part|section)\s+)?(?:[A-Z]|[IVX]+|\d+)(?:\.\d+)*\.?\s+"
                        r"(?=\S)|\s*[¶#]$", re.IGNORECASE)


def is_generic(name: str, kinds: bool = True) -> bool:
    """True for a heading such as "Description", "See Also" or "Basic Usage": it names no concept (nor, with
    `kinds`, one such as "Functions" that names the kind of entries listed under it)."""
    key = _NUMBERING.sub("", name).strip(" :.").lower()
    if key in _GENERIC or kinds and key in _KINDS or all(word in _GENERIC_WORDS for word in key.split()):
        return True
    return key.startswith("<") or bool(_VERSIONED.match(key) or _DATE.search(key))  # "<no title>", a date


_READ_CHARS = 50_000  # of a page's text: a long page's first 50,000 characters say what it is about and advise


def read_prose(doc: ParsedDoc) -> Prose:
    """`doc`'s prose: each section's lines with code blocks left out, its whole sentences and defined terms (of
    its first _READ_CHARS characters: what it takes to answer, read in about 10 ms at most)."""
    code_lines = {line.strip() for block in doc.code_blocks for line in block.code.splitlines()}
    title = _NUMBERING.sub("", doc.title.strip())
    prose = Prose(title=title, subject=_subject(title), code="\n".join(b.code for b in doc.code_blocks))
    texts, left = [], _READ_CHARS
    for index, section in enumerate(doc.sections):
        if left <= 0:
            break
        text = section.text if len(section.text) <= left else section.text[:left].rpartition("\n")[0]
        left -= len(section.text)
        heading = _NUMBERING.sub("", " ".join(section.heading.split()))
        boxed = heading.lower() in _ASIDES
        lines = _prose_lines(text, code_lines)
        split = [_whole_sentences(line) for line in lines]  # each line's whole sentences
        terms = _terms(lines, split, index)
        definitions = {term.definition for term in terms}
        found = _section_sentences(lines, split, index, heading.lower() if boxed else "", len(prose.sentences),
                                   definitions)
        prose.sentences.extend(found)
        prose.terms.extend(terms)
        prose.sections.append(ProseSection(heading, section.level, sum(map(len, lines)), bool(found), boxed))
        texts.extend(lines)
    prose.text = "\n".join(texts)
    return prose


def _prose_lines(text: str, code_lines: set[str]) -> list[str]:
    """The lines of a section's text that are prose; where code was, an empty line (a term line before a code
    block is not defined by the paragraph after it)."""
    lines: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        prose = line.strip() not in code_lines and not _PROMPTED.match(line)
        if prose and (label := _LABELLED.match(line.strip())):  # "Warning Only set it ...": the box's label
            lines += [label.group(1), _tidy(line.strip()[label.end():])]
        elif prose or lines and lines[-1]:
            lines.append(_tidy(line) if prose else "")
    return lines


_LABELLED = re.compile(r"(Note|Warning|Tip|Important|Caution|Danger|Hint|See also):?\s+(?=[A-Z])")


_PROMPTED = re.compile(r"^\s*(>>>|\.\.\.|\$|[\w.-]+=?[#>])( |$)")


def _tidy(line: str) -> str:
    """A line of prose with footnote marks and the spaces a renderer leaves inside brackets dropped."""
    line = " ".join(line.split())
    loose = "[" in line or " )" in line or "( " in line
    return _LOOSE.sub(r"\1", _FOOTNOTE.sub("", line)) if loose else line


_FOOTNOTE = re.compile(r" \[\d+\]|^\[\d+\] ")
_LOOSE = re.compile(r" ([),;])|(?<=\() ")


def _subject(title: str) -> str:
    """The page's subject from its title: the part before a dash or colon when it names a thing."""
    head = re.split(r" [—–-] |: ", title, maxsplit=1)[0].strip()
    return head if head != title or len(title.split()) <= 4 else ""


def _section_sentences(lines: list[str], split: list[list[str]], section: int, boxed: str, start: int,
                       definitions: set[str]) -> list[Sentence]:
    """A section's whole sentences (`split`: each line's), each marked with the admonition it stands in (`boxed`:
    the section is one) and whether it defines a term; change notes left out."""
    found, aside = [], boxed
    for line, said in zip(lines, split):
        label = line.lower().rstrip(":")
        if label in _ASIDES:
            aside = label  # the paragraph that follows is the admonition's
            continue
        for sentence in said:
            if not _VERSIONED.match(sentence):  # a change note says when, not what
                found.append(Sentence(sentence, section, aside, start + len(found), line in definitions))
        aside = boxed
    return found


# --- sentences ------------------------------------------------------------------------------------------

# a sentence ends before a capital, a quote, a bracket or a digit, or a code name ("object_hook is ...",
# "firstweekday is an integer")
_BREAK = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?=[A-Z`\"'“‘(\d]|[a-z]\w*[_.]\w|[a-z]\w+ (?:is|are) )")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "cf", "vs", "fig", "no", "approx", "mr", "mrs", "dr", "st", "ca", "resp",
                  "incl", "esp", "viz", "al", "ed", "vol", "pp", "sec", "ch"}
_FRAGMENT_START = {"and", "or", "but", "the", "a", "an", "of", "to", "in", "on", "for", "with", "which", "that",
                   "is", "are", "as", "by", "from", "at", "if", "then", "than", "so", "when", "while", "where",
                   "because", "however", "it", "this", "these", "those", "be", "was", "were", "has", "have",
                   "not", "no", "its", "their", "into", "such", "also", "only", "more", "most", "see", "via",
                   "otherwise", "thus", "therefore", "hence", "even", "just", "both", "either", "neither",
                   "instead", "rather", "whether", "since", "unless", "until", "after", "before", "once", "each",
                   "all", "any", "some", "many", "other", "another", "can", "will", "would", "should", "must",
                   "may", "you", "we", "they", "he", "she", "there", "here", "what", "how", "why", "who"}
_VERBISH = re.compile(r"\b(is|are|was|were|be|been|being|can|cannot|could|will|would|must|should|may|might|has|"
                      r"have|had|does|do|did|need|needs|returns?|means?|lets?|makes?|uses?|gives?|takes?|"
                      r"allows?|provides?|contains?|\w{3,}(?<!ss)(?<!ous)(?<!is)s|\w{3,}ed)\b")


def sentences(text: str) -> list[Sentence]:
    """The whole sentences in `text` (line by line: a line break ends a sentence): each starts as a sentence
    does, ends with . ! or ?, and has a verb; a line the parser split mid-sentence gives none."""
    found = [sentence for line in text.splitlines() for sentence in _whole_sentences(line)]
    return [Sentence(sentence, position=index) for index, sentence in enumerate(found)]


def _whole_sentences(line: str) -> list[str]:
    """The whole sentences of one line: it is split after . ! or ? (not after an abbreviation such as "e.g.")."""
    found, start = [], 0
    for match in _BREAK.finditer(line):
        word = line[line.rfind(" ", start, match.start()) + 1:match.start()]
        if word.lower().lstrip("(\"'").rstrip(".") not in _ABBREVIATIONS:
            found.append(line[start:match.end()].strip())
            start = match.end()
    found.append(line[start:].strip())
    return [sentence for sentence in found if _whole(sentence)]


def _whole(text: str) -> bool:
    """True when `text` reads as a whole sentence, not a fragment, a synopsis or a line of code."""
    if text.rstrip("\"'”’)]")[-1:] not in (".", "!", "?") or text.endswith(("...", "…")) or len(text) < 20:
        return False
    spaces = text.count(" ")  # the text is tidy: one space between words
    first = text.split(" ", 1)[0]
    if spaces < 3 or first[0].islower() and first.lower() in _FRAGMENT_START:
        return False  # the tail of a sentence the parser split
    if _GRAMMAR.search(text):
        return False  # a syntax synopsis
    if _CODE_MARKS.search(text) and len(_SYMBOLS.findall(text)) > 0.25 * len(text):
        return False  # code or output
    return spaces >= 5 or bool(_VERBISH.search(text.lower())) or first.lower() in _IMPERATIVES


_GRAMMAR = re.compile(r" \| |\[ | \]|\{ ")
_CODE_MARKS = re.compile(r"[=_{}\[\]<>;/\\|0-9]")  # what prose has few of and code or output many
_SYMBOLS = re.compile(r"[^\w\s]|[\d_]")
_IMPERATIVES = {"use", "set", "add", "run", "call", "create", "avoid", "see", "make", "check", "define", "install",
                "note", "never", "always", "do", "don't", "specify", "pass", "give", "remember", "consider"}

_SUBORDINATE = re.compile(r"(?:if|when|whenever|while|although|though|because|since|unless|once|after|before|"
                          r"as long as|even if|to|in order to|for|with|without|by)\b", re.IGNORECASE)
_CLAUSE_WORDS = {"and", "or", "but", "which", "who", "whose", "where", "when", "while", "because", "since",
                 "unless", "although", "though", "if", "so", "that", "whereas", "until", "before", "after"}
_WEAK_ENDS = _FRAGMENT_START | {"must", "should", "can", "may", "will", "would", "could", "you", "we", "they",
                                "not", "any", "all", "each", "every", "your", "our", "his", "her", "one"}


def clause_cut(text: str, limit: int, keep: str = "", least: float = 0.0) -> str:
    """`text` when it fits `limit` characters; else its longest start that ends at a clause boundary (a comma,
    semicolon, colon, dash or bracket, or before "and", "which", "because" ...), keeps the words `keep` and at
    least `least` of the text, and fits, with "…"; "" when there is none (the caller passes it over)."""
    if len(text) <= limit:
        return text
    opening = _SUBORDINATE.match(text)  # "Although X, Y": a cut must keep some of Y
    floor = text.find(", ") + 1 if opening else 0
    cuts = [m.start() for m in re.finditer(r"[,;:](?= )| (?=[—–(] )| (?=\()", text)]
    cuts += [m.start() for m in re.finditer(r" (?=(\w+) )", text) if m.group(1).lower() in _CLAUSE_WORDS]
    for cut in sorted(cuts, reverse=True):
        head = text[:cut].rstrip(" ,;:—–-")
        if cut > floor and len(head) < limit and _ends_a_clause(head):
            if keep.lower() in text.lower() and keep.lower() not in head.lower() or len(head) < least * len(text):
                return ""
            return head + "…"
    return ""


def _ends_a_clause(head: str) -> bool:
    """True when `head` can stand as a clause: four words or more, its brackets closed, and not ending on a word
    that wants more ("must", "the", "of") nor on a stray mark."""
    words = head.split()
    last = words[-1] if words else ""
    return (len(words) >= 4 and head.count("(") <= head.count(")") and last.lower() not in _WEAK_ENDS
            and (last[-1].isalnum() or last[-1] in ")`'\""))


# --- defined terms --------------------------------------------------------------------------------------

# an API signature: "json.dumps(obj, *, ...)", "class json.JSONDecoder(...)", "int PyCell_Set(PyObject *cell, ...)"
_SIGNATURE = re.compile(r"^(?:[A-Za-z_]\w*[\s*]+)*\**([A-Za-z_][\w.]*)(\(.*\))?(?:\s*(?:→|->)\s*.+)?$")
_DECLARED = re.compile(r"^(?![A-Z]+ )(?:\w+\s+)+\**[A-Za-z]\w*(?:_\w|[a-z][A-Z])\w*$")
_DASHED = re.compile(r"^(\S[^—–]{0,40}?) [—–] (.{8,})$")


def _terms(lines: list[str], split: list[list[str]], section: int) -> list[Term]:
    """The terms `lines` define: a short term line followed by its explanation, a line of whole sentences
    (a definition list, an API signature), or `term — meaning` on one line."""
    found = []
    for line, following, said in zip(lines, lines[1:] + [""], split[1:] + [[]]):
        dashed = _DASHED.match(line)
        if dashed and len(dashed.group(1).split()) <= 4 and ", " not in dashed.group(1):  # not an index entry
            found.append(_term(dashed.group(1), line, section, dashed=True))
        elif said and _term_line(line) and _explains(following):
            found.append(_term(line, following, section))
    return [term for term in found if term.name]


_NOT_A_TERM = re.compile(r"[.!?:;,]$|: |\?")  # a sentence, a label and its value, a question


def _term_line(line: str) -> bool:
    """True when `line` may name a term: short (or an API signature), opening with a letter or an option's dash."""
    if not line or len(line) > 60 and not _SIGNATURE.match(line) or not (line[0].isalpha() or line[0] in "-_."):
        return False  # a sentence, or a number in a table ("999th")
    if _NOT_A_TERM.search(line) or line.lower() in _ASIDES or len(line.split()) > 6 and "(" not in line:
        return False
    first = line.split()[0]
    return not (first.islower() and first in _FRAGMENT_START) and not is_generic(line)


def _explains(line: str) -> bool:
    """True when `line` may be the explanation of the term line above it."""
    return len(line) >= 25 and line[:1].isupper() and not _VERSIONED.match(line)


def _term(raw: str, definition: str, section: int, dashed: bool = False) -> Term:
    """A term as shown and as mentioned: an API signature by its name, joined options split ("-e--echo" →
    "-e, --echo"), a trailing type dropped ("fillfactor (integer)")."""
    signature = _SIGNATURE.match(raw)
    if signature and (signature.group(2) or "." in signature.group(1)) and not signature.group(1).isupper():
        name = signature.group(1) + ("()" if "." not in signature.group(1) else "")
    elif raw.startswith("-"):  # "-h host, --host=host" → "-h, --host"
        options = re.sub(r"(?<=[\w\]>])(?=--\w)", ", ", raw).split(", ")
        name = ", ".join(re.split(r"[ =\[]", option)[0] for option in options)
    elif _DECLARED.match(raw):  # "PyTypeObject PyCell_Type", "type PyCellObject": a C declaration, by its name
        name = raw.split()[-1].lstrip("*")
    else:  # "fillfactor (integer)" → "fillfactor", "LIKE source_table [ like_option ... ]" → "LIKE source_table"
        name = re.split(r" [(\[{]", raw)[0].strip()
    if len(name) > 40:
        name = name.split(", ")[0] if len(name.split(", ")[0]) <= 40 else ""
    key = name.split(", ")[-1] if name.startswith("-") else name.split(".")[-1].rstrip("()")
    return Term(name, key, definition, section, dashed)
