"""The per-page LangGraph agent: one reading per page. A page that fits the model's window goes to the model
once, and one request returns every asked analysis (a combined answer, a part per task); a page too long for
the window is first read in pieces as large as the window holds, one note per piece serving every task, and
the notes are analysed instead. A part of the answer that is missing or invalid is asked again alone, in
parallel with the others (Send), and the parts merge through a reducer. With --task-strategy separate each
analysis is its own request, as parallel branches over the page (or its notes)."""

from __future__ import annotations

import asyncio
import logging
import operator
from dataclasses import replace
from typing import Annotated, Any, Awaitable, Callable, Sequence, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import ValidationError

from ..config import TaskStrategy, page_tasks
from ..errors import BatchDeferred, LLMError, LLMFatalError, LLMTransientError
from ..models import Chunk, ParsedDoc
from ..parse import chunk_text
from ..tokens import estimate_tokens
from .context import LLMContextError
from .gateway import Gateway, LLMUnavailable
from ._calls import gather_all
from .patterns import aparallel_query
from .prompts import PAGE_TASKS, ChunkInput, PageAnalysis, PageQuestion, Question, Task, TopicInput, TopicSynthesis
from .schemas import part_value

__all__ = ["PageAgent", "synthesize_topics", "task_key", "read_in_chunks", "COLLAPSE_PROMPT", "pieces_for_window"]

log = logging.getLogger(__name__)

_NOTES_PARALLEL = 16  # chunk notes of one page submitted at once (the gateway's window bounds the whole run)
# a page read whole by several groups of analyses costs its tokens again per group; past this many tokens read
# again, a note on it (a request, a short answer, the notes read instead) costs less
REREAD_TOKENS = 1200


class PageState(TypedDict, total=False):
    source: ParsedDoc  # the page as parsed
    page: ParsedDoc  # what the analyses read: the page, or notes on its pieces when it is too long
    task: Task  # the one task a re-ask (Send) is about
    parts: Annotated[dict[str, Any], operator.or_]  # one entry per task; the reducer merges
    analysis: PageAnalysis


Reread = Callable[[ParsedDoc], Awaitable[ParsedDoc]]


async def _asked(gateway: Gateway, question: Question, state: PageState, reread: Reread) -> tuple[Any, ParsedDoc]:
    """The answer to `question` over the state's page; a prompt the server refuses as longer than its window
    (smaller than announced) has the page read in pieces for the window it now knows, and asks again."""
    page = state["page"]
    for attempt in range(3):
        try:
            return await gateway.ask(question, page), page
        except LLMContextError as exc:
            if attempt == 2 or not exc.shrunk:
                raise
            page = await reread(state["source"])
    raise AssertionError("unreachable")


def task_groups(tasks: Sequence[Task], fits: Callable[[PageQuestion], bool],
                brief: bool = False) -> list[PageQuestion] | None:
    """The fewest groups of neighbouring `tasks` whose questions each read the whole page (one group, so one
    request, unless the window is small); None when even a task alone cannot read it whole."""
    groups: list[tuple[Task, ...]] = []
    for task in tasks:
        if groups and fits(PageQuestion((*groups[-1], task), brief)):
            groups[-1] = (*groups[-1], task)
        elif fits(PageQuestion((task,), brief)):
            groups.append((task,))
        else:
            return None
    return [PageQuestion(group, brief) for group in groups]


def page_reading(tasks: Sequence[Task], fits: Callable[[PageQuestion], bool],
                 brief: bool = False) -> list[PageQuestion] | None:
    """The questions that read the page whole: every task in one, with full answers (unless `brief`), else with
    brief ones, whose smaller answer room leaves the page more (better than answers from notes on its pieces);
    else the fewest groups; None when the page must be read in pieces."""
    found = []
    for answers in ((True,) if brief else (False, True)):
        groups = task_groups(tasks, fits, answers)
        if groups is not None and len(groups) == 1:
            return groups
        found.append(groups)
    return next((groups for groups in found if groups is not None), None)


def _analyse(gateway: Gateway, tasks: tuple[Task, ...], reread: Reread):
    async def ask(question: PageQuestion, state: PageState) -> tuple[dict[str, Any], ParsedDoc | None]:
        try:
            answer, page = await _asked(gateway, question, state, reread)
        except (LLMFatalError, LLMTransientError, LLMUnavailable, LLMContextError):
            raise  # the server is down, stopping, or the page cannot be read: each part alone would fare no better
        except LLMError as exc:  # no usable combined answer, even after a repair: each part alone
            log.info("combined answer for %s failed (%s); asking each analysis alone", state["source"].url, exc)
            return {}, None
        parts = {task.value: getattr(answer, task.value) for task in question.tasks}
        return {name: value for name, value in parts.items() if value is not None}, page

    async def analyse(state: PageState) -> dict[str, Any]:
        """Every asked analysis of the page in one request (in a small window, one per group of analyses that
        leaves room for the whole page); the valid parts are kept."""
        page, brief = state["page"], gateway.brief_answers
        groups = (page_reading(tasks, lambda question: gateway.page_fits(page, (question,)), brief)
                  or [PageQuestion(tasks, brief)])
        outcomes = await gather_all(*(ask(question, state) for question in groups))
        parts = {name: value for found, _ in outcomes for name, value in found.items()}  # type: ignore[misc]
        read = next((used for _, used in outcomes if used is not None and used is not page), page)  # type: ignore[misc]
        return {"page": read, "parts": parts}

    return analyse


