"""Dynamic batching through the real gateway: assembly by budget, missing items alone, failed batches split."""

from __future__ import annotations

import asyncio
import json
import math
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from document_it.analysis.batching import Batcher, BatchItem
from document_it.analysis.gateway import build_gateway
from document_it.analysis.prompts import Task, TopicInput
from document_it.config import LLMKind, Settings, StructuredMethod
from document_it.core.queueing import PROBE_WIDTH
from document_it.testing.llm_sim import SimServer

from _fake_llm import ScriptedLLM, completion

TOPICS = [TopicInput(f"T{i}", ((f"Page {i}", f"About thing {i} with several words", ("alpha",)),))
          for i in range(6)]


def _settings(base_url: str, **extra) -> Settings:
    # scripted replies test one method's retries and repairs: no negotiation of another
    return Settings(**{"llm": LLMKind.OPENAI, "llm_base_url": base_url, "api_key": "sk-test-0123456789",
                       "structured_output": StructuredMethod.JSON_SCHEMA,
                       "retries": 0, **extra})


# replies whose time is mostly a fixed round trip (0.4 s, and 0.2 ms a token written): batching pays
ROUND_TRIP_BOUND = [(0.42, 100), (0.44, 200), (0.43, 150), (0.46, 300)]
# replies whose time is mostly decode (0.5 s, and 10 ms a token written, as hosted APIs): it does not
DECODE_BOUND = [(1.5, 100), (2.5, 200), (2.0, 150), (3.5, 300)]


async def _ask_all(settings: Settings, topics=TOPICS, backlog: bool = True, window_slots: int = 1,
                   shape: list[tuple[float, int]] | None = None):
    """Ask a synthesis per topic. With `backlog`, the window is cut to `window_slots` (as 429s would) and
    every slot is held while the prompts are submitted, then all are let go at once, so the batcher sees
    the whole burst waiting for those slots (the state in which it batches); without, the slots are free
    and each prompt should go alone."""
    async with build_gateway(settings) as gateway:
        for seconds, tokens in shape or ():  # what earlier replies sent alone measured
            gateway.reply_shape.observe(seconds, tokens)
        window = gateway.limiter.window
        backlog = backlog and gateway.batcher is not None  # --batch-size 1: no batcher, nothing to hold
        if backlog:
            if window.start is not None:
                window.start.cut()  # the 429s that cut the window would end its start probe too
            window.size = window_slots
            for _ in range(window_slots):
                await window.acquire()
        jobs = [asyncio.ensure_future(gateway.ask(Task.TOPIC_SYNTHESIS, t)) for t in topics]
        if backlog:
            while gateway.batcher.waiting < len(topics):
                await asyncio.sleep(0)
            for _ in range(window_slots):
                await window.release()
        values = await asyncio.gather(*jobs)
    return values, gateway.summary()


async def test_one_slot_still_batches_its_backlog_but_sync_mode_never_batches():
    from document_it.config import Mode

    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        _, summary = await _ask_all(_settings(sim.base_url, max_concurrency=1))
        assert sim.stats()["requests"] == 1 and summary["batching"]["items_per_batch_max"] == 6
        sim.reset_stats()
        _, summary = await _ask_all(_settings(sim.base_url, max_concurrency=1, mode=Mode.SYNC))
        assert sim.stats()["requests"] == 6 and summary["batching"]["items_batched"] == 0


async def test_prompts_go_alone_while_slots_are_free():
    # the start probe's pair must read as served side by side (else the window stays at two and the rest wait, and
    # are batched): replies of 300 ms, far above the gap a busy machine puts between reading the two
    with SimServer(latency_ms=300, ms_per_token=0) as sim:
        values, summary = await _ask_all(_settings(sim.base_url), backlog=False)
        assert sim.stats()["requests"] == 6
    assert all(v.overview for v in values)
    assert summary["batching"]["batches"] == 0 and summary["batching"]["sent_alone"] == 6


