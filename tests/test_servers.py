"""Whole runs with default flags against servers that behave like the ones people host themselves (the
simulator's quirk modes): every page completes and run.json says which structured-output method did it."""

from __future__ import annotations

import json

import pytest

from document_it.analysis.negotiate import STORE_NAME
from document_it.config import LLMKind, Mode, Settings, StructuredMethod
from document_it.errors import LLMUnusableError
from document_it.run.pipeline import run
from document_it.testing.llm_sim import SimServer

from _corpus import PAGES


@pytest.fixture(scope="module")
def site(corpus_site):
    return corpus_site


def _run(tmp_path, site, sim, **extra) -> dict:
    settings = Settings(**{"source": site.url("llms.txt"), "allow_private": True, "output_dir": tmp_path / "out",
                           "state_dir": tmp_path / "state", "quiet": True, "llm": LLMKind.OPENAI,
                           "llm_base_url": sim.base_url, "no_cache": True, "analysis_workers": 2, **extra})
    return run(settings)


@pytest.mark.parametrize("quirks, mode, method", [
    ({"no_json_schema": True}, Mode.HYBRID, "function_calling"),      # llama-cpp-python
    ({"no_json_schema": True}, Mode.PROCESS, "function_calling"),     # every worker negotiates too
    ({"tools_only": True}, Mode.HYBRID, "function_calling"),
    ({"no_json_schema": True, "sloppy_json": True}, Mode.ASYNC, "function_calling"),
])
def test_default_flags_complete_every_page_and_record_the_method(tmp_path, site, quirks, mode, method):
    with SimServer(latency_ms=2, ms_per_token=0, max_seconds=300, **quirks) as sim:
        summary = _run(tmp_path, site, sim, mode=mode)
    assert summary["documents"]["completed"] == len(PAGES) and summary["documents"]["failed"] == 0
    used = summary["llm"]["structured_output"]
    assert used["method"] == method and used["negotiated"] and used["refused"]
    remembered = json.loads((tmp_path / "state" / STORE_NAME).read_text())
    assert list(remembered.values()) == [method]


def test_json_mode_reads_a_small_models_loose_json(tmp_path, site):
    with SimServer(latency_ms=2, ms_per_token=0, max_seconds=300, sloppy_json=True) as sim:
        summary = _run(tmp_path, site, sim, structured_output=StructuredMethod.JSON_MODE)
    assert summary["documents"]["completed"] == len(PAGES)
    assert summary["llm"]["structured_output"] == {"method": "json_mode", "negotiated": False, "settled": True,
                                                   "refused": []}
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert all(r["analysis"]["summary"] for r in results)  # "Summary" was read as summary


def test_a_forced_method_the_server_refuses_stops_the_run_with_the_hint(tmp_path, site):
    with SimServer(latency_ms=2, ms_per_token=0, max_seconds=300, no_json_schema=True) as sim:
        with pytest.raises(LLMUnusableError, match="does not take --structured-output json_schema.*"
                                                   "--structured-output auto"):
            _run(tmp_path, site, sim, structured_output=StructuredMethod.JSON_SCHEMA, limit=2)
        attempts = sim.stats()["attempts"]
    assert attempts <= 5 * 2 + 1  # no request after the refusals already out, no retries


@pytest.mark.parametrize("quirks", [{"require_key": True}, {"no_key": True}, {"context_tokens": 4096},
                                    {"serial": True}])
def test_servers_that_take_json_schema_need_no_flags_either(tmp_path, site, quirks, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # no key: the placeholder satisfies --require-key
    with SimServer(latency_ms=2, ms_per_token=0, max_seconds=300, **quirks) as sim:
        summary = _run(tmp_path, site, sim, mode=Mode.HYBRID)
        refused = sim.stats()["attempts"] - sim.stats()["ok"]
    assert summary["documents"]["completed"] == len(PAGES) and summary["documents"]["failed"] == 0
    assert summary["llm"]["structured_output"] == {"method": "json_schema", "negotiated": True, "settled": True,
                                                   "refused": []}
    assert refused == 0  # not one request refused: no key trouble, nothing larger than the window
