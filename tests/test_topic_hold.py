"""run/topics.TopicSynthesis: a topic's synthesis starts once its last page is done, or, under a request limit,
once every page is done, all topics together."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from document_it.analysis import agent
from document_it.models import DocRef, DocResult, DocStatus
from document_it.run.topics import TopicSynthesis

REFS = [DocRef("https://x.test/a1", "A1", "A"), DocRef("https://x.test/a2", "A2", "A"),
        DocRef("https://x.test/b1", "B1", "B")]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The topics of each synthesize_topics call, recorded when the synthesis starts."""
    made: list[list[str]] = []

    def fake(gateway, inputs):
        made.append([found.topic for found in inputs])

        async def answer() -> dict[str, str]:
            return {found.topic: f"synthesis of {found.topic}" for found in inputs}
        return answer()

    monkeypatch.setattr(agent, "synthesize_topics", fake)
    return made


def _topics(pace: tuple[int, float] | None, refs: list[DocRef]) -> TopicSynthesis:
    left: dict[str, int] = {}
    for ref in refs:
        left[ref.topic] = left.get(ref.topic, 0) + 1
    return TopicSynthesis(_gateway(pace), left)


def _gateway(pace: tuple[int, float] | None) -> SimpleNamespace:
    return SimpleNamespace(limiter=SimpleNamespace(request_pace=lambda: pace))


def _done(ref: DocRef, status: DocStatus = DocStatus.COMPLETED) -> DocResult:
    analysis = {"summary": f"About {ref.title}", "key_concepts": [{"name": "alpha"}]}
    return DocResult(url=ref.url, title=ref.title, topic=ref.topic, status=status,
                     analysis=analysis if status is DocStatus.COMPLETED else None)


async def test_without_a_request_limit_each_topic_starts_with_its_last_page(calls):
    topics = _topics(None, REFS)
    topics.page_done(_done(REFS[0]))
    assert calls == []  # A has a page left
    topics.page_done(_done(REFS[2]))
    assert calls == [["B"]]
    topics.page_done(_done(REFS[1]))
    assert calls == [["B"], ["A"]]
    assert await topics.results() == {"A": "synthesis of A", "B": "synthesis of B"}
    assert len(calls) == 2  # nothing was held for results() to start


async def test_under_a_request_limit_all_topics_wait_for_the_last_page_and_start_together(calls):
    topics = _topics((1, 0.5), REFS)
    topics.page_done(_done(REFS[2]))  # B is complete, but pages of A are still out
    topics.page_done(_done(REFS[0]))
    assert calls == []
    topics.page_done(_done(REFS[1]))
    assert [sorted(call) for call in calls] == [["A", "B"]]  # one call: their prompts can share requests
    assert await topics.results() == {"A": "synthesis of A", "B": "synthesis of B"}
    assert len(calls) == 1


async def test_results_starts_the_topics_still_held(calls):
    topics = _topics((0, 2.0), REFS)
    topics.page_done(_done(REFS[2]))
    topics.page_done(_done(REFS[0]))  # A's second page is never reported
    assert calls == []
    assert await topics.results() == {"B": "synthesis of B"}
    assert calls == [["B"]]


async def test_a_topic_whose_pages_all_failed_costs_no_synthesis(calls):
    refs = [*REFS, DocRef("https://x.test/c1", "C1", "C")]
    topics = _topics((1, 0.5), refs)
    for ref in refs:
        topics.page_done(_done(ref, DocStatus.FAILED if ref.topic == "C" else DocStatus.COMPLETED))
    assert [sorted(call) for call in calls] == [["A", "B"]]
    assert set(await topics.results()) == {"A", "B"}


async def test_a_page_that_ends_with_no_result_still_lets_its_topic_start(calls):
    topics = _topics((1, 0.5), REFS)  # under a request limit: all wait for the last page
    topics.page_done(_done(REFS[0]))
    topics.page_skipped("A")  # A's second page redirected onto a page the run already had
    topics.page_done(_done(REFS[2]))
    assert [sorted(call) for call in calls] == [["A", "B"]]
    assert set(await topics.results()) == {"A", "B"}
