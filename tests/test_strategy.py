"""--task-strategy auto: combined, except a run of few pages on a hosted server with slots for every request."""

from __future__ import annotations

import pytest

from document_it.analysis.strategy import resolve_strategy, separate_pays
from document_it.config import LLMKind, Settings, TaskStrategy
from document_it.models import PAGE_TASKS, Task


def _settings(**changes) -> Settings:
    return Settings(**{"llm": LLMKind.OPENAI, "api_key": "sk-test", **changes})


def test_a_few_pages_on_a_hosted_api_go_separate_when_every_request_has_a_slot():
    settings = _settings(max_concurrency=20)  # five tasks: four pages take the whole window
    assert resolve_strategy(settings, 4) is TaskStrategy.SEPARATE
    assert resolve_strategy(settings, 5) is TaskStrategy.COMBINED  # 25 requests would wait for slots


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1",
                                      "http://10.1.2.3/v1", "http://192.168.0.7:8000/v1", "http://[::1]:8000/v1",
                                      "http://gpu-box.local:8000/v1"])
def test_servers_people_run_themselves_always_get_one_request_per_page(base_url):
    # loopback and private addresses are where one-slot servers live: separate requests would only queue there
    assert not separate_pays(_settings(llm_base_url=base_url), 1)


def test_a_public_base_url_counts_as_hosted():
    assert separate_pays(_settings(llm_base_url="https://api.example.com/v1"), 2)
    assert separate_pays(_settings(llm_base_url="http://203.0.113.9/v1"), 2) is False  # a documentation range


@pytest.mark.parametrize("changes", [{"rpm": 120.0}, {"tpm": 50_000.0}, {"tasks": (Task.SUMMARY,)},
                                     {"llm": LLMKind.EXTRACTIVE}])
def test_limits_one_task_or_no_llm_mean_combined(changes):
    assert resolve_strategy(_settings(**changes), 1) is TaskStrategy.COMBINED


def test_an_unknown_page_count_is_combined_and_an_explicit_choice_stands():
    assert resolve_strategy(_settings(), None) is TaskStrategy.COMBINED  # a crawl: the count is not known
    assert resolve_strategy(_settings(task_strategy=TaskStrategy.SEPARATE), 500) is TaskStrategy.SEPARATE
    assert resolve_strategy(_settings(task_strategy=TaskStrategy.COMBINED), 1) is TaskStrategy.COMBINED
    assert len(PAGE_TASKS) == 5
