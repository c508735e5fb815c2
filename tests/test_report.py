"""Outputs are streamed line by line and replaced whole, never left half-written."""

from __future__ import annotations

import json

import pytest

from document_it.models import DocResult, DocStatus
from document_it.report import ResultStream, atomic_write_text, render_report, write_outputs


def _result(url: str, ok: bool = True) -> DocResult:
    analysis = {"summary": f"About {url}.", "key_concepts": [{"name": "Queues", "description": "d", "importance": 9}],
                "implementation_details": [{"title": "Pin versions", "description": "d"}],
                "code_patterns": [], "related_topics": []}
    return DocResult(url=url, title=url.rsplit("/", 1)[-1], topic="Guides",
                     status=DocStatus.COMPLETED if ok else DocStatus.FAILED,
                     error=None if ok else "fetch: HTTP 500", provider="extractive", model="extractive-v1",
                     analysis=analysis if ok else None, timings={"fetch": 0.1})


def _summary(failed: int = 0) -> dict:
    return {"provider_label": "extractive (offline, no LLM)", "model": "extractive-v1", "mode": "hybrid",
            "wall_seconds": 1.5, "documents": {"total": 2, "completed": 2 - failed, "failed": failed},
            "llm": {"requests": 0, "prompts": 10, "tokens_in": 0, "tokens_out": 0, "max_in_flight": 3},
            "stages": {"fetch": 0.2, "parse": 0.1, "analyze": 0.3}}


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old report")
    with pytest.raises(TypeError):
        atomic_write_text(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_stream_lines_are_readable_before_the_run_ends(tmp_path):
    stream = ResultStream(tmp_path / "results.jsonl")
    stream.write(_result("http://127.0.0.1/a"))
    seen = (tmp_path / "results.jsonl").read_text().splitlines()  # another reader, mid-run
    stream.close()
    assert len(seen) == 1 and json.loads(seen[0])["status"] == "completed"


def test_final_outputs_are_sorted_and_consistent(tmp_path):
    results = [_result("http://127.0.0.1/b"), _result("http://127.0.0.1/a", ok=False)]
    write_outputs(tmp_path, results, {"Guides": {"overview": "All about queues.", "key_themes": ["Queues"]}},
                  _summary(failed=1), "Ferry")
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["url"] for r in lines] == ["http://127.0.0.1/a", "http://127.0.0.1/b"]
    assert json.loads((tmp_path / "run.json").read_text())["documents"]["failed"] == 1
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Ferry — analysis")
    assert "All about queues." in report and "Key themes: Queues" in report
    assert "Queues (9)" in report and "Advice: Pin versions" in report
    assert "- [a](<http://127.0.0.1/a>): fetch: HTTP 500" in report


def test_report_says_when_nothing_failed():
    report = render_report([_result("http://127.0.0.1/a")], {}, _summary(), "Ferry")
    assert "None: every page completed." in report and "extractive (offline, no LLM)" in report