async def test_a_backlog_is_spread_over_the_whole_window_where_requests_cost_mostly_their_round_trip():
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        values, summary = await _ask_all(_settings(sim.base_url, max_concurrency=4), window_slots=4,
                                         shape=ROUND_TRIP_BOUND)
        assert sim.stats()["requests"] == 3  # six waiting prompts over four slots: batches of two
    assert len(values) == 6 and summary["batching"]["items_per_batch_max"] == 2


@pytest.mark.parametrize("shape", [DECODE_BOUND, None], ids=["decode-bound", "not measured yet"])
async def test_a_backlog_on_a_whole_window_goes_alone_where_batching_would_not_pay(shape):
    # a batch's answers decode one after another: on a server whose replies are mostly decode, six prompts over
    # four free-to-be slots finish sooner as six requests; before any reply has shown which, they go alone too
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        values, summary = await _ask_all(_settings(sim.base_url, max_concurrency=4), window_slots=4, shape=shape)
        assert sim.stats()["requests"] == 6
    assert len(values) == 6 and summary["batching"]["batches"] == 0


def test_the_reply_shape_tells_a_fixed_cost_from_decode_time():
    from document_it.analysis.batching import ReplyShape

    def ratio(points):
        shape = ReplyShape()
        for seconds, tokens in points:
            shape.observe(seconds, tokens)
        return shape.fixed_per_answer()

    assert ratio(ROUND_TRIP_BOUND) > 5  # 0.4 s fixed against about 0.04 s of decode
    assert 0.1 < ratio(DECODE_BOUND) < 0.4  # 0.5 s fixed against about 2 s of decode
    assert ratio(DECODE_BOUND[:3]) is None  # too few replies
    assert ratio([(1.0, 200), (1.1, 205), (1.0, 210), (1.2, 200)]) is None  # lengths too alike to fit a line
    assert ratio([(0.5, 100), (0.4, 300), (0.5, 200), (0.45, 250)]) == float("inf")  # time does not grow


def _synthesis(overview: str) -> dict:
    return {"overview": overview, "key_themes": ["x"]}


async def test_a_token_budget_splits_the_queue_into_several_batches():
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        values, summary = await _ask_all(_settings(sim.base_url, batch_max_tokens=300))
        requests = sim.stats()["requests"]
    assert len(values) == 6 and all(v.overview for v in values)
    assert 1 < requests < 6
    assert summary["batching"]["items_per_batch_max"] < 6 and summary["prompts"] == 6


async def test_batch_size_caps_items_per_request():
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        _, summary = await _ask_all(_settings(sim.base_url, batch_size=2))
        assert sim.stats()["requests"] == 3
    assert summary["batching"]["items_per_batch_max"] == 2


async def test_an_item_missing_from_the_reply_is_asked_alone():
    batch_reply = json.dumps({"results": [{"id": "i1", "result": _synthesis("first")}]})
    script = [completion(batch_reply), completion(json.dumps(_synthesis("second, alone")))]
    with ScriptedLLM(script) as llm:
        values, summary = await _ask_all(_settings(llm.base_url), TOPICS[:2])
        sent = llm.requests
    assert [v.overview for v in values] == ["first", "second, alone"]
    assert '<item id="i2">' in sent[0]["messages"][-1]["content"]
    assert "<item" not in sent[1]["messages"][-1]["content"]  # the retry is an ordinary prompt
    assert summary["batching"]["batches"] == 1


async def test_a_batch_that_fails_as_a_whole_is_split_in_halves():
    bad = completion(json.dumps({"results": "not a list"}))
    script = [bad, completion(json.dumps(_synthesis("one"))), completion(json.dumps(_synthesis("two")))]
    with ScriptedLLM(script) as llm:
        values, summary = await _ask_all(_settings(llm.base_url), TOPICS[:2])
        assert len(llm.requests) == 3  # the batch, then each half on its own
    assert sorted(v.overview for v in values) == ["one", "two"]
    assert summary["batching"]["batches"] == 0


async def test_batched_answers_equal_unbatched_ones_for_every_structured_output_method():
    from document_it.config import StructuredMethod

    for method in StructuredMethod:
        with SimServer(latency_ms=2, ms_per_token=0) as sim:
            plain, _ = await _ask_all(_settings(sim.base_url, batch_size=1, structured_output=method))
            batched, summary = await _ask_all(_settings(sim.base_url, structured_output=method))
        assert [v.model_dump() for v in batched] == [v.model_dump() for v in plain], method
        assert summary["batching"]["batches"] == 1


