"""Shared generic fixtures: a loopback static site served from a temp folder."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import write_corpus


@pytest.fixture
def site(tmp_path: Path) -> Iterator[SiteServer]:
    """A SiteServer on 127.0.0.1 serving `tmp_path` (write files there, fetch them by `site.url(name)`)."""
    server = SiteServer(tmp_path, max_seconds=60).start()
    yield server
    # stop() waits out serve_forever's 0.5 s poll; let it do so off the test's clock.
    threading.Thread(target=server.stop, daemon=True, name="site-stop").start()


@pytest.fixture(scope="module")
def corpus_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteServer]:
    """The test corpus (tests/_corpus.py: an llms.txt and its pages) on 127.0.0.1, for a whole module."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    with SiteServer(root, max_seconds=300) as server:
        yield server


@pytest.fixture(scope="module")
def corpus_with_gone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteServer]:
    """The test corpus plus an llms.txt link to a page that does not exist (a 404), for a whole module."""
    root = tmp_path_factory.mktemp("corpus-gone")
    write_corpus(root, extra_links=["", "## Broken", "", "- [Gone](pages/gone.html): missing page"])
    with SiteServer(root, max_seconds=300) as server:
        yield server


@pytest.fixture(scope="module")
def fast_sim() -> Iterator[SimServer]:
    """The LLM simulator answering in about 5 ms, for a whole module (reset its stats where counts matter)."""
    with SimServer(latency_ms=5, ms_per_token=0, max_seconds=300) as server:
        yield server


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own --state-dir, so no cache is shared between tests or with the repo."""
    monkeypatch.setenv("DOCUMENT_IT_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests serve their sites on 127.0.0.1, which document-it refuses unless told (--allow-private)."""
    monkeypatch.setenv("DOCUMENT_IT_ALLOW_PRIVATE", "1")
