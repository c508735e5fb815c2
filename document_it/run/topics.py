"""Topic syntheses: one per topic, started as soon as the topic's last page is done so they overlap the
other pages; in nightly runs a topic whose pages did not change keeps its last synthesis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from ..models import DocResult
from .summary import plain_synthesis, topic_inputs

if TYPE_CHECKING:
    from ..analysis.gateway import Gateway
    from ..analysis.prompts import TopicInput
    from ..core.job_queue import JobQueue
    from .loop import RunSpec

__all__ = ["TopicSynthesis", "NoSynthesis", "Synthesize", "remembering"]

log = logging.getLogger(__name__)

Synthesize = Callable[["list[TopicInput]"], Awaitable[dict[str, Any]]]


class TopicSynthesis:
    """Starts a topic's synthesis as soon as its last page is done, so it overlaps the other pages. Under a
    request limit (--rpm, or one the server announced) every synthesis waits for the last page instead: then
    they leave together and share requests, which are what the limit makes scarce.

    `left`: the pages still to come per topic; `done`: results a resumed run already had."""

    def __init__(self, gateway: Gateway, left: dict[str, int], synthesize: Synthesize | None = None,
                 done: Iterable[DocResult] = ()) -> None:
        self._gateway = gateway
        self._synthesize = synthesize
        self._left = dict(left)
        self._done: dict[str, list[DocResult]] = {}
        for result in done:
            self._done.setdefault(result.topic, []).append(result)
        self._ready: list[str] = []  # topics whose pages are all done, synthesis not started
        self._tasks: list[asyncio.Task[dict[str, Any]]] = []

    def page_done(self, result: DocResult) -> None:
        self._done.setdefault(result.topic, []).append(result)
        self._settled(result.topic)

    def page_skipped(self, topic: str) -> None:
        """A page of `topic` that ends with no result (e.g. a redirect onto a page the run already has)."""
        self._settled(topic)

    def _settled(self, topic: str) -> None:
        if topic not in self._left:
            return  # a page the run did not count on (a crawl's): its topic waits for the end
        self._left[topic] -= 1
        if self._left[topic] == 0:
            self._ready.append(topic)
        if self._ready and (self._gateway.limiter.request_pace() is None or not any(self._left.values())):
            self._start()

    def _start(self) -> None:
        inputs = [found for topic in self._ready for found in topic_inputs(self._done.get(topic, []))]
        self._ready.clear()
        if not inputs:
            return
        if self._synthesize is not None:
            asked = self._synthesize(inputs)
        else:
            from ..analysis import agent  # looked up at call time (tests replace it)

            asked = agent.synthesize_topics(self._gateway, inputs)
        self._tasks.append(asyncio.ensure_future(asked))

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def results(self) -> dict[str, Any]:
        """The syntheses of every topic whose pages all came (those held until now start here)."""
        self._start()
        self._done.clear()  # every synthesis has its inputs: the pages' results are not held any longer
        merged: dict[str, Any] = {}
        for part in await asyncio.gather(*self._tasks):
            merged.update(part)
        return merged


class NoSynthesis:
    """--no-synthesis: TopicSynthesis's place in a run that asks for per-page analyses only."""

    def page_done(self, result: DocResult) -> None:
        pass

    def page_skipped(self, topic: str) -> None:
        pass

    def cancel(self) -> None:
        pass

    async def results(self) -> dict[str, Any]:
        return {}


def remembering(gateway: Gateway, queue: JobQueue, spec: RunSpec) -> Synthesize:
    """Synthesise topics; in nightly runs a topic whose pages are as last time keeps its stored synthesis, and
    every fresh one (but a one-shot run's) is stored for the next."""
    async def synthesize(inputs: list[TopicInput]) -> dict[str, Any]:
        from ..analysis import agent

        kept: dict[str, Any] = {}
        todo = []
        for topic in inputs:
            fingerprint = hashlib.sha256(json.dumps([topic.topic, topic.pages]).encode()).hexdigest()
            stored = queue.topic_synthesis(spec.source, topic.topic) if spec.incremental else None
            if stored is not None and stored[0] == fingerprint:
                kept[topic.topic] = stored[1]
            else:
                todo.append((topic, fingerprint))
        fresh = plain_synthesis(await agent.synthesize_topics(gateway, [topic for topic, _ in todo]))
        for topic, fingerprint in todo:
            if isinstance(fresh.get(topic.topic), dict) and not spec.oneshot:  # one-shot runs leave the memory be
                queue.save_topic_synthesis(spec.source, topic.topic, fingerprint, fresh[topic.topic])
        if spec.incremental and inputs:
            log.info("topic syntheses: %d redone, %d unchanged", len(todo), len(kept))
        return {**kept, **fresh}

    return synthesize
