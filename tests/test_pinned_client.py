"""The LLM client as installed from the lock: the versions requirements.txt pins are the ones imported, and the
real stack (the openai SDK → httpx2 → our capped transport; LangChain's ChatOpenAI, whose request bodies the
provider sends, is pinned for tests/test_wire.py) sends a request that the simulator
answers and the gateway validates. This is the test that catches a release that breaks the client (openai 3
moved to httpx2, and an httpx client handed to it made every request fail before it left)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker

from document_it.analysis.gateway import Gateway
from document_it.analysis.prompts import Task, TopicInput
from document_it.analysis.providers import ChatProvider
from document_it.config import LLMKind, Settings
from document_it.testing.llm_sim import SimServer

ROOT = Path(__file__).resolve().parent.parent
CLIENT_STACK = ("openai", "httpx2", "langchain-openai", "langchain-core", "langgraph", "pydantic")


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)\s*(?:;(.*))?$", line.strip())
        if found and (not found.group(4) or Marker(found.group(4)).evaluate()):  # the pin for this Python
            pins[found.group(1).lower()] = found.group(3)
    return pins


def test_the_lock_pins_every_package_exactly() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements and all("==" in line for line in requirements), [r for r in requirements if "==" not in r]
    for name in ("openai", "httpx2", "langchain-openai", "annotated-types", "pebble"):
        assert name in _pins()


@pytest.mark.parametrize("name", CLIENT_STACK)
def test_the_client_stack_imported_is_the_one_pinned(name: str) -> None:
    assert metadata.version(name) == _pins()[name], (
        f"{name} {metadata.version(name)} is installed but requirements.txt pins {_pins()[name]}: "
        "install with `pip install -r requirements.txt`")


async def test_the_pinned_client_really_sends_and_validates() -> None:
    topic = TopicInput("Guides", (("Retries", "How retries back off.", ("backoff",)),))
    with SimServer(latency_ms=1, ms_per_token=0, max_seconds=60) as sim:
        settings = Settings(llm=LLMKind.OPENAI, llm_base_url=sim.base_url, model="gpt-4o-mini", retries=0)
        async with Gateway(ChatProvider(settings), settings) as gateway:
            value = await gateway.ask(Task.TOPIC_SYNTHESIS, topic)
            summary = gateway.summary()
        stats = sim.stats()
    assert value.overview and stats["ok"] == 1 and stats["attempts"] == 1
    assert summary["attempts"] == 1 and summary["tokens_in"] > 0


def test_the_command_line_analyses_pages_through_the_pinned_client(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "main.py", "--llm", "simulate", "--sim-latency-ms", "5", "--limit", "2", "--tasks",
         "summary", "--quiet", "--output-dir", str(out), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["documents"]["completed"] == 2 and run["llm"]["requests"] >= 1
    assert run["llm"]["by_status"]["failed"] == 0
