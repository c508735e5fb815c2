"""The answers a model must give: one pydantic model per task, and the combined answer of a page that asks
several tasks in one request (a part per task, each validated on its own)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, model_validator

from ..models import PAGE_TASKS, Task
from .context import ANSWER_TOKENS
from .tolerant import fit, norm_key

__all__ = [
    "Summary", "KeyConcept", "KeyConcepts", "ImplementationDetail", "ImplementationDetails", "CodePattern",
    "CodePatterns", "RelatedTopic", "RelatedTopics", "TopicSynthesis", "ChunkNotes", "PageAnalysis",
    "PageQuestion", "Question", "schema_for", "part_value", "answer_tokens", "PART_ANSWER_TOKENS", "MAX_ITEMS",
    "BRIEF_ITEMS", "Inlined",
]


# the longest list each analysis may give: enough for a page, short enough that a small local model's answer
# (decoded token by token, all parts in one reply) stays quick
MAX_ITEMS = {Task.KEY_CONCEPTS: 6, Task.IMPLEMENTATION_DETAILS: 6, Task.CODE_PATTERNS: 4, Task.RELATED_TOPICS: 6}
# a brief answer (a server that writes slowly, --answers): about half the items and shorter strings
BRIEF_ITEMS = {Task.KEY_CONCEPTS: 3, Task.IMPLEMENTATION_DETAILS: 3, Task.CODE_PATTERNS: 2, Task.RELATED_TOPICS: 3}


class Summary(BaseModel):
    summary: str = Field(description="Three to five sentences: what the page explains and for whom.")


class KeyConcept(BaseModel):
    name: str = Field(description="The concept, as the page names it.")
    description: str = Field(description="One sentence explaining it.")
    importance: int = Field(ge=1, le=10, description="1 (peripheral) to 10 (central to the page).")


class KeyConcepts(BaseModel):
    items: list[KeyConcept] = Field(max_length=MAX_ITEMS[Task.KEY_CONCEPTS])


class ImplementationDetail(BaseModel):
    title: str = Field(description="A short imperative title.")
    description: str = Field(description="What to do and why, from the page.")


class ImplementationDetails(BaseModel):
    items: list[ImplementationDetail] = Field(max_length=MAX_ITEMS[Task.IMPLEMENTATION_DETAILS])


class CodePattern(BaseModel):
    name: str
    description: str
    example: str = Field(description="A short code example taken from or modelled on the page.")


class CodePatterns(BaseModel):
    items: list[CodePattern] = Field(max_length=MAX_ITEMS[Task.CODE_PATTERNS])


class RelatedTopic(BaseModel):
    name: str
    relationship: str = Field(description="How it relates to this page.")


class RelatedTopics(BaseModel):
    items: list[RelatedTopic] = Field(max_length=MAX_ITEMS[Task.RELATED_TOPICS])


def _synthesis_shown(schema: dict[str, Any]) -> None:
    """json_schema_extra of a topic synthesis: bare, and bounded as the model is shown it (a paragraph, a few
    short themes; answers are validated without these bounds)."""
    _plain_fields(schema)
    themes = schema["properties"]["key_themes"]
    themes["maxItems"] = 6
    themes["items"]["maxLength"] = 80


class TopicSynthesis(BaseModel):
    model_config = ConfigDict(json_schema_extra=_synthesis_shown)

    overview: str = Field(description="A paragraph tying the topic's pages together.")
    key_themes: list[str] = Field(description="The recurring ideas across the pages.")


class ChunkNotes(BaseModel):
    # maxLength: a grammar-bound small model closes its notes before the answer limit cuts them (not checked)
    notes: str = Field(description="Compact notes on this part of the page: its facts, APIs, options, advice "
                                   "and code, at most 120 words.", json_schema_extra={"maxLength": 900})


class PageAnalysis(BaseModel):
    """The merged per-page result that results.jsonl carries; analyses not asked (--tasks) stay empty,
    so every reader finds the same five fields."""

    summary: str = ""
    key_concepts: list[KeyConcept] = Field(default_factory=list)
    implementation_details: list[ImplementationDetail] = Field(default_factory=list)
    code_patterns: list[CodePattern] = Field(default_factory=list)
    related_topics: list[RelatedTopic] = Field(default_factory=list)


_SCHEMAS: dict[Task, type[BaseModel]] = {
    Task.SUMMARY: Summary,
    Task.KEY_CONCEPTS: KeyConcepts,
    Task.IMPLEMENTATION_DETAILS: ImplementationDetails,
    Task.CODE_PATTERNS: CodePatterns,
    Task.RELATED_TOPICS: RelatedTopics,
    Task.TOPIC_SYNTHESIS: TopicSynthesis,
    Task.CHUNK_NOTES: ChunkNotes,
}

# what one part of an answer is expected to take, in output tokens (the window keeps room for it)
PART_ANSWER_TOKENS = {
    Task.SUMMARY: 200,
    Task.KEY_CONCEPTS: 320,
    Task.IMPLEMENTATION_DETAILS: 360,
    Task.CODE_PATTERNS: 400,
    Task.RELATED_TOPICS: 260,
}
# and in a brief answer (BRIEF_ITEMS, _BRIEF_LONGEST): about a fifth over the longest the bounds allow
BRIEF_PART_ANSWER_TOKENS = {
    Task.SUMMARY: 70,
    Task.KEY_CONCEPTS: 140,
    Task.IMPLEMENTATION_DETAILS: 130,
    Task.CODE_PATTERNS: 150,
    Task.RELATED_TOPICS: 120,
}
NOTE_ANSWER_TOKENS = 400  # a chunk note: at most 120 words (900 characters), with room to close its JSON


@dataclass(frozen=True)
class PageQuestion:
    """All the analyses one page asks, in one request: the answer has a part per task (a combined schema).
    Hashable, so the batcher queues pages asking the same set together and the memo keys them apart."""

    tasks: tuple[Task, ...] = PAGE_TASKS
    brief: bool = False  # fewer items and shorter strings in the schema shown (longer strings are kept)

    def __post_init__(self) -> None:
        if not self.tasks or any(task not in PART_ANSWER_TOKENS for task in self.tasks):
            raise ValueError(f"a page question asks page analyses, not {self.tasks!r}")

    @property
    def value(self) -> str:
        """Its name in request records and memo keys (the schema in the key tells task sets apart)."""
        return "page"


Question = Union[Task, PageQuestion]


def schema_for(question: Question) -> type[BaseModel]:
    """The pydantic model the answer to `question` must validate against."""
    if isinstance(question, PageQuestion):
        return _combined(question.tasks, question.brief)
    return _SCHEMAS[question]


def answer_tokens(question: Question) -> int:
    """The output tokens an answer to `question` is expected to need (the window keeps that much room)."""
    if isinstance(question, PageQuestion):
        parts = BRIEF_PART_ANSWER_TOKENS if question.brief else PART_ANSWER_TOKENS
        return sum(parts[task] for task in question.tasks)
    if question is Task.CHUNK_NOTES:
        return NOTE_ANSWER_TOKENS
    return ANSWER_TOKENS


def part_value(task: Task, answer: BaseModel) -> Any:
    """The value a task's own answer (Summary, KeyConcepts, ...) gives the page's analysis field."""
    return answer.summary if task is Task.SUMMARY else answer.items  # type: ignore[attr-defined]


# the longest string each field is shown to take, in characters (answers are validated without these bounds):
# a grammar-bound small model stops there instead of rambling on. Every field needs one: without them on the
# one-line fields, SmolLM2 on llama.cpp wrote answers up to the answer limit (1,535 tokens)
_LONGEST = {"summary": 400, "overview": 600, "name": 40, "title": 60, "example": 180, "*": 110}
_BRIEF_LONGEST = {"summary": 220, "name": 30, "title": 40, "example": 100, "*": 70}


def _shown_bare(longest: dict[str, int]) -> Callable[[dict[str, Any]], None]:
    """json_schema_extra: a model's fields shown bare, no title or description each (fewer prompt tokens in every
    request; the prompt's instructions say what each part holds), each string bounded by `longest`."""
    def shown(schema: dict[str, Any]) -> None:
        if schema.get("title") not in ("PageAnswer", "TopicSynthesis"):  # it names the tool; an item's says nothing
            schema.pop("title", None)
        schema.pop("description", None)
        for name, field in (schema.get("properties") or {}).items():
            field.pop("title", None)
            field.pop("description", None)
            if field.get("type") == "string":
                field["maxLength"] = longest.get(name, longest["*"])
            if field.get("type") == "integer":  # the prompt says the range (importance 1-10); answers are clamped
                field.pop("minimum", None)
                field.pop("maximum", None)

    return shown


