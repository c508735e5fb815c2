"""The per-page LangGraph agent: five analyses run as parallel branches, then merge."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

from ..models import ParsedDoc
from .gateway import Gateway
from .prompts import PAGE_TASKS, PageAnalysis, Task, TopicInput, TopicSynthesis

__all__ = ["PageAgent", "synthesize_topics"]


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


async def _merge(state: PageState) -> dict[str, Any]:
    return {"analysis": PageAnalysis(**state["parts"])}


class PageAgent:
    """A compiled StateGraph that analyses one parsed page through the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        graph = StateGraph(PageState)
        graph.add_node("merge", _merge)
        for task in PAGE_TASKS:
            graph.add_node(task.value, _branch(gateway, task))
            graph.add_edge(START, task.value)
            graph.add_edge(task.value, "merge")
        graph.add_edge("merge", END)
        self.graph = graph.compile()

    async def analyze(self, page: ParsedDoc) -> PageAnalysis:
        """Run every branch for `page` and return the merged, validated analysis (reused for identical text)."""
        memo, key = self.gateway.memo, self.gateway.page_key(page.text)
        if key is not None and (stored := memo.get("page", key)) is not None:
            try:
                return PageAnalysis.model_validate(stored)
            except ValidationError:
                pass
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
