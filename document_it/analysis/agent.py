"""The per-page LangGraph agent: a page too long for one prompt of the model's window is first read chunk by
chunk (map, then collapse until the notes fit), then the chosen analyses (--tasks, all five by default) run
as parallel branches over the page (or its notes) and merge (reduce). A branch whose prompt the server
refuses as too long (its window is smaller than announced) has the page read in chunks and asks again."""

from __future__ import annotations

import asyncio
import operator
from dataclasses import replace
from typing import Annotated, Any, Awaitable, Callable, Sequence, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

from ..config import page_tasks
from ..errors import LLMFatalError
from ..models import Chunk, ParsedDoc
from ..parse import chunk_text
from ..tokens import estimate_tokens
from .context import LLMContextError
from .gateway import Gateway
from .patterns import aparallel_query
from .prompts import PAGE_TASKS, PageAnalysis, Task, TopicInput, TopicSynthesis

__all__ = ["PageAgent", "synthesize_topics", "task_key", "read_in_chunks", "MAP_PROMPT", "COLLAPSE_PROMPT"]

_MAP_PARALLEL = 8  # chunk notes of one page in flight at once (the gateway's window bounds the whole run)


class PageState(TypedDict, total=False):
    source: ParsedDoc  # the page as parsed
    page: ParsedDoc  # what the analyses read: the page, or notes on its chunks when it is too long
    parts: Annotated[dict[str, Any], operator.or_]  # each branch adds its field; the reducer merges
    analysis: PageAnalysis


Reread = Callable[[ParsedDoc], Awaitable[ParsedDoc]]


def _branch(gateway: Gateway, task: Task, reread: Reread):
    async def node(state: PageState) -> dict[str, Any]:
        page = state["page"]
        for attempt in range(3):
            try:
                answer = await gateway.ask(task, page)
                break
            except LLMContextError as exc:  # the server's window is smaller than we knew: read it in chunks
                if attempt == 2 or not exc.shrunk:
                    raise
                page = await reread(state["source"])
        value = answer.summary if task is Task.SUMMARY else answer.items  # type: ignore[attr-defined]
        return {"parts": {task.value: value}}

    node.__name__ = task.value
    return node


# the map step of a long page: one note per chunk, by the sub-model, in parallel
MAP_PROMPT = ("Write compact notes (at most 120 words) on this part of a documentation page: the facts, APIs, "
              "options, advice and code it contains. Plain text, no preamble.\n\n{chunk}")
# the collapse step, when the notes themselves are too long for one prompt: neighbouring notes merged
COLLAPSE_PROMPT = ("Merge these notes on consecutive parts of one documentation page into one set of compact notes "
                   "(at most 160 words), keeping every fact, API, option and piece of advice. Plain text, no "
                   "preamble.\n\n{chunk}")
_COLLAPSE_ROUNDS = 3


async def read_in_chunks(gateway: Gateway, sub_model: str | None, page: ParsedDoc,
                         tasks: Sequence[Task] = PAGE_TASKS) -> ParsedDoc:
    """`page` with its chunks replaced by notes on each (map), merged in neighbouring groups until they fit
    one prompt of each of `tasks` (collapse); every chunk is cut to what the model's window holds. The page
    itself when every note failed."""
    sub = gateway.sibling(sub_model)

    async def ask(prompt: str) -> str:
        return (await sub.complete(prompt)).text

    room = sub.note_room(MAP_PROMPT)
    pieces = [piece for chunk in page.chunks
              for piece in ([chunk.text] if chunk.tokens <= room else [c.text for c in chunk_text(chunk.text, room)])]
    total = len(pieces)
    parts = [f"Page: {page.title}\nPart {i + 1} of {total}\n\n{text}" for i, text in enumerate(pieces)]
    notes = await aparallel_query(MAP_PROMPT, parts, llm=ask, max_parallel=_MAP_PARALLEL)
    kept = [f"[part {i + 1} of {total}] {note.strip()}" for i, note in enumerate(notes)
            if not note.startswith("Error: ")]
    if not kept:  # every note failed: analyse the page's first chunks as before
        return page
    room = sub.note_room(COLLAPSE_PROMPT)
    for _ in range(_COLLAPSE_ROUNDS):
        digested = _with_notes(page, kept)
        if len(kept) < 2 or gateway.page_fits(digested, tasks):
            return digested
        groups = _groups(kept, room)
        if len(groups) == len(kept):  # no two neighbours fit one prompt together
            break
        merged = await aparallel_query(COLLAPSE_PROMPT, ["\n\n".join(group) for group in groups], llm=ask,
                                       max_parallel=_MAP_PARALLEL)
        kept = [note.strip() if not note.startswith("Error: ") else "\n".join(group)
                for note, group in zip(merged, groups)]
    return _with_notes(page, kept)


