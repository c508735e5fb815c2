"""The offline analyser: answers every task from the page's own structure, no model involved."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from pydantic import BaseModel

from ..models import ParsedDoc
from .prompts import (
    ChunkInput, ChunkNotes, CodePattern, CodePatterns, Context, ImplementationDetail, ImplementationDetails,
    KeyConcept, KeyConcepts, PageQuestion, Question, RelatedTopic, RelatedTopics, Summary, Task, TopicInput,
    TopicSynthesis,
)
from .schemas import MAX_ITEMS, part_value

__all__ = ["answer", "answer_data", "LABEL"]

LABEL = "extractive (offline, no LLM)"

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(])")
_ADVICE = re.compile(r"\b(should|must|always|never|make sure|ensure|avoid|recommend(?:ed)?|need to|do not|don't)\b",
                     re.IGNORECASE)
_IMPERATIVE = {
    "add", "avoid", "call", "check", "choose", "close", "configure", "create", "define", "deploy", "disable",
    "enable", "ensure", "export", "import", "install", "keep", "limit", "make", "monitor", "pass", "pin",
    "prefer", "register", "remember", "restart", "run", "set", "start", "stop", "use", "wrap", "write",
    "give", "put", "return", "raise", "retry", "send", "store", "test", "turn", "update", "upgrade",
}
_IDENT = re.compile(r"^\s*(?:async\s+)?(?:def|class|function|fn|func)\s+([A-Za-z_][\w]*)|^\s*\$?\s*([\w.-]+)")


def answer(task: Task, context: Context) -> BaseModel:
    """Answer one task for one page (or topic) deterministically from its structure."""
    if isinstance(context, TopicInput):
        return _synthesis(context)
    if isinstance(context, ChunkInput):
        return ChunkNotes(notes=" ".join(_sentences(context.text)[:5]) or context.text[:600])
    return _PAGE_ANSWERS[task](context)


def answer_data(question: Question, context: Context) -> dict:
    """The answer to `question` as plain data: a page question gets every part it asks, as one request would."""
    if isinstance(question, PageQuestion) and isinstance(context, ParsedDoc):
        return {task.value: _dumped(part_value(task, _PAGE_ANSWERS[task](context))) for task in question.tasks}
    return answer(question, context).model_dump()  # type: ignore[arg-type]


def _dumped(value: object) -> object:
    return [item.model_dump() for item in value] if isinstance(value, list) else value


def _sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        out.extend(s.strip() for s in _SENTENCE.split(line) if len(s.strip()) > 20)
    return out


def _prose(doc: ParsedDoc) -> list[str]:
    code = {block.code.strip() for block in doc.code_blocks}
    return [s for sec in doc.sections for s in _sentences(sec.text) if s not in code and not s.startswith(("$", ">>>"))]


def _summary(doc: ParsedDoc) -> Summary:
    lead = " ".join(_prose(doc)[:3])
    topics = [h for h in doc.headings if h != doc.title][:5]
    covers = f" Covers: {', '.join(topics)}." if topics else ""
    return Summary(summary=(lead or doc.title) + covers)


def _key_concepts(doc: ParsedDoc) -> KeyConcepts:
    items = []
    for sec in doc.sections:
        if not sec.heading or sec.heading == doc.title:
            continue
        first = next(iter(_sentences(sec.text)), sec.text[:160])
        weight = 10 - 2 * max(0, sec.level - 2) - (0 if len(sec.text) > 400 else 2)
        items.append(KeyConcept(name=sec.heading, description=first or sec.heading,
                                importance=max(1, min(10, weight))))
    if not items:
        for term, count in Counter(re.findall(r"`([^`]{2,40})`", doc.text)).most_common(MAX_ITEMS[Task.KEY_CONCEPTS]):
            items.append(KeyConcept(name=term, description=f"Mentioned {count} time(s) on the page.",
                                    importance=max(1, min(10, 3 + count))))
    items.sort(key=lambda c: -c.importance)
    return KeyConcepts(items=items[:MAX_ITEMS[Task.KEY_CONCEPTS]])


def _implementation_details(doc: ParsedDoc) -> ImplementationDetails:
    items, seen = [], set()
    for sentence in _prose(doc):
        first = sentence.split(maxsplit=1)[0].lower().strip("`*:,")
        if first in _IMPERATIVE or _ADVICE.search(sentence):
            title = " ".join(sentence.split()[:7]).rstrip(".,:;")
            if title not in seen:
                seen.add(title)
                items.append(ImplementationDetail(title=title, description=sentence))
        if len(items) == MAX_ITEMS[Task.IMPLEMENTATION_DETAILS]:
            break
    return ImplementationDetails(items=items)


def _code_patterns(doc: ParsedDoc) -> CodePatterns:
    items = []
    for block in doc.code_blocks[:MAX_ITEMS[Task.CODE_PATTERNS]]:
        lines = block.code.strip().splitlines()
        match = next((m for m in map(_IDENT.match, lines) if m and (m.group(1) or m.group(2))), None)
        ident = (match.group(1) or match.group(2)) if match else "snippet"
        section = next((s.heading for s in doc.sections if block.code.strip()[:60] in s.text), doc.title)
        lang = block.language or "code"
        items.append(CodePattern(name=f"{ident} ({lang})",
                                 description=f"{lang.capitalize()} example from '{section}'.",
                                 example="\n".join(lines[:12])))
    return CodePatterns(items=items)


def _related_topics(doc: ParsedDoc) -> RelatedTopics:
    host = urlparse(doc.url).netloc
    items = []
    for link in doc.links[:MAX_ITEMS[Task.RELATED_TOPICS]]:
        parsed = urlparse(link.url)
        stem = PurePosixPath(unquote(parsed.path)).stem.replace("-", " ").replace("_", " ")
        name = link.text or stem.capitalize() or parsed.netloc
        where = "linked page in the same documentation" if parsed.netloc == host else f"external reference ({parsed.netloc})"
        items.append(RelatedTopic(name=name, relationship=f"{where}: {link.url}"))
    return RelatedTopics(items=items)


def _synthesis(topic: TopicInput) -> TopicSynthesis:
    titles = [title for title, _, _ in topic.pages]
    themes = Counter(c for _, _, concepts in topic.pages for c in concepts)
    overview = (f"The '{topic.topic}' topic has {len(titles)} page(s): {', '.join(titles[:10])}"
                f"{' and more' if len(titles) > 10 else ''}.")
    return TopicSynthesis(overview=overview, key_themes=[name for name, _ in themes.most_common(6)])


_PAGE_ANSWERS = {
    Task.SUMMARY: _summary,
    Task.KEY_CONCEPTS: _key_concepts,
    Task.IMPLEMENTATION_DETAILS: _implementation_details,
    Task.CODE_PATTERNS: _code_patterns,
    Task.RELATED_TOPICS: _related_topics,
}