_plain_fields = _shown_bare(_LONGEST)


def _bare(model: type[BaseModel], longest: dict[str, int]) -> type[BaseModel]:
    """`model` as a combined answer shows it: the same fields, bare, strings bounded by `longest` (values
    validate as `model`)."""
    return type(model.__name__, (model,), {"__module__": __name__, "__doc__": None,
                                           "model_config": ConfigDict(json_schema_extra=_shown_bare(longest))})


_ITEM_MODELS = ((Task.KEY_CONCEPTS, KeyConcept), (Task.IMPLEMENTATION_DETAILS, ImplementationDetail),
                (Task.CODE_PATTERNS, CodePattern), (Task.RELATED_TOPICS, RelatedTopic))
# each part: the type the answer gives it, and the type and bounds the model is shown
_PART_VALUES: dict[Task, Any] = {
    Task.SUMMARY: str,
    **{task: Annotated[list[model], Field(max_length=MAX_ITEMS[task])]  # type: ignore[valid-type]
       for task, model in _ITEM_MODELS},
}
_PART_SHOWN: dict[bool, dict[Task, Any]] = {
    brief: {Task.SUMMARY: (str, ...),
            **{task: (list[_bare(model, longest)], Field(max_length=items[task]))  # type: ignore[misc]
               for task, model in _ITEM_MODELS}}
    for brief, longest, items in ((False, _LONGEST, MAX_ITEMS), (True, _BRIEF_LONGEST, BRIEF_ITEMS))}


