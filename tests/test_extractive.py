"""The offline analyser: deterministic, schema-valid and useful on real-looking pages."""

from __future__ import annotations

import pickle

from document_it.analysis import extractive
from document_it.analysis.prompts import PAGE_TASKS, Task, TopicInput, schema_for
from document_it.config import SAMPLE_SOURCE
from document_it.fetch import fetch
from document_it.parse import parse
from document_it.sources import discover


def _sample_pages(n: int = 8):
    refs = discover(SAMPLE_SOURCE).refs[:n]
    return [parse(fetch(ref)) for ref in refs]


def test_every_task_validates_on_the_sample_and_is_deterministic():
    for page in _sample_pages():
        for task in PAGE_TASKS:
            first = extractive.answer(task, page)
            assert isinstance(first, schema_for(task))
            again = extractive.answer(task, pickle.loads(pickle.dumps(page)))
            assert again == first


def test_answers_come_from_the_page(tmp_path):
    page = tmp_path / "retries.md"
    page.write_text("# Retries\n\nFerry retries failed jobs with backoff.\n\n## Backoff\n\n"
                    "You should cap the delay at one minute. Use `max_retries` to bound attempts.\n\n"
                    "```python\ndef schedule_retry(job):\n    return job.retry(delay=5)\n```\n\n"
                    "See [Scheduling](scheduling.md) and [RFC 9110](https://example.org/rfc9110).\n")
    from document_it.models import DocRef

    doc = parse(fetch(DocRef(page.as_uri(), topic="Guides")))
    concepts = extractive.answer(Task.KEY_CONCEPTS, doc).items
    assert [c.name for c in concepts] == ["Backoff"] and 1 <= concepts[0].importance <= 10
    advice = [d.description for d in extractive.answer(Task.IMPLEMENTATION_DETAILS, doc).items]
    assert "You should cap the delay at one minute." in advice
    assert "Use max_retries to bound attempts." in advice
    pattern = extractive.answer(Task.CODE_PATTERNS, doc).items[0]
    assert pattern.name == "schedule_retry (python)" and "job.retry" in pattern.example
    related = extractive.answer(Task.RELATED_TOPICS, doc).items
    assert [r.name for r in related] == ["Scheduling", "RFC 9110"]
    assert related[0].relationship.startswith("linked page") and "external" in related[1].relationship
    summary = extractive.answer(Task.SUMMARY, doc).summary
    assert summary.startswith("Ferry retries failed jobs with backoff.")


def test_topic_synthesis_names_pages_and_shared_themes():
    topic = TopicInput("Guides", (("Retries", "s", ("Backoff", "Jobs")), ("Workers", "s", ("Jobs",))))
    out = extractive.answer(Task.TOPIC_SYNTHESIS, topic)
    assert "Retries, Workers" in out.overview and out.key_themes[0] == "Jobs"
