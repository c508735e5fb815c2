"""Shared generic fixtures: a loopback static site served from a temp folder."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from document_it.testing.site import SiteServer


@pytest.fixture
def site(tmp_path: Path) -> Iterator[SiteServer]:
    """A SiteServer on 127.0.0.1 serving `tmp_path` (write files there, fetch them by `site.url(name)`)."""
    server = SiteServer(tmp_path, max_seconds=60).start()
    yield server
    # stop() waits out serve_forever's 0.5 s poll; let it do so off the test's clock.
    threading.Thread(target=server.stop, daemon=True, name="site-stop").start()


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own --state-dir, so no cache is shared between tests or with the repo."""
    monkeypatch.setenv("DOCUMENT_IT_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests serve their sites on 127.0.0.1, which document-it refuses unless told (--allow-private)."""
    monkeypatch.setenv("DOCUMENT_IT_ALLOW_PRIVATE", "1")