@functools.cache
def _combined(tasks: tuple[Task, ...], brief: bool = False) -> type[BaseModel]:
    """The combined answer for `tasks`. Its JSON schema (what the model is shown) requires every part; its
    validation is lenient: each part is fitted and validated on its own, a bad or missing part is dropped
    (None) so that only it is asked again, and the answer fails only when no part at all is valid."""
    # the tool's name is the schema's title: both models are called PageAnswer
    strict = create_model("PageAnswer", __doc__=_ANSWER_DOC,  # type: ignore[call-overload]
                          __config__=ConfigDict(json_schema_extra=_shown_bare(_BRIEF_LONGEST if brief else _LONGEST)),
                          **{task.value: _PART_SHOWN[brief][task] for task in tasks})
    adapters = {task: TypeAdapter(_PART_VALUES[task]) for task in tasks}  # values of the real types

    class Lenient(BaseModel):
        @model_validator(mode="before")
        @classmethod
        def _valid_parts(cls, data: Any) -> Any:
            if not isinstance(data, dict):
                return data  # pydantic says what is wrong
            fitted = fit(strict, data)  # keys in another case, lists too long, numbers out of range
            given = {norm_key(str(key)) for key in data}
            kept: dict[str, Any] = {}
            for task in tasks:
                if norm_key(task.value) not in given:
                    continue  # a part left out is asked again, not taken as empty
                try:
                    value = adapters[task].validate_python(fitted.get(task.value))
                except ValidationError:
                    continue
                if task is Task.SUMMARY and not value.strip():
                    continue  # an empty summary says nothing: ask again
                kept[task.value] = value
            if not kept:
                raise ValueError(f"no part of the answer is valid (asked: {', '.join(t.value for t in tasks)})")
            return kept

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
            return _inline(strict.model_json_schema())  # the model is shown every part, all required

    fields: dict[str, Any] = {task.value: (Optional[_PART_VALUES[task]], None) for task in tasks}
    return create_model("PageAnswer", __base__=Lenient, __module__=__name__, __doc__=_ANSWER_DOC, **fields)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each "$ref" replaced by the definition it names, and no "$defs" (each is used once: the
    references and names only cost prompt tokens in every request)."""
    definitions = schema.get("$defs", {})

    def resolved(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
                return resolved(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolved(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolved(value) for value in node]
        return node

    return resolved(schema)


def _untitled(node: Any, top: bool = True) -> Any:
    """`node` without the titles pydantic gives every model and field below the top (names that say nothing to
    the model and cost prompt tokens; the top one names the tool)."""
    if isinstance(node, dict):
        return {key: _untitled(value, False) for key, value in node.items() if top or key != "title"
                or not isinstance(value, str)}
    if isinstance(node, list):
        return [_untitled(value, False) for value in node]
    return node


class Inlined(BaseModel):
    """A base for the models whose schema goes to the model (a batch's): definitions inline, no inner titles."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _untitled(_inline(super().model_json_schema(*args, **kwargs)))


_ANSWER_DOC = "Every asked analysis of the documentation page, a field per analysis."
