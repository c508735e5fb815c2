"""--extract-fields: named fields read from every page's chunks through the gateway, merged per page."""

from __future__ import annotations

import json

import pytest

from document_it.analysis.fields import extract_fields
from document_it.analysis.gateway import Completion
from document_it.cli import main
from document_it.models import Chunk, ParsedDoc
from document_it.testing.llm_sim import SimServer
from document_it.testing.site import SiteServer

from _corpus import PAGES, write_corpus


class _FakeGateway:
    """Answers each chunk's prompt from a table keyed by a word in the chunk."""

    request_timeout = 5.0

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies, self.models = replies, []

    def sibling(self, model: str) -> "_FakeGateway":
        self.models.append(model)
        return self

    async def complete(self, prompt: str) -> Completion:
        word = next(key for key in self.replies if key in prompt)
        return Completion(self.replies[word], 10, 5, 1)


async def test_the_first_value_found_in_page_order_wins_and_missing_fields_stay_none():
    page = ParsedDoc(url="u", title="t", topic="", text="alpha beta gamma",
                     chunks=(Chunk(0, "alpha", 1), Chunk(1, "beta", 1), Chunk(2, "gamma", 1)))
    gateway = _FakeGateway({"alpha": '{"name": null, "version": "1.0"}',
                            "beta": 'Sure! ```json\n{"name": "Ferry", "version": "2.0"}\n```',
                            "gamma": '{"name": "Other", "license": ""}'})

    fields = await extract_fields(page, gateway, ("name", "version", "license"), "root-model")

    assert fields == {"name": "Ferry", "version": "1.0", "license": None}
    assert set(gateway.models) == {"root-model"}


def test_every_page_gets_its_fields_end_to_end(tmp_path, capsys):
    write_corpus(tmp_path / "site")
    with SiteServer(tmp_path / "site", max_seconds=60) as site, \
            SimServer(latency_ms=5, ms_per_token=0, max_seconds=60) as sim:
        code = main(["--source", site.url("llms.txt"), "--quiet", "--output-dir", str(tmp_path / "out"),
                     "--llm", "openai", "--llm-base-url", sim.base_url, "--extract-fields", "name,version,license"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(PAGES)
    assert all(list(row["fields"]) == ["name", "version", "license"] for row in rows)
    assert all(isinstance(value, str) for row in rows for value in row["fields"].values())  # the simulator says
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["settings"]["extract_fields"] == ["name", "version", "license"]
    assert (tmp_path / "out" / "report.md").read_text().count("  - Fields: name = ") == len(PAGES)


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--extract-fields", "name", "--llm", "extractive"], "--extract-fields needs an LLM"),
    (["--extract-fields", "name,na me", "--llm", "simulate"], "is not a field name"),
    (["--extract-fields", "name,name", "--llm", "simulate"], "names a field twice"),
])
def test_bad_field_requests_are_one_line_usage_errors(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--output-dir", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
