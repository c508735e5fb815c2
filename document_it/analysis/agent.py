"""The per-page LangGraph agent: a long page is first read chunk by chunk (map), then the chosen analyses
(--tasks, all five by default) run as parallel branches over the page (or its chunk notes) and merge (reduce)."""

from __future__ import annotations

import asyncio
import operator
from dataclasses import replace
from typing import Annotated, Any, Sequence, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

from ..config import page_tasks
from ..models import Chunk, ParsedDoc
from ..tokens import estimate_tokens
from .gateway import Gateway
from .patterns import aparallel_query
from .prompts import PAGE_TASKS, PAGE_TOKEN_BUDGET, PageAnalysis, Task, TopicInput, TopicSynthesis

__all__ = ["PageAgent", "synthesize_topics", "task_key", "MAP_PROMPT"]

_MAP_PARALLEL = 8  # chunk notes of one page in flight at once (the gateway's window bounds the whole run)


class PageState(TypedDict, total=False):
    page: ParsedDoc
    parts: Annotated[dict[str, Any], operator.or_]  # each branch adds its field; the reducer merges
    analysis: PageAnalysis


def _branch(gateway: Gateway, task: Task):
    async def node(state: PageState) -> dict[str, Any]:
        answer = await gateway.ask(task, state["page"])
        value = answer.summary if task is Task.SUMMARY else answer.items  # type: ignore[attr-defined]
        return {"parts": {task.value: value}}

    node.__name__ = task.value
    return node


# the map step of a long page: one note per chunk, by the sub-model, in parallel
MAP_PROMPT = ("Write compact notes (at most 120 words) on this part of a documentation page: the facts, APIs, "
              "options, advice and code it contains. Plain text, no preamble.\n\n{chunk}")


def _digest(gateway: Gateway, sub_model: str | None):
    async def digest(state: PageState) -> dict[str, Any]:
        """Replace a page too long for one prompt by notes on each of its chunks (no-op for short pages)."""
        page = state["page"]
        if page.tokens <= PAGE_TOKEN_BUDGET or len(page.chunks) < 2 or not gateway.provider.is_llm:
            return {}
        sub = gateway.sibling(sub_model)

        async def ask(prompt: str) -> str:
            return (await sub.complete(prompt)).text

        total = len(page.chunks)
        parts = [f"Page: {page.title}\nPart {c.index + 1} of {total}\n\n{c.text}" for c in page.chunks]
        notes = await aparallel_query(MAP_PROMPT, parts, llm=ask, max_parallel=_MAP_PARALLEL)
        kept = [Chunk(i, f"[part {i + 1} of {total}] {note.strip()}", estimate_tokens(note))
                for i, note in enumerate(notes) if not note.startswith("Error: ")]
        if not kept:  # every note failed: analyse the page's first chunks as before
            return {}
        return {"page": replace(page, chunks=tuple(kept))}

    return digest


async def _merge(state: PageState) -> dict[str, Any]:
    return {"analysis": PageAnalysis(**state["parts"])}  # the fields of tasks not asked keep their empty default


def task_key(tasks: Sequence[Task]) -> tuple[str, ...]:
    """What the chosen tasks add to a page's memo key: nothing for all five, so caches made before --tasks
    stay valid, and a run asking fewer never reuses a five-task analysis (nor the reverse)."""
    return () if tuple(tasks) == PAGE_TASKS else ("tasks=" + ",".join(task.value for task in tasks),)


class PageAgent:
    """A compiled StateGraph that analyses one parsed page through the gateway."""

    def __init__(self, gateway: Gateway, sub_model: str | None = None, tasks: Sequence[Task] | None = None) -> None:
        """`tasks`: the analyses to ask; by default those the gateway's settings chose (--tasks, all five
        unless set), so every caller that builds an agent from a run's gateway follows the flag."""
        self.gateway = gateway
        self.sub_model = sub_model
        self.tasks = page_tasks(gateway.settings.tasks if tasks is None else tasks)
        graph = StateGraph(PageState)
        graph.add_node("digest", _digest(gateway, sub_model))
        graph.add_node("merge", _merge)
        graph.add_edge(START, "digest")
        for task in self.tasks:
            graph.add_node(task.value, _branch(gateway, task))
            graph.add_edge("digest", task.value)
            graph.add_edge(task.value, "merge")
        graph.add_edge("merge", END)
        self.graph = graph.compile()

    def memo_key(self, page: ParsedDoc) -> str | None:
        """The memo key of `page`'s whole analysis: same text, model, sub-model and tasks share one."""
        return self.gateway.page_key(page.text, self.sub_model or "", *task_key(self.tasks))

    def remembered(self, page: ParsedDoc) -> PageAnalysis | None:
        """`page`'s analysis from the memo, if a run already made it."""
        key = self.memo_key(page)
        stored = self.gateway.memo.get("page", key) if key is not None else None
        try:
            return PageAnalysis.model_validate(stored) if stored is not None else None
        except ValidationError:
            return None

    async def analyze(self, page: ParsedDoc) -> PageAnalysis:
        """Run every branch for `page` and return the merged, validated analysis (reused for identical text)."""
        remembered = self.remembered(page)
        if remembered is not None:
            return remembered
        memo, key = self.gateway.memo, self.memo_key(page)
        state = await self.graph.ainvoke({"page": page, "parts": {}})
        if key is not None and not self.gateway.fell_back.get(page.url):
            memo.set("page", key, state["analysis"].model_dump())
        return state["analysis"]


async def synthesize_topics(gateway: Gateway, topics: list[TopicInput]) -> dict[str, TopicSynthesis | str]:
    """One synthesis per topic, concurrently; a topic whose synthesis fails maps to the reason."""
    async def one(topic: TopicInput) -> TopicSynthesis | str:
        try:
            return await gateway.ask(Task.TOPIC_SYNTHESIS, topic)  # type: ignore[return-value]
        except Exception as exc:  # recorded in the report, the run goes on
            return f"synthesis failed: {exc}"

    results = await asyncio.gather(*(one(t) for t in topics))
    return {t.topic: r for t, r in zip(topics, results)}
