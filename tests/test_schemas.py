"""The answers' schemas: a page's combined answer shows the model every part as required, and keeps each valid
part on its own however the rest of the reply went."""

from __future__ import annotations

import pickle

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from document_it.analysis import extractive
from document_it.analysis.prompts import batch_schema
from document_it.analysis.providers import ExtractiveProvider
from document_it.analysis.schemas import (PART_ANSWER_TOKENS, CodePatterns, KeyConcepts, PageAnalysis, PageQuestion,
                                          Summary, answer_tokens, part_value, schema_for)
from document_it.fetch import fetch
from document_it.models import PAGE_TASKS, DocRef, Task
from document_it.parse import parse

from _answers import ADVICE, CONCEPT, FULL, PATTERN, TOPIC
from _corpus import write_corpus



@pytest.fixture
def page(tmp_path):
    write_corpus(tmp_path)
    return parse(fetch(DocRef((tmp_path / "pages" / "retries.html").as_uri(), "Retries", "Guides")))


def test_the_model_is_shown_one_tool_named_page_answer_that_requires_every_part():
    tool = convert_to_openai_tool(schema_for(PageQuestion()))
    function = tool["function"]
    assert function["name"] == "PageAnswer"
    params = function["parameters"]
    assert set(params["required"]) == set(params["properties"]) == {task.value for task in PAGE_TASKS}
    assert params["properties"]["summary"]["type"] == "string"
    assert {name: params["properties"][name]["maxItems"] for name in FULL if name != "summary"} == \
        {"key_concepts": 6, "implementation_details": 6, "code_patterns": 4, "related_topics": 6}
    concept = params["properties"]["key_concepts"]["items"]
    assert concept["properties"]["importance"] == {"type": "integer"}  # the prompt says 1-10; answers are clamped


def test_a_question_of_fewer_tasks_shows_and_keeps_only_those_parts():
    question = PageQuestion((Task.SUMMARY, Task.CODE_PATTERNS))
    params = convert_to_openai_tool(schema_for(question))["function"]["parameters"]
    assert set(params["required"]) == set(params["properties"]) == {"summary", "code_patterns"}
    answer = schema_for(question).model_validate(FULL)
    assert answer.model_dump() == {"summary": FULL["summary"], "code_patterns": [PATTERN]}
    assert answer_tokens(question) == PART_ANSWER_TOKENS[Task.SUMMARY] + PART_ANSWER_TOKENS[Task.CODE_PATTERNS]
    assert answer_tokens(PageQuestion()) > answer_tokens(question)


def test_a_full_answer_validates_with_every_part():
    answer = schema_for(PageQuestion()).model_validate(FULL)
    assert PageAnalysis(**answer.model_dump()).model_dump() == FULL


def test_valid_parts_are_kept_and_bad_or_missing_parts_are_left_out_to_be_asked_again():
    reply = dict(FULL, key_concepts="not a list", code_patterns={"name": "not a list"}, summary="  ")
    del reply["related_topics"]
    answer = schema_for(PageQuestion()).model_validate(reply)
    assert answer.implementation_details[0].title == "Cap the delay"
    # parts of the wrong type, an empty summary and a part left out: each None, alone
    assert (answer.key_concepts, answer.code_patterns, answer.summary, answer.related_topics) == (None,) * 4


def test_an_item_the_model_got_wrong_is_dropped_and_the_rest_of_its_part_kept():
    reply = dict(FULL, code_patterns=[{"name": "no example"}, PATTERN])
    answer = schema_for(PageQuestion()).model_validate(reply)
    assert answer.code_patterns == schema_for(PageQuestion()).model_validate(FULL).code_patterns


def test_an_empty_list_is_a_valid_part_but_a_missing_one_is_not():
    answer = schema_for(PageQuestion()).model_validate({"summary": "No code here.", "code_patterns": []})
    assert answer.code_patterns == [] and answer.key_concepts is None


@pytest.mark.parametrize("reply", [{}, {"answer": "prose"}, {"summary": 42, "key_concepts": "none"},
                                   {"summary": ""}])
def test_an_answer_with_no_valid_part_fails_validation(reply):
    with pytest.raises(ValidationError, match="no part of the answer is valid"):
        schema_for(PageQuestion()).model_validate(reply)


