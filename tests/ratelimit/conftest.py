"""Fixtures for document_it.core.ratelimit's tests: the module's `time` and `asyncio` names are swapped for a
controllable clock (`clock`) and an `asyncio` proxy whose `sleep` advances that clock (`fake_sleep`), so no
test depends on real scheduling."""

from __future__ import annotations

import pytest
from _clock import FakeAsyncio, FakeClock

from document_it.core import ratelimit


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


@pytest.fixture
def fake_sleep(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> FakeAsyncio:
    fake = FakeAsyncio(clock)
    monkeypatch.setattr(ratelimit, "asyncio", fake)
    return fake