def _reask(tasks: Sequence[Task]):
    def reask(state: PageState) -> list[Send] | str:
        """The parts missing from the combined answer go out again, each alone and in parallel."""
        missing = [task for task in tasks if task.value not in state.get("parts", {})]
        return [Send("one_task", {"task": task, "page": state["page"], "source": state["source"]})
                for task in missing] or "merge"

    return reask


def _one_task(gateway: Gateway, reread: Reread, task: Task | None = None):
    async def node(state: PageState) -> dict[str, Any]:
        asked = task or state["task"]
        if task is None and not gateway.page_fits(state["page"], (asked,)):
            # asked again after a combined answer that read the page whole with brief answers: a task alone
            # keeps room for a full answer, which would cut the page, so it is asked brief as well (a combined
            # answer of one part has that part valid, or fails)
            answer, _ = await _asked(gateway, PageQuestion((asked,), brief=True), state, reread)
            return {"parts": {asked.value: getattr(answer, asked.value)}}
        answer, _ = await _asked(gateway, asked, state, reread)
        return {"parts": {asked.value: part_value(asked, answer)}}

    node.__name__ = task.value if task else "one_task"
    return node


# the collapse step, when the notes themselves are too long for one prompt: neighbouring notes merged
COLLAPSE_PROMPT = ("Merge these notes on consecutive parts of one documentation page into one set of compact notes "
                   "(at most 160 words), keeping every fact, API, option and piece of advice. Plain text, no "
                   "preamble.\n\n{chunk}")
_COLLAPSE_ROUNDS = 3


def pieces_for_window(chunks: Sequence[Chunk], room: int) -> list[str]:
    """The page's text in pieces of at most `room` estimated tokens: neighbouring chunks joined while they fit,
    a chunk larger than `room` cut in pieces of that size."""
    texts = [text for chunk in chunks
             for text in ([chunk.text] if chunk.tokens <= room else [c.text for c in chunk_text(chunk.text, room)])]
    return ["\n".join(group) for group in _groups(texts, room)]


async def read_in_chunks(gateway: Gateway, sub_model: str | None, page: ParsedDoc,
                         questions: Sequence[Question] = (PageQuestion(),)) -> ParsedDoc:
    """`page` with its text replaced by notes: one note per piece as large as the window holds (map; the notes
    batch like any other prompt when they wait), merged in neighbouring groups until they fit one prompt of
    each of `questions` (collapse). The page itself when every note failed."""
    sub = gateway.sibling(sub_model)
    pieces = pieces_for_window(page.chunks, sub.piece_room())
    total = len(pieces)
    bound = asyncio.Semaphore(_NOTES_PARALLEL)

    async def note(part: int, text: str, depth: int = 0) -> str | None:
        try:
            async with bound:
                answer = await sub.ask(Task.CHUNK_NOTES, ChunkInput(page.url, page.title, part, total, text))
        except LLMFatalError:
            raise
        except LLMContextError as exc:  # the window is smaller than the piece was cut for: cut it again
            smaller = [chunk.text for chunk in chunk_text(text, sub.piece_room())]
            if not exc.shrunk or depth >= 2 or len(smaller) < 2:
                log.info("note on part %d of %s failed: %s", part, page.url, exc)
                return None
            notes = await gather_all(*(note(part, piece, depth + 1) for piece in smaller))
            return " ".join(found for found in notes if found) or None
        except LLMError as exc:  # the others still make notes; a page with none is read as it is
            log.info("note on part %d of %s failed: %s", part, page.url, exc)
            return None
        return answer.notes.strip()  # type: ignore[attr-defined]

    notes = await gather_all(*(note(i + 1, text) for i, text in enumerate(pieces)))
    kept = [f"[part {i + 1} of {total}] {text}" for i, text in enumerate(notes) if text]
    if not kept:  # every note failed: analyse the page's first part as before
        return page

    async def ask(prompt: str) -> str:
        return (await sub.complete(prompt)).text

    room = sub.note_room(COLLAPSE_PROMPT)
    for _ in range(_COLLAPSE_ROUNDS):
        digested = _with_notes(page, kept)
        if len(kept) < 2 or gateway.page_fits(digested, questions):
            return digested
        groups = _groups(kept, room)
        if len(groups) == len(kept):  # no two neighbours fit one prompt together
            break
        merged = await aparallel_query(COLLAPSE_PROMPT, ["\n\n".join(group) for group in groups], llm=ask,
                                       max_parallel=_NOTES_PARALLEL)
        kept = [note.strip() if not note.startswith("Error: ") else "\n".join(group)
                for note, group in zip(merged, groups)]
    return _with_notes(page, kept)