def _with_notes(page: ParsedDoc, notes: list[str]) -> ParsedDoc:
    return replace(page, chunks=tuple(Chunk(i, note, estimate_tokens(note)) for i, note in enumerate(notes)))


def _groups(notes: list[str], room: int) -> list[list[str]]:
    """Neighbouring notes in groups of at most `room` tokens (a note larger than that is a group alone)."""
    groups: list[list[str]] = []
    used = 0
    for note in notes:
        tokens = estimate_tokens(note) + 1
        if groups and used + tokens <= room:
            groups[-1].append(note)
            used += tokens
        else:
            groups.append([note])
            used = tokens
    return groups


def _digest(gateway: Gateway, tasks: Sequence[Task], reread: Reread):
    async def digest(state: PageState) -> dict[str, Any]:
        """Replace a page too long for one prompt by notes on its chunks (no-op for pages that fit)."""
        page = state["page"]
        if not gateway.provider.is_llm or gateway.page_fits(page, tasks):
            return {}
        return {"page": await reread(page)}

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
        self._reads: dict[tuple[Any, ...], asyncio.Task[ParsedDoc]] = {}
        graph = StateGraph(PageState)
        graph.add_node("digest", _digest(gateway, self.tasks, self._reread))
        graph.add_node("merge", _merge)
        graph.add_edge(START, "digest")
        for task in self.tasks:
            graph.add_node(task.value, _branch(gateway, task, self._reread))
            graph.add_edge("digest", task.value)
            graph.add_edge(task.value, "merge")
        graph.add_edge("merge", END)
        self.graph = graph.compile()

    async def _reread(self, page: ParsedDoc) -> ParsedDoc:
        """`page` read chunk by chunk, once per page and window size however many branches ask."""
        key = (page.url, *self.gateway.window_state())
        if key not in self._reads:
            self._reads[key] = asyncio.ensure_future(read_in_chunks(self.gateway, self.sub_model, page, self.tasks))
        return await asyncio.shield(self._reads[key])

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
        try:
            state = await self.graph.ainvoke({"source": page, "page": page, "parts": {}})
        finally:
            for read in [k for k in self._reads if k[0] == page.url]:
                self._reads.pop(read).cancel()  # a no-op once done; stops one a failed page left behind
        if key is not None and not self.gateway.fell_back.get(page.url):
            memo.set("page", key, state["analysis"].model_dump())
        return state["analysis"]


async def synthesize_topics(gateway: Gateway, topics: list[TopicInput]) -> dict[str, TopicSynthesis | str]:
    """One synthesis per topic, concurrently; a topic whose synthesis fails maps to the reason."""
    async def one(topic: TopicInput) -> TopicSynthesis | str:
        try:
            return await gateway.ask(Task.TOPIC_SYNTHESIS, topic)  # type: ignore[return-value]
        except LLMFatalError:
            raise
        except Exception as exc:  # recorded in the report, the run goes on
            return f"synthesis failed: {exc}"

    results = await asyncio.gather(*(one(t) for t in topics))
    return {t.topic: r for t, r in zip(topics, results)}