def test_a_reply_that_is_not_an_object_fails_validation():
    with pytest.raises(ValidationError):
        schema_for(PageQuestion()).model_validate(["summary"])


def test_keys_in_another_case_or_spelling_are_accepted():
    reply = {"Summary": FULL["summary"], "keyConcepts": [{"Name": "Backoff", "Description": "Waits.",
                                                          "Importance": 3}],
             "Implementation Details": [ADVICE], "CODE_PATTERNS": [PATTERN], "related-topics": [TOPIC]}
    answer = schema_for(PageQuestion()).model_validate(reply)
    assert all(getattr(answer, task.value) for task in PAGE_TASKS)
    assert answer.key_concepts[0].name == "Backoff" and answer.key_concepts[0].importance == 3


def test_lists_over_their_length_are_cut_and_numbers_clamped():
    reply = dict(FULL, key_concepts=[dict(CONCEPT, name=f"c{i}", importance=40) for i in range(12)],
                 code_patterns=[PATTERN] * 9)
    answer = schema_for(PageQuestion()).model_validate(reply)
    assert [c.name for c in answer.key_concepts] == [f"c{i}" for i in range(6)]  # the first six, in order
    assert {c.importance for c in answer.key_concepts} == {10}
    assert len(answer.code_patterns) == 4


def test_a_batched_reply_validates_each_page_answer_leniently():
    batch = batch_schema(PageQuestion())
    shown = batch.model_json_schema()
    assert "$defs" not in str(shown) and "$ref" not in str(shown)  # inline: references only cost prompt tokens
    item = shown["properties"]["results"]["items"]
    assert set(item["required"]) == {"id", "result"} and "title" not in item
    assert set(item["properties"]["result"]["required"]) == {task.value for task in PAGE_TASKS}
    reply = {"results": [{"id": "1", "result": FULL},
                         {"id": "2", "result": {"Summary": "Only a summary.", "key_concepts": "bad"}}]}
    first, second = batch.model_validate(reply).results
    assert first.result.model_dump() == FULL
    assert second.result.summary == "Only a summary." and second.result.key_concepts is None
    with pytest.raises(ValidationError):
        batch.model_validate({"results": [{"id": "3", "result": {"nothing": "valid"}}]})


def test_single_task_schemas_cut_long_lists_too():
    assert schema_for(Task.SUMMARY) is Summary
    concepts = KeyConcepts.model_validate({"items": [CONCEPT] * 3})
    assert part_value(Task.KEY_CONCEPTS, concepts) == concepts.items
    assert part_value(Task.SUMMARY, Summary(summary="s")) == "s"
    with pytest.raises(ValidationError):  # strict alone: the tolerant parser is what cuts a single answer
        CodePatterns.model_validate({"items": [PATTERN] * 7})


def test_a_page_question_asks_page_analyses_only():
    with pytest.raises(ValueError):
        PageQuestion(())
    with pytest.raises(ValueError):
        PageQuestion((Task.SUMMARY, Task.TOPIC_SYNTHESIS))
    assert PageQuestion().value == "page" and PageQuestion() == PageQuestion(PAGE_TASKS)
    assert pickle.loads(pickle.dumps(PageQuestion((Task.SUMMARY,)))) == PageQuestion((Task.SUMMARY,))


def test_the_offline_analyser_answers_a_page_question_with_every_part(page):
    data = extractive.answer_data(PageQuestion(), page)
    answer = schema_for(PageQuestion()).model_validate(data)
    assert all(getattr(answer, task.value) is not None for task in PAGE_TASKS)
    assert answer.summary and answer.key_concepts and answer.code_patterns
    for task in PAGE_TASKS:  # the same parts it gives each task asked alone
        assert getattr(answer, task.value) == part_value(task, extractive.answer(task, page))
    assert pickle.loads(pickle.dumps(data)) == data  # plain data: it travels back from a worker process


async def test_the_offline_provider_returns_a_validated_combined_answer(page):
    question = PageQuestion((Task.SUMMARY, Task.RELATED_TOPICS))
    reply = await ExtractiveProvider().complete(question, page)
    assert isinstance(reply.value, schema_for(question))
    assert reply.value.summary and reply.value.related_topics is not None