def _with_notes(page: ParsedDoc, notes: list[str]) -> ParsedDoc:
    return replace(page, chunks=tuple(Chunk(i, note, estimate_tokens(note)) for i, note in enumerate(notes)))


def _groups(notes: list[str], room: int) -> list[list[str]]:
    """Neighbouring notes (or texts) in groups of at most `room` tokens (one larger than that is a group alone)."""
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


Fits = Callable[..., bool]  # (page, scale=None) -> whether the page is read whole


def _fits(gateway: Gateway, questions: Sequence[Question]) -> Fits:
    """Whether a page is read whole: by every question, or (combined) by one request, or by a few groups of the
    page's analyses when reading it again costs less than a note on it would (a short page in a small window);
    at `scale` tokens per estimated token when given."""
    def fits(page: ParsedDoc, scale: float | None = None) -> bool:
        if not gateway.provider.is_llm:
            return True
        if isinstance(questions[0], PageQuestion):
            groups = page_reading(questions[0].tasks, lambda question: gateway.page_fits(page, (question,), scale))
            return groups is not None and (len(groups) - 1) * page.text_tokens <= REREAD_TOKENS
        return gateway.page_fits(page, questions, scale)

    return fits


def _digest(gateway: Gateway, fits: Fits, reread: Reread):
    async def digest(state: PageState) -> dict[str, Any]:
        """Replace a page too long for one prompt by notes on its pieces (no-op for pages that fit). A page that
        would fit were the server to count fewer tokens than estimated waits, while other prompts are under way,
        for a reply whose usage says how it counts, before it is cut."""
        page = state["page"]
        if fits(page):
            return {}
        lowest = gateway.may_fit_later()
        if lowest is not None and fits(page, lowest):
            await gateway.usage_counted()
            if fits(page):
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

    def __init__(self, gateway: Gateway, sub_model: str | None = None, tasks: Sequence[Task] | None = None,
                 strategy: TaskStrategy | None = None) -> None:
        """`tasks`: the analyses to ask, `strategy`: in one request or one each; by default what the gateway's
        settings chose (--tasks, all five unless set; --task-strategy), so every caller that builds an agent
        from a run's gateway follows the flags."""
        self.gateway = gateway
        self.sub_model = sub_model
        self.tasks = page_tasks(gateway.settings.tasks if tasks is None else tasks)
        self.strategy = strategy or gateway.settings.task_strategy
        combined = self.strategy is not TaskStrategy.SEPARATE
        self.questions: tuple[Question, ...] = (PageQuestion(self.tasks),) if combined else self.tasks
        # notes are merged (collapse) until each analysis alone can read them whole
        self._note_fit: tuple[Question, ...] = tuple(PageQuestion((t,)) for t in self.tasks) if combined else self.tasks
        self._reads: dict[tuple[Any, ...], asyncio.Task[ParsedDoc]] = {}
        fits = _fits(gateway, self.questions)
        graph = StateGraph(PageState)
        graph.add_node("digest", _digest(gateway, fits, self._reread))
        graph.add_node("merge", _merge)
        if combined:
            graph.add_node("analyse", _analyse(gateway, self.tasks, self._reread))
            graph.add_node("one_task", _one_task(gateway, self._reread))
            graph.add_conditional_edges(START, lambda state: "analyse" if fits(state["page"]) else "digest",
                                        ["analyse", "digest"])
            graph.add_edge("digest", "analyse")
            graph.add_conditional_edges("analyse", _reask(self.tasks), ["one_task", "merge"])
            graph.add_edge("one_task", "merge")
        else:
            graph.add_edge(START, "digest")
            for task in self.tasks:
                graph.add_node(task.value, _one_task(gateway, self._reread, task))
                graph.add_edge("digest", task.value)
                graph.add_edge(task.value, "merge")
        graph.add_edge("merge", END)
        self.graph = graph.compile()

    async def _reread(self, page: ParsedDoc) -> ParsedDoc:
        """`page` read chunk by chunk, once per page and window size however many branches ask."""
        key = (page.url, *self.gateway.window_state())
        if key not in self._reads:
            self._reads[key] = asyncio.ensure_future(read_in_chunks(self.gateway, self.sub_model, page,
                                                                    self._note_fit))
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
    """One synthesis per topic, concurrently; a topic whose synthesis fails maps to the reason. A topic of one
    page needs no request: its page's summary and concepts are its synthesis."""
    async def one(topic: TopicInput) -> TopicSynthesis | str:
        if len(topic.pages) == 1 and topic.pages[0][1].strip():
            _, summary, concepts = topic.pages[0]
            return TopicSynthesis(overview=summary, key_themes=list(concepts))
        try:
            return await gateway.ask(Task.TOPIC_SYNTHESIS, topic)  # type: ignore[return-value]
        except (LLMFatalError, BatchDeferred):
            raise
        except Exception as exc:  # recorded in the report, the run goes on
            return f"synthesis failed: {exc}"

    results = await gather_all(*(one(t) for t in topics))  # every topic's prompt made before one stops them
    return {t.topic: r for t, r in zip(topics, results)}
