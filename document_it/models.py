"""The data that flows through the pipeline, stage by stage."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DocRef",
    "NO_TOPIC",
    "Fetched",
    "Chunk",
    "Link",
    "Section",
    "PagePlace",
    "CodeBlock",
    "ParsedDoc",
    "DocStatus",
    "DocResult",
    "Task",
    "PAGE_TASKS",
    "ROOT_TOPIC",
]


class Task(str, enum.Enum):
    """One kind of question asked of the model; the value names the output field.

    Defined here rather than with the prompts so that settings can name tasks without importing pydantic."""

    SUMMARY = "summary"
    KEY_CONCEPTS = "key_concepts"
    IMPLEMENTATION_DETAILS = "implementation_details"
    CODE_PATTERNS = "code_patterns"
    RELATED_TOPICS = "related_topics"
    TOPIC_SYNTHESIS = "topic_synthesis"
    CHUNK_NOTES = "chunk_notes"  # notes on one piece of a page too long for the model's window
    TEXT = "text"  # a free-form prompt answered in plain text (the public patterns API)


ROOT_TOPIC = "(root)"  # the topic of a page at the top of its site (no section)

PAGE_TASKS = (Task.SUMMARY, Task.KEY_CONCEPTS, Task.IMPLEMENTATION_DETAILS, Task.CODE_PATTERNS,
              Task.RELATED_TOPICS)


@dataclass(frozen=True)
class DocRef:
    """A page to analyse: where it lives and which topic it belongs to."""

    url: str
    title: str = ""
    topic: str = ""
    note: str = ""


@dataclass(frozen=True)
class Fetched:
    """The raw bytes of one page, or the reason there are none."""

    ref: DocRef
    final_url: str
    content: bytes = b""
    content_type: str = ""
    encoding: str | None = None
    status: int | None = None
    error: str | None = None
    seconds: float = 0.0
    validators: dict[str, str] = field(default_factory=dict)  # ETag / Last-Modified, for conditional GETs

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Section:
    """A heading and the text under it."""

    heading: str
    level: int
    text: str


@dataclass(frozen=True)
class CodeBlock:
    """A code sample found on the page."""

    code: str
    language: str = ""


@dataclass(frozen=True)
class Link:
    """An absolute link found in the page's content, with its anchor text."""

    url: str
    text: str = ""


@dataclass(frozen=True)
class Chunk:
    """A token-sized slice of a page's text."""

    index: int
    text: str
    tokens: int


@dataclass(frozen=True)
class PagePlace:
    """Where a page sits in its site: the page one level up in the site's navigation and its name, and the
    site's name as the page's <title> gives it ("Models — Django documentation" → "Django documentation")."""

    up: str = ""
    up_title: str = ""
    site: str = ""


@dataclass(frozen=True)
class ParsedDoc:
    """A page turned into structured text."""

    url: str
    title: str
    topic: str
    text: str
    headings: tuple[str, ...] = ()
    sections: tuple[Section, ...] = ()
    links: tuple[Link, ...] = ()
    outlinks: tuple[str, ...] = ()  # every http(s) link on the page, navigation included (for crawling)
    code_blocks: tuple[CodeBlock, ...] = ()
    chunks: tuple[Chunk, ...] = ()
    tokens: int = 0
    fmt: str = "html"
    place: PagePlace = PagePlace()
    markdown: str = ""  # the content as clean Markdown (markdown_page.py), for pages/ and llms-full.txt

    @property
    def text_tokens(self) -> int:
        """The page's own text in estimated tokens: its chunks' tokens summed (what the parser kept)."""
        return sum(chunk.tokens for chunk in self.chunks)


NO_TOPIC = "(no topic)"  # the topic of pages that have none, in syntheses and the report


class DocStatus(str, enum.Enum):
    """Where one document ended up."""

    COMPLETED = "completed"
    FAILED = "failed"


@dataclass
class DocResult:
    """One line of results.jsonl."""

    url: str
    title: str
    topic: str
    status: DocStatus
    error: str | None = None
    provider: str = ""
    model: str = ""
    analysis: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    fallback_tasks: list[str] = field(default_factory=list)  # parts answered by the offline analyser
    fields: dict[str, Any] | None = None  # --extract-fields: each field's value (None when the page does not say)
    tasks: list[str] | None = None  # --tasks: the page analyses asked (None: not recorded, as before --tasks)
    text_tokens: int = 0  # the page's own text in estimated tokens (ParsedDoc.text_tokens); 0: never parsed
    reused: bool = False  # the analysis was not made this run: the cache held it, or an unchanged page kept its last
    place: dict[str, str] | None = None  # PagePlace's fields: topics and the site's name for a crawl or sitemap

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON takes them; nested values are shared, not copied (every caller serialises it)."""
        data = dict(vars(self))
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DocResult":
        return cls(**{**data, "status": DocStatus(data["status"])})
