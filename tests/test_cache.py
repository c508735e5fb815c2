"""The shared diskcache memo: warm reruns ask nothing, processes share it, trouble degrades to no cache."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from document_it.config import LLMKind, Mode, Settings
from document_it.core.cache import Memo, memo_key
from document_it.run.pipeline import run
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import PAGES, SYNTHESES, write_corpus

ROOT = Path(__file__).resolve().parent.parent
ASKED = len(PAGES) + SYNTHESES  # one request per page (every analysis in one answer), one per topic


@pytest.fixture(scope="module")
def site(corpus_site):
    return corpus_site


@pytest.fixture(scope="module")
def sim():
    with SimServer(latency_ms=10, ms_per_token=0, max_seconds=300) as server:
        yield server


def _settings(tmp_path: Path, site, sim, mode: Mode, out: str, **extra) -> Settings:
    return Settings(source=site.url("llms.txt"), allow_private=True, output_dir=tmp_path / out, state_dir=tmp_path / "state",
                    mode=mode, quiet=True, analysis_workers=2, llm=LLMKind.SIMULATE, llm_base_url=sim.base_url,
                    **{"batch_size": 1, **extra})  # one request per prompt keeps the counts plain


def _analyses(out: Path) -> list:
    return [(r["url"], r["analysis"]) for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())]


@pytest.mark.parametrize("mode", [Mode.HYBRID, Mode.PROCESS])
def test_a_warm_rerun_makes_no_llm_requests_and_gives_the_same_answers(tmp_path, site, sim, mode):
    sim.reset_stats()
    cold = run(_settings(tmp_path, site, sim, mode, "cold"))
    asked = sim.stats()["requests"]
    assert asked == ASKED and cold["llm"]["cache"]["writes"] > 0
    sim.reset_stats()
    warm = run(_settings(tmp_path, site, sim, mode, "warm"))  # process mode: two other worker processes
    assert sim.stats()["requests"] == 0
    assert warm["llm"]["requests"] == 0 and warm["llm"]["cache"]["hits"] > 0
    assert warm["llm"]["prompts"] == SYNTHESES  # whole page analyses came from the memo; only the syntheses asked
    assert _analyses(tmp_path / "warm") == _analyses(tmp_path / "cold")


def test_refresh_recomputes_and_no_cache_neither_reads_nor_writes(tmp_path, site, sim):
    run(_settings(tmp_path, site, sim, Mode.ASYNC, "first"))
    sim.reset_stats()
    run(_settings(tmp_path, site, sim, Mode.ASYNC, "again", refresh=True))
    assert sim.stats()["requests"] == ASKED
    sim.reset_stats()
    off = run(_settings(tmp_path, site, sim, Mode.ASYNC, "off", no_cache=True))
    assert sim.stats()["requests"] == ASKED
    assert off["llm"]["cache"] == {"enabled": False, "hits": 0, "misses": off["llm"]["cache"]["misses"],
                                   "writes": 0, "entries": 0, "size_bytes": 0, "lifetime_hits": 0,
                                   "lifetime_misses": 0}


def test_pages_with_identical_text_share_one_analysis(tmp_path, sim):
    root = tmp_path / "site"
    write_corpus(root)
    mirror = root / "pages" / "install-copy.html"
    mirror.write_text((root / "pages" / "install.html").read_text())
    with (root / "llms.txt").open("a") as index:
        index.write("- [Install mirror](pages/install-copy.html)\n")
    with SiteServer(root, max_seconds=60) as site:
        settings = _settings(tmp_path, site, sim, Mode.SYNC, "out")  # sync: the copy comes after the original
        sim.reset_stats()
        run(settings)
    # the mirror cost nothing (its topic, Reference, now has two pages: one synthesis more)
    assert sim.stats()["requests"] == ASKED + 1
    by_url = dict(_analyses(tmp_path / "out"))
    assert by_url[site.url("pages/install-copy.html")] == by_url[site.url("pages/install.html")]


def _write_many(directory: str, start: int) -> None:
    memo = Memo(Path(directory))
    for i in range(start, start + 200):
        memo.set("llm", memo_key(i), {"value": i})
    memo.close()


def test_concurrent_writers_in_two_processes(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(tmp_path / "c"), start)) for start in (0, 100)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    memo = Memo(tmp_path / "c")
    assert all(memo.get("llm", memo_key(i)) == {"value": i} for i in range(300))
    assert memo.stats()["entries"] == 300


def test_a_corrupt_cache_degrades_to_no_cache_with_a_warning(tmp_path, site, sim):
    cache = tmp_path / "state" / "cache"
    cache.mkdir(parents=True)
    (cache / "cache.db").write_bytes(b"this is not sqlite" * 100)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCUMENT_IT_ALLOW_PRIVATE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--quiet", "--source", site.url("llms.txt"),
                           "--output-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"),
                           "--llm", "simulate", "--llm-base-url", sim.base_url],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "continuing without it" in done.stderr and "Traceback" not in done.stderr


def test_cache_stats_and_clear_commands(tmp_path):
    state = tmp_path / "state"
    memo = Memo(state / "cache")
    memo.set("llm", "k", {"a": 1})
    memo.close()
    base = [sys.executable, str(ROOT / "main.py"), "cache"]
    stats = subprocess.run([*base, "stats", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0 and "1 entries" in stats.stdout and "hits and" in stats.stdout
    clear = subprocess.run([*base, "clear", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert clear.returncode == 0 and "removed 1 entries" in clear.stdout
    assert Memo(state / "cache").stats()["entries"] == 0


def test_a_locked_cache_degrades_to_no_cache(tmp_path):
    import sqlite3

    memo = Memo(tmp_path / "c")
    memo.set("llm", "k", {"a": 1})
    holder = sqlite3.connect(str(tmp_path / "c" / "cache.db"), timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the database
    try:
        other = Memo(tmp_path / "c")
        other.set("llm", "k2", {"b": 2})  # times out, warns, carries on without the cache
        assert other.get("llm", "k2") is None and not other.enabled
    finally:
        holder.rollback()
        holder.close()
    assert Memo(tmp_path / "c").get("llm", "k") == {"a": 1}
