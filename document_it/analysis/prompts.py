"""Prompt templates and the pydantic schemas every answer must validate against."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Union

from pydantic import BaseModel, Field, create_model

from ..models import PAGE_TASKS, ParsedDoc, Task

__all__ = [
    "PROMPT_VERSION",
    "Task",
    "PAGE_TASKS",
    "Summary",
    "KeyConcept",
    "KeyConcepts",
    "ImplementationDetail",
    "ImplementationDetails",
    "CodePattern",
    "CodePatterns",
    "RelatedTopic",
    "RelatedTopics",
    "TopicSynthesis",
    "PageAnalysis",
    "TopicInput",
    "Context",
    "render",
    "render_batch",
    "with_schema",
    "batch_schema",
    "BATCH_NOTE",
    "schema_for",
    "PAGE_TOKEN_BUDGET",
]

PROMPT_VERSION = "1"
PAGE_TOKEN_BUDGET = 3000  # page text sent per prompt; longer pages send their first chunks


class Summary(BaseModel):
    summary: str = Field(description="Three to five sentences: what the page explains and for whom.")


class KeyConcept(BaseModel):
    name: str = Field(description="The concept, as the page names it.")
    description: str = Field(description="One sentence explaining it.")
    importance: int = Field(ge=1, le=10, description="1 (peripheral) to 10 (central to the page).")


class KeyConcepts(BaseModel):
    items: list[KeyConcept]


class ImplementationDetail(BaseModel):
    title: str = Field(description="A short imperative title.")
    description: str = Field(description="What to do and why, from the page.")


class ImplementationDetails(BaseModel):
    items: list[ImplementationDetail]


class CodePattern(BaseModel):
    name: str
    description: str
    example: str = Field(description="A short code example taken from or modelled on the page.")


class CodePatterns(BaseModel):
    items: list[CodePattern]


class RelatedTopic(BaseModel):
    name: str
    relationship: str = Field(description="How it relates to this page.")


class RelatedTopics(BaseModel):
    items: list[RelatedTopic]


class TopicSynthesis(BaseModel):
    overview: str = Field(description="A paragraph tying the topic's pages together.")
    key_themes: list[str] = Field(description="The recurring ideas across the pages.")


class PageAnalysis(BaseModel):
    """The merged per-page result that results.jsonl carries; analyses not asked (--tasks) stay empty,
    so every reader finds the same five fields."""

    summary: str = ""
    key_concepts: list[KeyConcept] = Field(default_factory=list)
    implementation_details: list[ImplementationDetail] = Field(default_factory=list)
    code_patterns: list[CodePattern] = Field(default_factory=list)
    related_topics: list[RelatedTopic] = Field(default_factory=list)


@dataclass(frozen=True)
class TopicInput:
    """What a topic synthesis sees: each page's title, summary and main concepts."""

    topic: str
    pages: tuple[tuple[str, str, tuple[str, ...]], ...]


Context = Union[ParsedDoc, TopicInput]


_SCHEMAS: dict[Task, type[BaseModel]] = {
    Task.SUMMARY: Summary,
    Task.KEY_CONCEPTS: KeyConcepts,
    Task.IMPLEMENTATION_DETAILS: ImplementationDetails,
    Task.CODE_PATTERNS: CodePatterns,
    Task.RELATED_TOPICS: RelatedTopics,
    Task.TOPIC_SYNTHESIS: TopicSynthesis,
}

_SYSTEM = ("You analyse technical documentation for engineers. Answer only from the material given; "
           "be specific and concise.")

_INSTRUCTIONS = {
    Task.SUMMARY: "Summarise this documentation page in three to five sentences.",
    Task.KEY_CONCEPTS: "List the key concepts this page introduces or relies on (at most 8), "
                       "each with a one-sentence description and an importance from 1 to 10.",
    Task.IMPLEMENTATION_DETAILS: "List the concrete implementation advice the page gives (at most 8): "
                                 "steps, settings, rules and warnings a developer must follow.",
    Task.CODE_PATTERNS: "List the code patterns the page shows (at most 6), each with a short example. "
                        "Return an empty list if the page has no code.",
    Task.RELATED_TOPICS: "List topics related to this page (at most 8) and how each relates, "
                         "using the links and references it makes.",
    Task.TOPIC_SYNTHESIS: "These pages form one topic of a documentation site. Write an overview that "
                          "ties them together and list the key themes they share.",
}


def schema_for(task: Task) -> type[BaseModel]:
    """The pydantic model the answer to `task` must validate against."""
    return _SCHEMAS[task]


def render(task: Task, context: Context) -> list[tuple[str, str]]:
    """The chat messages for one task (json mode adds the schema with `with_schema` when it sends)."""
    return [("system", _SYSTEM), ("user", f"{_INSTRUCTIONS[task]}\n\n{_material(context)}")]


BATCH_NOTE = "\n\nAnswer each of the items below on its own, as if it were the only one."


def render_batch(task: Task, items: list[tuple[str, Context]]) -> list[tuple[str, str]]:
    """One prompt for several items of the same task: the instructions once, then each item with its id."""
    blocks = "".join(f'\n\n<item id="{item_id}">\n{_material(context)}\n</item>' for item_id, context in items)
    note = f'{BATCH_NOTE} Reply with "results": one entry per item, with its "id" and its "result".'
    return [("system", _SYSTEM), ("user", f"{_INSTRUCTIONS[task]}{note}{blocks}")]


@functools.cache
def batch_schema(task: Task) -> type[BaseModel]:
    """The reply schema of a batched request: a list of (id, result) pairs."""
    schema = schema_for(task)
    item = create_model(f"{schema.__name__}Item", id=(str, ...), result=(schema, ...))
    return create_model(f"{schema.__name__}Batch", results=(list[item], ...))  # type: ignore[valid-type]


def with_schema(messages: list[tuple[str, str]], schema: type[BaseModel]) -> list[tuple[str, str]]:
    """`messages` with the system prompt spelling out `schema` (json mode constrains only to "some JSON")."""
    spelled = json.dumps(schema.model_json_schema(), indent=1)
    note = _SYSTEM + f"\nReply with one JSON object that validates against this JSON Schema:\n```json\n{spelled}\n```"
    return [(role, note if role == "system" and text == _SYSTEM else text) for role, text in messages]


def _material(context: Context) -> str:
    if isinstance(context, TopicInput):
        lines = [f"Topic: {context.topic}"]
        for title, summary, concepts in context.pages:  # summary and concepts are empty when not asked
            lines.append(f"- {title}" + (f": {summary}" if summary else "")
                         + (f" (concepts: {', '.join(concepts)})" if concepts else ""))
        return "\n".join(lines)
    text, used = [], 0
    for chunk in context.chunks:
        if used + chunk.tokens > PAGE_TOKEN_BUDGET and text:
            break
        text.append(chunk.text)
        used += chunk.tokens
    links = "\n".join(f"- {link.text or link.url} <{link.url}>" for link in context.links[:30])
    return (f"Page: {context.title}\nURL: {context.url}\nSection: {context.topic or '(none)'}\n\n"
            f"---\n{chr(10).join(text)}\n---" + (f"\n\nLinks on the page:\n{links}" if links else ""))