async def test_one_malformed_item_does_not_cost_the_others_their_answers():
    reply = {"results": [{"id": "i1", "result": _synthesis("one")}, {"id": "i2", "result": {"overview": 5}}]}
    script = [completion(json.dumps(reply)), completion(json.dumps(_synthesis("two")))]
    with ScriptedLLM(script) as llm:
        values, _ = await _ask_all(_settings(llm.base_url), TOPICS[:2])
        singles = [r["messages"][-1]["content"] for r in llm.requests[1:]]
    # the valid item keeps its answer from the batch; the malformed one is left out and asked alone, once
    assert [v.overview for v in values] == ["one", "two"]
    assert len(singles) == 1 and "<item" not in singles[0] and "T1" in singles[0]


async def test_under_a_request_limit_waiting_prompts_share_the_requests_it_lets_go():
    # 12 prompts at once, 20 free slots, but 120 requests a minute: sent alone they would wait up to 6 s for the
    # limit, so requests leave only as the limit lets them, each carrying several prompts
    topics = [TopicInput(f"T{i}", ((f"Page {i}", f"About thing {i}", ("alpha",)),)) for i in range(12)]
    with SimServer(latency_ms=5, ms_per_token=0, rpm=120) as sim:
        values, summary = await _ask_all(_settings(sim.base_url, rpm=120, max_concurrency=20), topics, backlog=False)
        stats = sim.stats()
    assert all(value.overview for value in values)
    assert stats["requests"] < len(topics) // 2 and summary["batching"]["items_per_batch_max"] >= 3
    assert stats["rate_limited"] == 0  # never more than the limit allows


async def test_without_a_request_limit_free_slots_still_take_prompts_alone():
    with SimServer(latency_ms=5, ms_per_token=0) as sim:
        _, summary = await _ask_all(_settings(sim.base_url, max_concurrency=20), TOPICS, backlog=False)
        assert sim.stats()["requests"] == len(TOPICS) and summary["batching"]["batches"] == 0


# --------------------------------------------------------------------------- the Batcher's own policy, on fakes

class _Answer(BaseModel):
    id: str


