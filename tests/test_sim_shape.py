"""The simulator shaped like a real server: prefill per prompt token, sequence slots, decode shared by the
sequences in flight, imperfect batched answers, and the named profiles."""

from __future__ import annotations

import json

import pytest

from document_it.testing._sim_reply import answer
from document_it.testing.llm_sim import SimServer
from document_it.testing.sim_profiles import PROFILES, describe, profile_settings

from _sim_client import Short, chat, fire


def test_prefill_charges_every_prompt_token() -> None:
    with SimServer(latency_ms=5, ms_per_token=0, prefill_ms_per_token=0.5) as sim:
        short = chat(sim, "caching", model=Short).json()["usage"]
        first = sim.stats()["busy_seconds"]
        long = chat(sim, "caching " * 400, model=Short).json()["usage"]
        second = sim.stats()["busy_seconds"] - first
    assert long["prompt_tokens"] > short["prompt_tokens"] + 300
    assert first == pytest.approx((5 + 0.5 * short["prompt_tokens"]) / 1000, abs=1e-5)
    assert second == pytest.approx((5 + 0.5 * long["prompt_tokens"]) / 1000, abs=1e-5)


def test_requests_beyond_the_slots_queue_and_shared_decode_slows_each_token() -> None:
    with SimServer(latency_ms=1, ms_per_token=2.0, capacity=3, shared_decode=1.0) as sim:
        assert fire(sim, 6) == [200] * 6
        stats = sim.stats()
    alone = stats["completion_tokens"] * 2.0 / 1000  # what the six decodes cost one after another, unshared
    assert stats["max_serving"] == 3 and stats["max_decoding"] == 3 and stats["queued_seconds"] > 0
    # three decoding at once: each token takes up to 3 × as long (1 + 1.0 × (3 - 1))
    assert stats["busy_seconds"] > 1.5 * alone


def test_without_shared_decode_a_request_takes_its_own_time_whatever_runs_beside_it() -> None:
    with SimServer(latency_ms=1, ms_per_token=2.0, capacity=3) as sim:
        assert fire(sim, 3) == [200] * 3
        stats = sim.stats()
    assert stats["busy_seconds"] == pytest.approx((3 * 1 + stats["completion_tokens"] * 2.0) / 1000, abs=1e-5)


_BATCH_SCHEMA = {"type": "object", "properties": {"results": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
                 "$defs": {"Item": {"type": "object", "properties": {
                     "id": {"type": "string"}, "result": {"$ref": "#/$defs/Summary"}}},
                     "Summary": {"type": "object", "properties": {"summary": {"type": "string"}},
                                 "required": ["summary"]}}}


def _batch(n: int, salt: str) -> str:
    items = "".join(f'\n\n<item id="p{i}">\nPage {i} of {salt} explains retries and caching.\n</item>'
                    for i in range(n))
    return f"Summarise each page.\n\nAnswer each item below alone, in a results list.{items}"


def test_imperfect_batches_leave_out_or_spoil_one_item_and_perfect_ones_never_do() -> None:
    spoiled = 0
    for salt in range(40):
        perfect = answer(_BATCH_SCHEMA, _batch(3, str(salt)))["results"]
        assert [item["id"] for item in perfect] == ["p0", "p1", "p2"]
        assert all(isinstance(item["result"], dict) for item in perfect)
        flawed = answer(_BATCH_SCHEMA, _batch(3, str(salt)), imperfect=1.0)["results"]
        whole = [item for item in flawed if isinstance(item["result"], dict)]
        assert len(whole) == 2  # exactly one item is missing or not an answer
        spoiled += len(flawed) == 3
        assert answer(_BATCH_SCHEMA, _batch(3, str(salt)), imperfect=1.0)["results"] == flawed  # same prompt, same
    assert 0 < spoiled < 40  # both kinds happen
    single = answer(_BATCH_SCHEMA, _batch(1, "one"), imperfect=1.0)["results"]
    assert len(single) == 1 and isinstance(single[0]["result"], dict)  # a batch of one is never spoiled


def test_the_server_applies_its_share_of_imperfect_batches() -> None:
    body = {"type": "json_schema", "json_schema": {"name": "batch", "schema": _BATCH_SCHEMA}}
    with SimServer(latency_ms=1, ms_per_token=0, imperfect_batches=1.0) as sim:
        reply = chat(sim, _batch(4, "served"), response_format=body).json()
    results = json.loads(reply["choices"][0]["message"]["content"])["results"]
    assert sum(isinstance(item["result"], dict) for item in results) == 3


def test_profiles_are_real_servers_shapes_and_flags_override_them() -> None:
    hosted, local = profile_settings("hosted"), profile_settings("local")
    assert hosted["capacity"] == 0 and hosted["latency_ms"] == 500 and hosted["ms_per_token"] == 10
    assert local["capacity"] == 4 and local["prefill_ms_per_token"] == 1.0 and local["ms_per_token"] == 25
    assert profile_settings("local", capacity=1, latency_ms=None)["capacity"] == 1
    assert "4 slots" in describe("local") and "unlimited slots" in describe("hosted")
    with pytest.raises(ValueError, match="hosted, local"):
        profile_settings("cloud")
    with SimServer(**profile_settings("local", latency_ms=1, ms_per_token=0.01, prefill_ms_per_token=0.01)) as sim:
        assert fire(sim, 6) == [200] * 6
        assert sim.stats()["max_serving"] <= PROFILES["local"]["capacity"]
