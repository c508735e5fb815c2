"""--answers: a page's combined question asked brief (shorter lists and strings, shorter instructions) when asked
for, or on auto once replies show a slow writer; the gateway turns a page's question brief as it leaves."""

from __future__ import annotations

import json

import pytest

from document_it.analysis.gateway import BRIEF_TOKEN_S, Gateway
from document_it.analysis.prompts import instructions
from document_it.analysis.providers import ChatProvider, ExtractiveProvider
from document_it.analysis.schemas import PageQuestion, schema_for
from document_it.cli import build_parser, main, settings_from_args
from document_it.config import Answers, LLMKind, Settings, StructuredMethod
from document_it.fetch import fetch
from document_it.models import DocRef, Task
from document_it.parse import parse
from document_it.testing.llm_sim import SimServer

from _answers import CONCEPT, FULL, PATTERN
from _corpus import write_corpus
from _fake_llm import ScriptedLLM, completion

BRIEF_ITEMS = {"key_concepts": 3, "implementation_details": 3, "code_patterns": 2, "related_topics": 3}
FULL_ITEMS = {"key_concepts": 6, "implementation_details": 6, "code_patterns": 4, "related_topics": 6}


@pytest.fixture
def page(tmp_path):
    write_corpus(tmp_path)
    return parse(fetch(DocRef((tmp_path / "pages" / "retries.html").as_uri(), "Retries", "Guides")))


def _items(properties: dict) -> dict[str, int]:
    return {name: shown["maxItems"] for name, shown in properties.items() if "maxItems" in shown}


def test_a_brief_question_is_its_own_question_and_shows_shorter_lists_and_strings():
    brief, full = (schema_for(PageQuestion(brief=b)).model_json_schema()["properties"] for b in (True, False))
    assert _items(brief) == BRIEF_ITEMS and _items(full) == FULL_ITEMS
    assert brief["summary"]["maxLength"] < full["summary"]["maxLength"]
    example = [shown["code_patterns"]["items"]["properties"]["example"]["maxLength"] for shown in (brief, full)]
    assert example[0] < example[1]
    assert PageQuestion(brief=True) != PageQuestion() and len({PageQuestion(brief=True), PageQuestion()}) == 2


def test_a_brief_answer_is_validated_leniently_its_lists_cut_to_the_brief_bounds():
    reply = {**FULL, "summary": "A long summary. " * 20, "code_patterns": [PATTERN] * 4,
             "key_concepts": [{**CONCEPT, "name": f"Concept {i}"} for i in range(6)]}
    brief = schema_for(PageQuestion(brief=True)).model_validate(reply)
    assert [concept.name for concept in brief.key_concepts] == ["Concept 0", "Concept 1", "Concept 2"]
    assert len(brief.code_patterns) == 2
    assert brief.summary == reply["summary"]  # 320 characters, over the brief schema's maxLength: kept whole
    full = schema_for(PageQuestion()).model_validate(reply)
    assert len(full.key_concepts) == 6 and len(full.code_patterns) == 4


def test_brief_instructions_ask_for_fewer_items_and_sentences():
    brief, full = instructions(PageQuestion(brief=True)), instructions(PageQuestion())
    assert "up to 3 concepts" in brief and "up to 2 patterns" in brief and "2-3 sentences" in brief
    assert "up to 6" not in brief and "3-5 sentences" not in brief
    assert "up to 6 concepts" in full and "up to 4 patterns" in full and "3-5 sentences" in full


@pytest.mark.parametrize("argv, env, expected", [
    ([], {}, Answers.AUTO), (["--answers", "brief"], {}, Answers.BRIEF), (["--answers", "full"], {}, Answers.FULL),
    ([], {"DOCUMENT_IT_ANSWERS": "brief"}, Answers.BRIEF),
])
def test_the_answers_flag_and_its_variable_set_the_settings(argv, env, expected):
    assert settings_from_args(build_parser(env).parse_args(argv), env).answers is expected


def test_a_bad_answers_value_is_one_line_naming_the_choices(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["--answers", "short", "--output-dir", str(tmp_path / "out"), "--quiet"])
    assert done.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("document-it: error:")
    assert "--answers" in lines[0] and "invalid choice: 'short'" in lines[0]
    assert all(choice in lines[0] for choice in ("auto", "full", "brief"))


async def _sent(page, answers: Answers, token_s: float | None = None, question=PageQuestion()) -> dict:
    """The one request `question` about `page` goes out as, `token_s` measured before it is asked."""
    reply = FULL if isinstance(question, PageQuestion) else {"summary": "Brief or not."}
    with ScriptedLLM([completion(json.dumps(reply))]) as llm:
        settings = Settings(llm=LLMKind.OPENAI, llm_base_url=llm.base_url, api_key="sk-test-0123456789",
                            structured_output=StructuredMethod.JSON_SCHEMA, model="gpt-4o-mini",
                            request_timeout=5.0, batch_size=1, retries=0, answers=answers)
        async with Gateway(ChatProvider(settings), settings) as gateway:
            gateway.token_s = token_s
            await gateway.ask(question, page)
    (body,) = llm.requests
    return body


@pytest.mark.parametrize("answers, token_s, brief", [
    (Answers.BRIEF, None, True), (Answers.FULL, None, False), (Answers.FULL, 0.05, False),
    (Answers.AUTO, None, False), (Answers.AUTO, 0.01, False), (Answers.AUTO, 0.05, True),
])
async def test_a_page_question_leaves_brief_when_the_answers_setting_says_so(page, answers, token_s, brief):
    body = await _sent(page, answers, token_s)
    assert _items(body["response_format"]["json_schema"]["schema"]["properties"]) == \
        (BRIEF_ITEMS if brief else FULL_ITEMS)
    prompt = body["messages"][-1]["content"]  # made full by ask(), made again brief as it leaves
    assert ("up to 3 concepts" in prompt) is brief and ("up to 6 concepts" in prompt) is not brief


async def test_a_single_task_question_is_never_turned_brief(page):
    brief, full = [await _sent(page, answers, 0.05, Task.SUMMARY) for answers in (Answers.BRIEF, Answers.FULL)]
    assert brief["response_format"] == full["response_format"] and brief["messages"] == full["messages"]


async def test_the_simulator_answers_within_the_brief_bounds(page):
    counts = {}
    with SimServer(latency_ms=1, ms_per_token=0, max_seconds=60) as sim:
        for answers in (Answers.BRIEF, Answers.FULL):
            settings = Settings(llm=LLMKind.SIMULATE, llm_base_url=sim.base_url, batch_size=1, retries=0,
                                answers=answers)
            async with Gateway(ChatProvider(settings), settings) as gateway:
                counts[answers] = len((await gateway.ask(PageQuestion(), page)).code_patterns)
    assert counts == {Answers.BRIEF: 2, Answers.FULL: 3}  # the simulator writes 3 items where the schema allows


@pytest.mark.parametrize("answers, token_s, brief", [
    (Answers.BRIEF, None, True), (Answers.BRIEF, 0.01, True), (Answers.BRIEF, 0.05, True),
    (Answers.FULL, None, False), (Answers.FULL, 0.01, False), (Answers.FULL, 0.05, False),
    (Answers.AUTO, None, False), (Answers.AUTO, 0.01, False), (Answers.AUTO, 0.05, True),
    (Answers.AUTO, BRIEF_TOKEN_S, False),  # brief only once over the threshold
])
def test_brief_answers_truth_table(answers, token_s, brief):
    gateway = Gateway(ExtractiveProvider(), Settings(answers=answers))
    gateway.token_s = token_s
    assert gateway.brief_answers is brief