class _Fakes:
    """send_one / send_batch that record what was sent and answer only once the test lets them."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []  # each request's item ids, in the order sent
        self.release = asyncio.Event()
        self.singles: list[asyncio.Future[None]] = []

    async def send_one(self, item: BatchItem) -> _Answer:
        self.sent.append([item.id])
        done = asyncio.get_running_loop().create_future()
        self.singles.append(done)
        await done
        return _Answer(id=item.id)

    async def send_batch(self, task, items: list[BatchItem]) -> dict[str, _Answer]:
        self.sent.append([item.id for item in items])
        await self.release.wait()
        return {item.id: _Answer(id=item.id) for item in items}


async def _turns(n: int = 50) -> None:
    """Let the loop run `n` rounds: with poll_s=0 each one is another dispatch."""
    for _ in range(n):
        await asyncio.sleep(0)


def _submit(batcher: Batcher, count: int) -> list[asyncio.Task]:
    return [asyncio.ensure_future(batcher.submit(Task.TOPIC_SYNTHESIS, TOPICS[0], [], 10)) for _ in range(count)]


async def test_under_a_request_limit_the_probe_pair_goes_alone_and_nothing_more_until_both_reply():
    fakes, pace = _Fakes(), [(2, 0.5)]
    window = SimpleNamespace(limit=PROBE_WIDTH, in_flight=0, probing=True)
    batcher = Batcher(fakes.send_batch, fakes.send_one, max_items=8, max_tokens=10_000, window=window, poll_s=0,
                      request_pace=lambda: pace[0])
    jobs = _submit(batcher, 6)
    await _turns()
    assert fakes.sent == [["i1"], ["i2"]]  # the pair, alone each
    fakes.singles[0].set_result(None)
    await _turns()
    assert len(fakes.sent) == 2  # a slot is free, but the probe's last reply is not in yet
    window.probing, pace[0] = False, (1, 0.5)  # the second reply gives the verdict
    fakes.singles[1].set_result(None)
    await _turns()
    assert batcher.waiting == 0 and all(len(ids) > 1 for ids in fakes.sent[2:])  # the backlog, in batches
    fakes.release.set()
    assert sorted(answer.id for answer in await asyncio.gather(*jobs)) == sorted(f"i{n}" for n in range(1, 7))


@pytest.mark.parametrize(("waiting", "item_s"), [(12, None), (17, 0.1), (20, 0.1), (9, 0.3)])
async def test_a_rate_bound_backlog_drains_at_one_batch_size_spread_evenly(waiting: int, item_s: float | None):
    fakes, interval = _Fakes(), 0.5
    batcher = Batcher(fakes.send_batch, fakes.send_one, max_items=8, max_tokens=10_000,
                      window=SimpleNamespace(limit=20, in_flight=0), poll_s=0, request_pace=lambda: (1, interval))
    batcher.item_s = item_s
    k = min(8, math.ceil(math.sqrt(2 * waiting * interval / batcher.item_time())))  # chosen for the whole backlog
    jobs = _submit(batcher, waiting)
    await _turns()
    sizes = [len(ids) for ids in fakes.sent]
    assert batcher.waiting == 0 and sum(sizes) == waiting
    assert len(sizes) == math.ceil(waiting / k) and max(sizes) - min(sizes) <= 1, sizes
    fakes.release.set()
    await asyncio.gather(*jobs)
    assert batcher.batches == len(sizes) and batcher.item_s is not None  # each batch's time was taken in


@pytest.mark.parametrize("settled", [None, 1])
async def test_on_a_server_found_to_queue_prompts_go_alone(settled: int | None):
    # one slot, six prompts waiting: a parallel server's backlog is batched; a queueing server decodes a batch's
    # answers one after another anyway, so each prompt goes alone as the slot frees
    fakes = _Fakes()
    window = SimpleNamespace(limit=1, in_flight=0, watch=SimpleNamespace(settled=settled))
    batcher = Batcher(fakes.send_batch, fakes.send_one, max_items=8, max_tokens=10_000, window=window, poll_s=0)
    jobs = _submit(batcher, 6)
    await _turns()
    fakes.release.set()
    for _ in range(6):
        for single in fakes.singles:
            if not single.done():
                single.set_result(None)
        await _turns()
    await asyncio.gather(*jobs)
    sizes = [len(ids) for ids in fakes.sent]
    assert sum(sizes) == 6
    assert sizes == [1] * 6 if settled else max(sizes) > 1, sizes


def _bare_batcher() -> Batcher:
    fakes = _Fakes()
    return Batcher(fakes.send_batch, fakes.send_one, max_items=8, max_tokens=10_000)


def test_item_time_is_one_answer_until_a_batch_is_timed_then_what_one_more_item_adds():
    batcher = _bare_batcher()
    assert batcher.item_s is None and batcher.item_time() == batcher.answer_s == 1.0
    batcher._timed_batch(2.0, 5)  # one answer's time, and 1 s more over four more items
    assert batcher.item_s == pytest.approx(0.25) and batcher.item_time() == pytest.approx(0.25)
    batcher._timed_batch(1.0 + 4 * 0.65, 5)  # a moving average: a quarter of the way to the new measure
    assert batcher.item_s == pytest.approx(0.35)
    batcher.answer_s = 0.2  # never more than a whole single answer
    assert batcher.item_time() == pytest.approx(0.2)


@pytest.mark.parametrize(("seconds", "items", "expected"), [
    (0.5, 4, 0.05),  # faster than one answer: at least a twentieth of one
    (10.0, 3, 1.0),  # at most one whole answer per item
    (1.6, 4, 0.2),
])
def test_a_first_timed_batch_is_clamped_between_a_twentieth_and_one_answer(seconds, items, expected):
    batcher = _bare_batcher()
    batcher._timed_batch(seconds, items)
    assert batcher.item_s == pytest.approx(expected)
