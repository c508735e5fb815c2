"""What a user watches during a run: a row per stage on a terminal (counts first, totals as discovered so far,
the LLM's status on a line of its own), a line per interval in a log, and the time a run spent per stage in
run.json and report.md."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from rich.console import Console

from document_it.run import driver
from document_it.analysis.gateway import build_gateway
from document_it.cli import main
from document_it.config import LLMKind, Mode, Settings, TaskStrategy
from document_it.core.progress import RunProgress
from document_it.models import DocResult, DocStatus
from document_it.run.pipeline import run
from document_it.testing.docsite import write_docsite
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import PAGES

WIDTH = 80
_FRAME = re.compile(r"\r(?:\x1b\[2K\x1b\[1A)*\x1b\[2K")  # how rich's live display redraws its lines
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ROW = re.compile(r"^\s*(discovered|downloaded|parsed|completed|failed) +(\d+)(?:/(\d+))?")


@pytest.fixture(scope="module")
def site(corpus_site):
    return corpus_site


@pytest.fixture(scope="module")
def sim(fast_sim):
    return fast_sim


@pytest.fixture(scope="module")
def docsite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteServer]:
    """A crawlable site (docs/ → 4 part indexes → 24 pages, no sitemap) on 127.0.0.1, for a whole module."""
    root = tmp_path_factory.mktemp("docsite")
    write_docsite(root, pages=24, sections=4)
    with SiteServer(root, max_seconds=300) as server:
        yield server


def _ok(url: str) -> DocResult:
    return DocResult(url=url, title="t", topic="", status=DocStatus.COMPLETED, timings={"fetch": 0.1, "parse": 0.1})


def _failed(url: str, timings: dict[str, float] | None = None) -> DocResult:
    return DocResult(url=url, title="t", topic="", status=DocStatus.FAILED, error="fetch: HTTP 404",
                     timings=timings or {})


def _terminal() -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=WIDTH, color_system=None), screen


def _frames(screen: io.StringIO) -> list[list[str]]:
    """Each screenful the live display drew, as lines of plain text."""
    return [_ESCAPE.sub("", frame).rstrip("\n").split("\n") for frame in _FRAME.split(screen.getvalue())[1:]]


def _snapshot(progress: RunProgress) -> list[str]:
    """What an 80-column terminal shows right now."""
    console = Console(file=io.StringIO(), width=WIDTH, record=True, color_system=None)
    console.print(progress)
    return console.export_text().rstrip("\n").split("\n")


def _rows(lines: list[str]) -> dict[str, tuple[int, int | None]]:
    """{row: (count, total or None)} as the lines show them."""
    found = (_ROW.match(line) for line in lines)
    return {m[1]: (int(m[2]), int(m[3]) if m[3] else None) for m in found if m}


def _assert_never_past_total(lines: list[str]) -> None:
    for name, (count, total) in _rows(lines).items():
        assert total is None or count <= total, f"{name} shows {count}/{total}:\n" + "\n".join(lines)


def _progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "document_it.progress"]


# --- a terminal ---------------------------------------------------------------------------------------------

async def test_at_80_columns_the_counts_come_first_and_the_llm_status_has_its_own_line(sim):
    console, screen = _terminal()
    settings = Settings(llm=LLMKind.OPENAI, llm_base_url=sim.base_url, api_key="sk-test-0123456789",
                        max_concurrency=7)
    async with build_gateway(settings) as gateway:
        with RunProgress(2, enabled=True, console=console) as progress:
            progress.watch(gateway)  # no stages here: the results say what was downloaded and parsed
            progress.advance(_ok("a"))
            progress.advance(_failed("b", {"fetch": 0.1}))
    last = _frames(screen)[-1]
    assert [line.split()[0] for line in last] == ["discovered", "downloaded", "parsed", "completed", "failed", "LLM"]
    assert all(len(line) <= WIDTH for line in last)
    assert _rows(last) == {"discovered": (2, None), "downloaded": (2, 2), "parsed": (1, 2), "completed": (1, 2),
                           "failed": (1, None)}
    for line in last[:5]:  # the count straight after the row's name, never pushed off by the LLM's status
        assert re.match(r"^\s*[a-z]+ +\d+(/\d+)?( |$)", line), line
    assert last[-1].split() == ["LLM", "window", "2/7", "·", "cache", "hits", "0", "·", "429s", "0", "·", "0",
                                "tokens"]  # two until the start probe has its verdict


def test_a_long_llm_status_is_cut_short_and_the_counts_stay_whole():
    class Busy:  # a gateway deep into a long run: long numbers everywhere
        provider = type("P", (), {"is_llm": True})()
        limiter = type("L", (), {"window": type("W", (), {"limit": 1000, "cap": 1000})()})()
        memo = type("M", (), {"hits": 1_234_567})()
        tracker = type("T", (), {"throttled": 98_765, "tokens": 123_456_789_012})()
        spent = (123_456_789_012, None)  # the tracker's tokens: nothing through the Batch API

    progress = RunProgress(123_456, enabled=True, done=100_000, failed=1_234, console=_terminal()[0])
    progress.watch(Busy())
    lines = _snapshot(progress)
    assert len(lines) == 6 and all(len(line) <= WIDTH for line in lines)
    assert _rows(lines)["completed"] == (98_766, 123_456) and _rows(lines)["failed"] == (1_234, None)
    assert lines[-1].lstrip().startswith("LLM window 1000/1000 · cache hits 1234567") and lines[-1].endswith("…")


def test_totals_follow_what_a_crawl_discovers_and_no_bar_runs_past_its_total():
    progress = RunProgress(1, enabled=True, console=_terminal()[0], growing=True)
    shown = []
    progress.stage("downloaded")  # the start page is downloaded and parsed...
    progress.stage("parsed")
    shown.append(_snapshot(progress))
    progress.discovered(5)  # ...its links are queued before it is analysed
    for _ in range(4):
        progress.stage("downloaded")
        shown.append(_snapshot(progress))
    progress.discovered(4)  # a queued link turned out to be an image: skipped, not a page of the report
    shown.append(_snapshot(progress))
    for lines in shown:
        _assert_never_past_total(lines)
        assert "0:00:00" not in "\n".join(lines)  # a row caught up with a total still growing has no ETA yet
    first, grown, shrunk = _rows(shown[0]), _rows(shown[1]), _rows(shown[-1])
    assert first["downloaded"] == (1, 1) and first["completed"] == (0, 1)
    assert grown["discovered"] == (5, None) and grown["downloaded"] == (2, 5) and grown["completed"] == (0, 5)
    assert shrunk["discovered"] == (4, None) and shrunk["downloaded"] == (5, 5) and shrunk["parsed"] == (1, 4)
    completed_row = next(line for line in shown[1] if line.lstrip().startswith("completed"))
    assert completed_row.rstrip().endswith("-/s -:--:--")  # nothing finished yet: no rate, ETA unknown, not 0


def test_failed_pages_are_not_counted_as_completed():
    console, screen = _terminal()
    with RunProgress(4, enabled=True, console=console) as progress:
        progress.advance(_ok("a"))
        progress.advance(_failed("b"))
        progress.advance(_failed("c"))
        assert _rows(_snapshot(progress))["completed"] == (1, 4)
        progress.advance(_ok("d"))
    last = _frames(screen)[-1]
    assert _rows(last)["completed"] == (2, 4) and _rows(last)["failed"] == (2, None)
    completed_row = next(line for line in last if line.lstrip().startswith("completed"))
    assert completed_row.rstrip().endswith("0:00:00")  # every page is finished, two of them failed


# --- a log ----------------------------------------------------------------------------------------------------

def test_the_log_counts_completed_and_failed_apart_with_totals_found_so_far(caplog):
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        with RunProgress(1, enabled=True, log_every_s=0, growing=True) as progress:  # stderr is not a terminal
            progress.advance(_ok("a"), total=3)
            progress.advance(_failed("b", {"fetch": 0.1}), total=3)
            progress.advance(_ok("c"), total=3)
    lines = _progress_lines(caplog)
    assert lines[0].startswith("1/3 pages finished: 1 completed, 0 failed; downloaded 1, parsed 1; "
                               "3 found so far; ") and "ETA at least" in lines[0]
    assert lines[1].startswith("2/3 pages finished: 1 completed, 1 failed; downloaded 2, parsed 1; 3 found so far")
    assert lines[-1].startswith("3/3 pages finished: 2 completed, 1 failed; downloaded 3, parsed 2; ")
    assert "ETA" not in lines[-1] and "found so far" not in lines[-1]


def test_the_log_writes_a_line_per_interval_and_one_at_the_end(caplog):
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        with RunProgress(3, enabled=True, log_every_s=3600) as progress:
            for url in "abc":
                progress.stage("downloaded")
                progress.advance(_ok(url))
    assert [line.split(";")[0] for line in _progress_lines(caplog)] == ["3/3 pages finished: 3 completed, 0 failed"]


# --- whole runs -----------------------------------------------------------------------------------------------

class _EveryEvent(RunProgress):
    """The run's progress, logging a line at every event instead of every LOG_EVERY_S."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **{**options, "log_every_s": 0})


