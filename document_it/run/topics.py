"""Topic syntheses: one per topic, started as soon as the topic's last page is done so they overlap the
other pages (or, with --batch-api, once every page is done); in nightly runs a topic whose pages did not
change keeps its last synthesis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from ..errors import BatchDeferred
from ..models import NO_TOPIC, DocResult
from .site_shape import placed
from .summary import plain_synthesis, topic_inputs

if TYPE_CHECKING:
    from ..analysis.gateway import Gateway
    from ..analysis.prompts import TopicInput
    from ..core.job_queue import JobQueue
    from .batch_rounds import BatchRounds
    from .loop import RunSpec

__all__ = ["TopicSynthesis", "NoSynthesis", "Synthesize", "remembering", "syntheses", "early_syntheses"]

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


async def syntheses(gateway: Gateway, queue: JobQueue, spec: RunSpec, early: dict[str, Any],
                    rounds: BatchRounds | None = None) -> dict[str, Any]:
    """The syntheses made `early` and one for every other topic of the run's results; with --batch-api, made
    again after each round their prompts wait for (none when the run stops before)."""
    while True:
        try:
            return await _rest(gateway, queue, spec, early)
        except BatchDeferred:
            if rounds is None or not await rounds.after():
                return {}


async def early_syntheses(gateway: Gateway, queue: JobQueue, spec: RunSpec) -> TopicSynthesis:
    """Syntheses that start with their topic's last page; a crawl's topics grow as it goes, and topics from
    the pages' navigation are known once every page is parsed, so those wait."""
    later = spec.crawl is not None or spec.nav_topics
    left = {} if later else await asyncio.to_thread(queue.open_by_topic, spec.run_id)
    done = [DocResult.from_dict(r) for r in await asyncio.to_thread(queue.results, spec.run_id)] if left else []
    return TopicSynthesis(gateway, left, remembering(gateway, queue, spec), done)


async def _rest(gateway: Gateway, queue: JobQueue, spec: RunSpec, early: dict[str, Any]) -> dict[str, Any]:
    """The syntheses made `early` and one for every other topic of the run's results."""
    if spec.nav_topics:  # every topic is known only now
        results = placed(spec, [DocResult.from_dict(r) for r in await asyncio.to_thread(queue.results, spec.run_id)])
        results = [r for r in results if (r.topic or NO_TOPIC) not in early]
    else:
        others = {topic for topic in await asyncio.to_thread(queue.result_topics, spec.run_id)
                  if (topic or NO_TOPIC) not in early}
        results = [DocResult.from_dict(r) for r in await asyncio.to_thread(queue.results, spec.run_id, others)] \
            if others else []
    if not results:
        return early
    return {**early, **await remembering(gateway, queue, spec)(topic_inputs(results))}