class _OnATerminal(RunProgress):
    """The run's progress, drawn on an 80-column terminal the test reads."""

    screen = io.StringIO()

    def __init__(self, *args: Any, **options: Any) -> None:
        console = Console(file=self.screen, force_terminal=True, width=WIDTH, color_system=None)
        super().__init__(*args, **{**options, "console": console})


def _crawl(docsite: SiteServer, tmp_path: Path, *flags: str) -> list[dict]:
    out = tmp_path / "out"
    code = main(["--source", docsite.url("docs/"), "--output-dir", str(out), "--parallelism-mode", "async",
                 *(flags or ("--llm", "extractive"))])
    assert code == 0
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def test_a_crawl_grows_its_total_before_the_first_page_finishes(docsite, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(driver, "RunProgress", _EveryEvent)
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        rows = _crawl(docsite, tmp_path)
    lines = _progress_lines(caplog)
    seen = [tuple(map(int, re.match(r"(\d+)/(\d+) pages finished", line).groups())) for line in lines]
    first_finished = next(n for n, (finished, _) in enumerate(seen) if finished)
    assert any(total > 1 for _, total in seen[:first_finished]), lines[:first_finished + 1]
    assert "found so far" in lines[0]
    assert all(finished <= total for finished, total in seen)
    n = len(rows)
    assert n == 29 and lines[-1].startswith(f"{n}/{n} pages finished: {n} completed, 0 failed; downloaded {n}, "
                                            f"parsed {n}; ")


def test_a_crawl_on_a_terminal_never_shows_more_done_than_discovered(docsite, tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "RunProgress", _OnATerminal)
    _OnATerminal.screen = io.StringIO()
    # slow enough to be drawn often, and as a real server, slower for longer replies: batched page answers are
    # far longer than a synthesis, and a reply time that ignored length would read as a queue and cut the window
    with SimServer(latency_ms=50, ms_per_token=0.25, max_seconds=120) as sim:
        rows = _crawl(docsite, tmp_path, "--llm", "openai", "--llm-base-url", sim.base_url, "--max-concurrency", "2")
    frames = _frames(_OnATerminal.screen)
    assert len(frames) >= 5
    for lines in frames:
        _assert_never_past_total(lines)
        assert all(len(line) <= WIDTH for line in lines)
    assert any(_rows(lines)["completed"][0] < _rows(lines)["discovered"][0] for lines in frames[:-1])
    n = len(rows)
    assert _rows(frames[-1]) == {"discovered": (n, None), "downloaded": (n, n), "parsed": (n, n),
                                 "completed": (n, n), "failed": (0, None)}
    assert frames[-1][-1].split()[:3] == ["LLM", "window", "2/2"]


@pytest.mark.parametrize("mode", [Mode.HYBRID, Mode.PROCESS])
def test_a_run_logs_its_stages_and_breaks_its_time_down(tmp_path, site, sim, mode, caplog):
    settings = Settings(source=site.url("llms.txt"), allow_private=True, output_dir=tmp_path / "out",
                        state_dir=tmp_path / "state", mode=mode, analysis_workers=2, llm=LLMKind.OPENAI,
                        llm_base_url=sim.base_url, api_key="sk-test-0123456789", no_cache=True, max_concurrency=2,
                        task_strategy=TaskStrategy.SEPARATE)  # a prompt per analysis: more prompts than slots
    with caplog.at_level(logging.INFO, logger="document_it.progress"):
        summary = run(settings)  # not quiet, stderr not a terminal: lines, not bars
    lines = _progress_lines(caplog)
    n = len(PAGES)
    assert lines[-1].startswith(f"{n}/{n} pages finished: {n} completed, 0 failed; downloaded {n}, parsed {n}")
    assert "LLM window" in lines[-1] or mode is Mode.PROCESS  # process mode: the window lives in the workers
    stages = summary["stages"]
    assert set(stages) == {"fetch", "parse", "analyze", "queue_wait", "llm_wait"}
    assert stages["llm_wait"] > 0 and stages["queue_wait"] > 0  # two slots for 32 prompts: some waited
    on_disk = json.loads((tmp_path / "out" / "run.json").read_text())
    assert on_disk["stages"] == stages and on_disk["settings"]["tasks"] == [
        "summary", "key_concepts", "implementation_details", "code_patterns", "related_topics"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| LLM time, summed over requests | waiting for a slot" in report
